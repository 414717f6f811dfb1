use crate::common::*;
use cems_sentinel::hj212::frame::encode;
use cems_sentinel::hj212::{Framer, Packet};
use cems_sentinel::pb;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn corpus() -> Vec<Vec<u8>> {
    let path = format!(
        "{}/tests/data/hj212/real_packets.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(path)
        .expect("corpus")
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut v = l.strip_suffix(b"\r").unwrap_or(l).to_vec();
            v.extend_from_slice(b"\r\n");
            v
        })
        .collect()
}

async fn register_station(s: &mut TestServer, mn: &str, password: &str) {
    s.registry
        .upsert_enterprise(pb::Enterprise {
            id: "st".into(),
            name: "station".into(),
            ..Default::default()
        })
        .await
        .expect("enterprise");
    s.registry
        .upsert_outlet(pb::Outlet {
            id: mn.into(),
            enterprise_id: "st".into(),
            kind: pb::OutletKind::Stack as i32,
            hj212_password: password.into(),
            ..Default::default()
        })
        .await
        .expect("outlet");
}

/// Reads frames from the socket until one arrives.
async fn read_reply(stream: &mut TcpStream, framer: &mut Framer) -> Packet {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(Ok(f)) = framer.next_frame() {
            return Packet::parse(&f.segment).expect("reply parses");
        }
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "gateway closed the connection");
        framer.push(&buf[..n]);
    }
}

/// A packet of the station's MN asking for an ack: once its 9014 arrives, everything sent before it on the same
/// connection has been handled (packets of a connection are handled in order).
fn barrier(mn: &str, pw: &str) -> Vec<u8> {
    encode(&format!("QN=20210107160000000;ST=22;CN=2011;PW={pw};MN={mn};Flag=5;CP=&&DataTime=20210107160000;a21026-Rtd=9.9,a21026-Flag=N&&"))
}

#[tokio::test]
async fn the_real_station_series_arrives_over_tcp_and_reads_back_in_utc() {
    let mut s = start_with_gateway().await;
    register_station(&mut s, "LB4200001", "123456").await;
    let addr = s.hj212_addr();
    let packets = corpus();
    let series: Vec<u8> = packets[1..87].iter().flatten().copied().collect();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // Garbage first, then the 86 packets in awkward pieces, as a flaky modem would deliver them.
    stream.write_all(b"\x00\x01AT+OK\r\n").await.expect("w");
    for chunk in series.chunks(333) {
        stream.write_all(chunk).await.expect("w");
    }
    stream
        .write_all(&barrier("LB4200001", "123456"))
        .await
        .expect("w");
    let mut framer = Framer::new();
    let ack = read_reply(&mut stream, &mut framer).await;
    assert_eq!(ack.cn.as_deref(), Some("9014"));
    assert_eq!(ack.qn.as_deref(), Some("20210107160000000"));

    let stats = s.hj212_stats();
    assert_eq!(stats.packets_accepted.load(Ordering::Relaxed), 87);
    assert!(stats.garbage_bytes.load(Ordering::Relaxed) >= 8);
    let records = read_all(&mut s, "LB4200001").await;
    assert_eq!(records.len(), 87);
    let first = &records[0];
    // 2021-01-07 14:00:00 Beijing time.
    assert_eq!(first.time_ms, 1_609_999_200_000);
    assert_eq!(first.interval, pb::Interval::Realtime as i32);
    let so2 = first
        .values
        .iter()
        .find(|m| m.code == "a21026")
        .expect("SO2");
    assert_eq!((so2.value, so2.flag), (1.119, pb::DataFlag::Normal as i32));
    assert_eq!(first.values.len(), 10);
    // The series has real gaps (14:01, 15:04–15:25): times are strictly increasing minutes.
    assert!(records
        .windows(2)
        .all(|w| w[1].time_ms > w[0].time_ms && (w[1].time_ms - w[0].time_ms) % 60_000 == 0));
    let last_of_series = &records[85];
    assert_eq!(
        last_of_series.time_ms,
        1_609_999_200_000 + 108 * 60_000,
        "15:48 Beijing"
    );
}

#[tokio::test]
async fn unknown_mn_wrong_password_and_bad_crc_are_refused_counted_and_not_stored() {
    let mut s = start_with_gateway().await;
    register_station(&mut s, "M1", "secret").await;
    let addr = s.hj212_addr();
    let stats = s.hj212_stats();
    let packet = |mn: &str, pw: &str, minute: u32| {
        encode(&format!("QN=1;ST=31;CN=2051;PW={pw};MN={mn};Flag=4;CP=&&DataTime=202101071{minute:03}00;a21026-Avg=5,a21026-Flag=N&&"))
    };
    let mut bad_crc = packet("M1", "secret", 2);
    let n = bad_crc.len();
    bad_crc[n - 4] = if bad_crc[n - 4] == b'0' { b'1' } else { b'0' };
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    for p in [
        packet("GHOST", "secret", 0),
        packet("M1", "wrong", 1),
        bad_crc,
    ] {
        stream.write_all(&p).await.expect("w");
    }
    stream.write_all(&barrier("M1", "secret")).await.expect("w");
    let mut framer = Framer::new();
    assert_eq!(
        read_reply(&mut stream, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    assert_eq!(stats.refused_unknown_mn.load(Ordering::Relaxed), 1);
    assert_eq!(stats.refused_password.load(Ordering::Relaxed), 1);
    assert_eq!(stats.refused_crc.load(Ordering::Relaxed), 1);
    // Only the barrier's value was stored.
    let stored = read_all(&mut s, "M1").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].values[0].value, 9.9);
}

#[tokio::test]
async fn the_ack_comes_after_the_data_is_durable_and_segments_are_joined() {
    let mut s = start_with_gateway().await;
    register_station(&mut s, "M2", "x").await;
    let addr = s.hj212_addr();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut framer = Framer::new();
    // Two segments (Flag=7: 2017 + segmented + ack) of one minute record, second one first.
    let seg = |qn: &str, pno: u32, f: &str| {
        encode(&format!("QN={qn};ST=31;CN=2051;PW=x;MN=M2;Flag=7;PNUM=2;PNO={pno};CP=&&DataTime=20210107100000;{f}&&"))
    };
    stream
        .write_all(&seg(
            "20210107100001002",
            2,
            "a21002-Avg=44.5,a21002-Flag=N",
        ))
        .await
        .expect("w");
    stream
        .write_all(&seg(
            "20210107100001001",
            1,
            "a21026-Avg=12.5,a21026-ZsAvg=15.1,a21026-Flag=N",
        ))
        .await
        .expect("w");
    let ack = read_reply(&mut stream, &mut framer).await;
    assert_eq!(ack.cn.as_deref(), Some("9014"));
    // Right after the ack the whole record reads back: both segments, one time.
    let stored = read_all(&mut s, "M2").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].interval, pb::Interval::Minute as i32);
    let so2 = stored[0]
        .values
        .iter()
        .find(|m| m.code == "a21026")
        .expect("so2");
    assert_eq!(so2.converted, Some(15.1));
    assert!(stored[0]
        .values
        .iter()
        .any(|m| m.code == "a21002" && m.value == 44.5));
}

#[tokio::test]
async fn a_connection_over_the_limit_is_closed_at_once_and_counted() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut s = start_full_with(dir, |d| {
        let mut c = test_config(d);
        c.hj212.max_connections = 1;
        c
    })
    .await;
    register_station(&mut s, "M3", "x").await;
    let addr = s.hj212_addr();
    let stats = s.hj212_stats();
    let mut first = TcpStream::connect(addr).await.expect("first");
    // The first connection works: an ack proves it is being served.
    first.write_all(&barrier("M3", "x")).await.expect("w");
    let mut framer = Framer::new();
    assert_eq!(
        read_reply(&mut first, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    // The second is closed without a byte.
    let mut second = TcpStream::connect(addr).await.expect("second");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), second.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert_eq!(stats.connections_refused.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_mn_without_a_password_is_refused_and_a_rotated_password_replaces_the_old_one() {
    let mut s = start_with_gateway().await;
    register_station(&mut s, "M4", "").await;
    let addr = s.hj212_addr();
    let stats = s.hj212_stats();
    let packet = |pw: &str, minute: u32| {
        encode(&format!("QN=1;ST=31;CN=2051;PW={pw};MN=M4;Flag=4;CP=&&DataTime=202101071{minute:03}00;a21026-Avg=5,a21026-Flag=N&&"))
    };
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // No password registered: refused whatever PW the device sends.
    stream.write_all(&packet("anything", 0)).await.expect("w");
    s.registry
        .set_hj212_password(pb::SetHj212PasswordRequest {
            source_id: "M4".into(),
            password: "first".into(),
        })
        .await
        .expect("set");
    s.registry
        .set_hj212_password(pb::SetHj212PasswordRequest {
            source_id: "M4".into(),
            password: "second".into(),
        })
        .await
        .expect("rotate");
    stream.write_all(&packet("first", 1)).await.expect("w");
    stream.write_all(&barrier("M4", "second")).await.expect("w");
    let mut framer = Framer::new();
    assert_eq!(
        read_reply(&mut stream, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    assert_eq!(stats.refused_password.load(Ordering::Relaxed), 2);
    assert_eq!(
        read_all(&mut s, "M4").await.len(),
        1,
        "only the new password's packet"
    );
    // An upsert without a password keeps the registered one; no read returns it.
    register_station(&mut s, "M4", "").await;
    stream.write_all(&packet("second", 2)).await.expect("w");
    stream.write_all(&barrier("M4", "second")).await.expect("w");
    assert_eq!(
        read_reply(&mut stream, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    assert_eq!(
        read_all(&mut s, "M4").await.len(),
        2,
        "the kept password still admits"
    );
    let topology = s
        .registry
        .get_topology(pb::GetTopologyRequest {
            enterprise_id: "st".into(),
        })
        .await
        .expect("topology")
        .into_inner();
    assert!(topology.outlets.iter().all(|o| o.hj212_password.is_empty()));
    let unknown = s
        .registry
        .set_hj212_password(pb::SetHj212PasswordRequest {
            source_id: "GHOST".into(),
            password: "x".into(),
        })
        .await
        .expect_err("unregistered");
    assert_eq!(unknown.code(), tonic::Code::FailedPrecondition);
}

/// Whether the gateway closes the socket within `limit` (reading what it sends meanwhile).
async fn closed_within(stream: &mut TcpStream, limit: std::time::Duration) -> bool {
    let mut buf = [0u8; 256];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_junk_and_unfinished_frames_lose_their_slot_while_a_real_device_keeps_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = start_full_with(dir, |d| {
        let mut c = test_config(d);
        c.hj212.idle_timeout_secs = 2;
        c.hj212.frame_timeout_secs = 1;
        c
    })
    .await;
    register_station(&mut s, "LB4200001", "123456").await;
    let addr = s.hj212_addr();
    // Garbage, one byte every 300 ms: bytes keep arriving, but no packet does.
    let mut junk = TcpStream::connect(addr).await.expect("connect");
    // A frame header and then one byte every 300 ms: it never completes.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"##0101QN=2021").await.expect("w");
    // A real device: a packet every 500 ms, each acknowledged.
    let mut device = TcpStream::connect(addr).await.expect("connect");
    let mut framer = Framer::new();
    let started = std::time::Instant::now();
    let (mut junk_open, mut slow_open) = (true, true);
    while started.elapsed() < std::time::Duration::from_secs(4) {
        if junk_open {
            junk_open = junk.write_all(b"x").await.is_ok();
        }
        if slow_open {
            slow_open = slow.write_all(b"0").await.is_ok();
        }
        device
            .write_all(&barrier("LB4200001", "123456"))
            .await
            .expect("the device's connection stays open");
        assert_eq!(
            read_reply(&mut device, &mut framer).await.cn.as_deref(),
            Some("9014")
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(
        closed_within(&mut junk, std::time::Duration::from_secs(5)).await,
        "junk kept its slot"
    );
    assert!(
        closed_within(&mut slow, std::time::Duration::from_secs(5)).await,
        "an unfinished frame kept its slot"
    );
    assert!(
        s.hj212_stats()
            .connections_timed_out
            .load(Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn a_new_device_connects_while_2000_idle_sockets_are_open_and_a_proven_device_keeps_its_own()
{
    let mut s = start_with_gateway().await; // the default cap: 1,024 connections
    register_station(&mut s, "M9", "pw").await;
    let addr = s.hj212_addr();
    let stats = s.hj212_stats();
    let mut framer = Framer::new();
    let mut device = TcpStream::connect(addr).await.expect("device");
    device.write_all(&barrier("M9", "pw")).await.expect("w");
    assert_eq!(
        read_reply(&mut device, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    // 2,000 sockets that connect and send nothing.
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(TcpStream::connect(addr).await.expect("idle"));
    }
    // A new device still gets in and is served ...
    let mut newcomer = TcpStream::connect(addr).await.expect("newcomer");
    newcomer.write_all(&barrier("M9", "pw")).await.expect("w");
    let mut newcomer_framer = Framer::new();
    assert_eq!(
        read_reply(&mut newcomer, &mut newcomer_framer)
            .await
            .cn
            .as_deref(),
        Some("9014")
    );
    // ... and the device that had proven itself before the idle flood was not the one evicted.
    device.write_all(&barrier("M9", "pw")).await.expect("w");
    assert_eq!(
        read_reply(&mut device, &mut framer).await.cn.as_deref(),
        Some("9014")
    );
    let evicted = stats.connections_evicted.load(Ordering::Relaxed);
    assert!(evicted >= 2000 - 1024, "{evicted} evicted");
}
