//! Feeding a server: register a scenario's registry and stream its minutes through `Push`, as a monitoring platform
//! would.

use crate::api::{
    enterprise_to_pb, meter_to_pb, operating_change_to_pb, outlet_to_pb, points_to_records,
    restriction_to_pb,
};
use crate::domain::{Enterprise, Meter, Outlet, OutletKind, RestrictionOrder};
use crate::pb;
use crate::pb::ingest_service_client::IngestServiceClient;
use crate::pb::registry_service_client::RegistryServiceClient;
use crate::sim::Scenario;
use anyhow::Context as _;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;

/// A connection that sends the client's credential with every call.
pub type Conn = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <token>` to every request (nothing when there is no token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The CLI's credential (`--token`, `--token-file`, `SENTINEL_TOKEN`), set once by `main`.
static CLI_TOKEN: OnceLock<String> = OnceLock::new();

/// Sets the credential every [`connect`] sends.
pub fn set_cli_token(token: String) {
    let _ = CLI_TOKEN.set(token);
}

/// TLS for a client: the CA that signed the server's certificate, the name to expect in it, and for mTLS the
/// client's own certificate and key (all PEM).
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA certificate(s).
    pub ca_pem: Vec<u8>,
    /// Server name to verify (default: the host of the address).
    pub domain: Option<String>,
    /// Client certificate and key, for a server that requires them.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// The CLI's TLS settings (`--tls-ca`, …), set once by `main`.
static CLI_TLS: OnceLock<ClientTls> = OnceLock::new();

/// Sets the TLS settings every [`connect`] uses.
pub fn set_cli_tls(tls: ClientTls) {
    let _ = CLI_TLS.set(tls);
}

/// Connects to `addr` (`host:port` or a URL) with the CLI's credential and TLS settings.
///
/// # Errors
/// When the server cannot be reached.
pub async fn connect(addr: &str) -> anyhow::Result<Conn> {
    connect_with(addr, CLI_TOKEN.get().map(String::as_str), CLI_TLS.get()).await
}

/// Connects to `addr` with `token`, over plain TCP.
///
/// # Errors
/// When the server cannot be reached or the token is not valid header text.
pub async fn connect_as(addr: &str, token: Option<&str>) -> anyhow::Result<Conn> {
    connect_with(addr, token, None).await
}

/// Connects to `addr` with `token`, over TLS when `tls` is given.
///
/// # Errors
/// When the server cannot be reached (or its certificate not verified) or the token is not valid header text.
pub async fn connect_with(
    addr: &str,
    token: Option<&str>,
    tls: Option<&ClientTls>,
) -> anyhow::Result<Conn> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if addr.starts_with("http") {
        addr.to_string()
    } else {
        format!("{scheme}://{addr}")
    };
    let bearer = match token {
        Some(t) => Some(
            MetadataValue::try_from(format!("Bearer {}", t.trim()))
                .context("the token is not valid header text")?,
        ),
        None => None,
    };
    let mut endpoint = Channel::from_shared(uri.clone())?;
    if let Some(tls) = tls {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        if let Some((cert, key)) = &tls.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint.tls_config(config).context("TLS settings")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {uri}"))?;
    Ok(InterceptedService::new(channel, Bearer(bearer)))
}

/// Registers every enterprise, outlet (stacks before their bypasses), meter and order of the scenario.
///
/// # Errors
/// The first refused registration.
pub async fn register(channel: &Conn, s: &Scenario) -> anyhow::Result<()> {
    register_all(
        channel,
        &s.enterprises,
        &s.outlets,
        &s.meters,
        &s.restrictions,
    )
    .await?;
    let mut reg = RegistryServiceClient::new(channel.clone());
    for c in &s.operating_changes {
        reg.record_operating_change(operating_change_to_pb(c.clone()))
            .await?;
    }
    Ok(())
}

/// Registers enterprises, outlets (stacks before their bypasses), meters and orders.
///
/// # Errors
/// The first refused registration.
pub async fn register_all(
    channel: &Conn,
    enterprises: &[Enterprise],
    outlets: &[Outlet],
    meters: &[Meter],
    restrictions: &[RestrictionOrder],
) -> anyhow::Result<()> {
    let mut reg = RegistryServiceClient::new(channel.clone());
    for e in enterprises {
        reg.upsert_enterprise(enterprise_to_pb(e.clone())).await?;
    }
    let (stacks, bypasses): (Vec<&Outlet>, Vec<&Outlet>) =
        outlets.iter().partition(|o| o.kind == OutletKind::Stack);
    for o in stacks.into_iter().chain(bypasses) {
        reg.upsert_outlet(outlet_to_pb(o.clone())).await?;
    }
    for m in meters {
        reg.upsert_meter(meter_to_pb(m.clone())).await?;
    }
    for r in restrictions {
        reg.upsert_restriction(restriction_to_pb(r.clone())).await?;
    }
    Ok(())
}

/// What a stream achieved.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    /// Batches acknowledged.
    pub batches: u64,
    /// Measurements sent.
    pub measurements: u64,
    /// Measurements accepted.
    pub accepted: u64,
    /// Measurements rejected.
    pub rejected: u64,
    /// Wall time from first send to last ack.
    pub elapsed: Duration,
    /// Per-batch time from send to durable ack (ms).
    pub ack_latency_ms: Vec<f64>,
}

/// Generates the scenario's minutes into batches of `minutes_per_batch` minutes.
pub fn batches(s: &mut Scenario, minutes_per_batch: i64) -> Vec<pb::RecordBatch> {
    let total = s.total_minutes();
    let mut out = Vec::new();
    let mut m = 0;
    while m < total {
        let end = (m + minutes_per_batch).min(total);
        let mut points = Vec::new();
        for minute in m..end {
            points.extend(s.minute(minute));
        }
        out.push(pb::RecordBatch {
            seq: out.len() as u64 + 1,
            records: points_to_records(points),
        });
        m = end;
    }
    out
}

/// Streams batches through one `Push` stream, keeping the server busy while acks come back. With `minutes_per_sec`,
/// paces data time at that many data minutes per wall second (e.g. 1/60 = real time).
///
/// # Errors
/// A failed stream or a refused batch.
pub async fn push(
    channel: &Conn,
    batches: Vec<pb::RecordBatch>,
    pace: Option<(i64, f64)>,
) -> anyhow::Result<StreamStats> {
    let mut client = IngestServiceClient::new(channel.clone());
    let sent_at: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let measurements: u64 = batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| r.values.len() as u64)
        .sum();
    let (tx, rx) = mpsc::channel::<pb::RecordBatch>(4);
    let started = Instant::now();
    let producer_sent = sent_at.clone();
    let producer = tokio::spawn(async move {
        for (i, b) in batches.into_iter().enumerate() {
            if let Some((minutes_per_batch, minutes_per_sec)) = pace {
                let due =
                    Duration::from_secs_f64(i as f64 * minutes_per_batch as f64 / minutes_per_sec);
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + due)).await;
            }
            if let Ok(mut m) = producer_sent.lock() {
                m.insert(b.seq, Instant::now());
            }
            if tx.send(b).await.is_err() {
                break;
            }
        }
    });
    let mut acks = client.push(ReceiverStream::new(rx)).await?.into_inner();
    let mut stats = StreamStats {
        measurements,
        ..StreamStats::default()
    };
    while let Some(ack) = acks.message().await? {
        stats.batches += 1;
        stats.accepted += u64::from(ack.accepted);
        stats.rejected += ack.rejected.len() as u64;
        if let Some(t) = sent_at.lock().ok().and_then(|mut m| m.remove(&ack.seq)) {
            stats
                .ack_latency_ms
                .push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    producer.await?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// The p-th percentile (0..100) of `v` (sorted in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[idx.min(v.len() - 1)]
}

/// HJ 212 minute packets (CN 2051, Flag 5: 2017 with ack) for the scenario's minutes, one per source and minute,
/// with the registered passwords and `DataTime` in Beijing time.
pub fn hj212_packets(s: &mut Scenario) -> Vec<Vec<u8>> {
    use crate::hj212::frame::encode;
    use std::fmt::Write as _;
    let passwords: HashMap<String, String> = s
        .outlets
        .iter()
        .map(|o| (o.id.clone(), o.hj212_password.clone()))
        .chain(
            s.meters
                .iter()
                .map(|m| (m.id.clone(), m.hj212_password.clone())),
        )
        .collect();
    let mut out = Vec::new();
    let mut qn = 0u64;
    for m in 0..s.total_minutes() {
        let points = s.minute(m);
        let mut i = 0;
        while i < points.len() {
            let (source, time) = (points[i].source_id.clone(), points[i].time_ms);
            let mut cp = String::new();
            while i < points.len() && points[i].source_id == source && points[i].time_ms == time {
                let p = &points[i];
                let _ = write!(cp, ";{}-Avg={}", p.code, p.value);
                if let Some(z) = p.converted {
                    let _ = write!(cp, ",{}-ZsAvg={z}", p.code);
                }
                let _ = write!(cp, ",{}-Flag={}", p.code, p.flag.letter());
                i += 1;
            }
            qn += 1;
            let local = super::table::beijing(time).replace(['-', ' ', ':'], "");
            let segment = format!(
                "QN={local}{:05};ST=31;CN=2051;PW={};MN={source};Flag=5;CP=&&DataTime={local}00{cp}&&",
                qn % 100_000,
                passwords.get(&source).map_or("", String::as_str)
            );
            out.push(encode(&segment));
        }
    }
    out
}

/// Sends packets to an HJ 212 gateway over one connection, keeping a bounded number unacknowledged, and counts the
/// 9014 acknowledgements.
///
/// # Errors
/// When the gateway cannot be reached or the connection fails.
pub async fn send_hj212(addr: &str, packets: Vec<Vec<u8>>) -> anyhow::Result<StreamStats> {
    use crate::hj212::{Framer, Packet};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let total = packets.len() as u64;
    let started = Instant::now();
    let (acked_tx, mut acked_rx) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut framer = Framer::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut acks = 0u64;
        while acks < total {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            while let Some(f) = framer.next_frame() {
                if let Ok(f) = f {
                    if Packet::parse(&f.segment).is_ok_and(|p| p.cn.as_deref() == Some("9014")) {
                        acks += 1;
                    }
                }
            }
            let _ = acked_tx.send(acks);
        }
        acks
    });
    const WINDOW: u64 = 512;
    for (sent, p) in packets.iter().enumerate() {
        // Keep at most WINDOW packets unacknowledged, as a device's retry buffer would.
        while sent as u64 >= *acked_rx.borrow() + WINDOW {
            if acked_rx.changed().await.is_err() {
                break;
            }
        }
        wr.write_all(p).await?;
    }
    wr.flush().await?;
    let acks = reader.await?;
    Ok(StreamStats {
        batches: acks,
        measurements: total,
        accepted: acks,
        rejected: total - acks,
        elapsed: started.elapsed(),
        ack_latency_ms: Vec::new(),
    })
}
