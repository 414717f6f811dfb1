//! The one server harness: a real service on 127.0.0.1:0 with a temp sled dir, and real tonic clients.

#![allow(dead_code)]

pub mod process;

use cems_sentinel::pb;
use cems_sentinel::pb::enforcement_service_client::EnforcementServiceClient;
use cems_sentinel::pb::ingest_service_client::IngestServiceClient;
use cems_sentinel::pb::registry_service_client::RegistryServiceClient;
use cems_sentinel::server::{self, RunningServer, ServeConfig};
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

/// 2025-01-01T00:00:00Z: all test data lives in the past, so the 24 h future check never bites.
pub const T0: i64 = 1_735_689_600_000;
pub const MINUTE: i64 = 60_000;

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub dir: tempfile::TempDir,
    pub registry: RegistryServiceClient<Channel>,
    pub ingest: IngestServiceClient<Channel>,
    pub enforcement: EnforcementServiceClient<Channel>,
    pub channel: Channel,
}

pub fn test_config(dir: &Path) -> ServeConfig {
    let mut c = ServeConfig::new(dir.to_path_buf());
    c.cache_bytes = 32 << 20;
    c.allowed_lateness = Duration::from_secs(30 * 60);
    c.ingest.max_batch_records = 1_000;
    // Behaviour tests run as the anonymous admin; tests/auth.rs turns authentication on.
    c.require_auth = false;
    c
}

pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    start_with(dir, test_config).await
}

pub async fn start_with(
    dir: tempfile::TempDir,
    config: impl Fn(&Path) -> ServeConfig,
) -> TestServer {
    start_full(dir, config, false).await
}

/// A server with the HJ 212 gateway and a custom config.
pub async fn start_full_with(
    dir: tempfile::TempDir,
    config: impl Fn(&Path) -> ServeConfig,
) -> TestServer {
    start_full(dir, config, true).await
}

/// A server with the HJ 212 gateway on its own ephemeral port (`server.hj212_addr`).
pub async fn start_with_gateway() -> TestServer {
    start_full(tempfile::tempdir().expect("tempdir"), test_config, true).await
}

async fn start_full(
    dir: tempfile::TempDir,
    config: impl Fn(&Path) -> ServeConfig,
    gateway: bool,
) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hj212 = if gateway {
        Some(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind hj212"),
        )
    } else {
        None
    };
    let server = server::start_with(config(dir.path()), listener, hj212)
        .await
        .expect("server starts");
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    TestServer {
        registry: RegistryServiceClient::new(channel.clone()),
        ingest: IngestServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
        enforcement: EnforcementServiceClient::new(channel.clone()),
        channel,
        server: Some(server),
        dir,
    }
}

impl TestServer {
    /// A connection of the tools' kind (no credential: the harness runs without authentication).
    pub async fn conn(&self) -> cems_sentinel::tools::feed::Conn {
        let addr = self.server.as_ref().expect("running").addr.to_string();
        cems_sentinel::tools::feed::connect_as(&addr, None)
            .await
            .expect("connect")
    }

    /// The HJ 212 gateway's address (servers started with a gateway).
    pub fn hj212_addr(&self) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .and_then(|x| x.hj212_addr)
            .expect("started with a gateway")
    }

    /// The HJ 212 gateway's counters.
    pub fn hj212_stats(
        &self,
    ) -> std::sync::Arc<cems_sentinel::ingest::hj212_gateway::GatewayStats> {
        self.server
            .as_ref()
            .and_then(|x| x.hj212_stats.clone())
            .expect("started with a gateway")
    }

    /// Graceful stop, keeping the data dir for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        self.dir
    }
}

/// One enterprise `e1` (region r1) with stack `s1`, production meter `p1` (1000 kW rated) and treatment meter `t1`
/// (200 kW rated, desulfurization).
pub async fn register_plant(s: &mut TestServer, e: &str) {
    let reg = &mut s.registry;
    reg.upsert_enterprise(pb::Enterprise {
        id: e.into(),
        name: format!("{e} Power"),
        industry: "coal_power".into(),
        region: "r1".into(),
        performance_grade: "B".into(),
    })
    .await
    .expect("enterprise");
    reg.upsert_outlet(pb::Outlet {
        id: format!("{e}-s1"),
        enterprise_id: e.into(),
        name: "1# stack".into(),
        kind: pb::OutletKind::Stack as i32,
        reference_o2_pct: 6.0,
        limits_mg_m3: [("a21026".to_string(), 35.0)].into_iter().collect(),
        ..Default::default()
    })
    .await
    .expect("outlet");
    for (id, role, equipment, rated) in [
        ("p1", pb::MeterRole::Production, "boiler", 1000.0),
        ("t1", pb::MeterRole::Treatment, "desulfurization", 200.0),
    ] {
        reg.upsert_meter(pb::Meter {
            id: format!("{e}-{id}"),
            enterprise_id: e.into(),
            role: role as i32,
            equipment: equipment.into(),
            outlet_ids: vec![format!("{e}-s1")],
            rated_kw: rated,
            ..Default::default()
        })
        .await
        .expect("meter");
    }
}

pub fn measurement(code: &str, value: f64) -> pb::Measurement {
    pb::Measurement {
        code: code.into(),
        value,
        flag: pb::DataFlag::Normal as i32,
        converted: None,
    }
}

pub fn record(source: &str, time_ms: i64, values: Vec<pb::Measurement>) -> pb::Record {
    pb::Record {
        source_id: source.into(),
        time_ms,
        interval: pb::Interval::Minute as i32,
        values,
    }
}

/// Reproducible noise in [-1, 1] for (minute, channel): a hash, so test data never repeats itself (a periodic
/// fixture would rightly be flagged as replayed data).
pub fn noise(i: i64, channel: u64) -> f64 {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ channel.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// Minute `i` of a plant whose scrubber is off in `off`: production ~800 kW, treatment ~150 kW (2 kW when off), and
/// the stack's SO2, O2 and flow, each with its own noise.
pub fn plant_minute(e: &str, i: i64, off: &std::ops::Range<i64>) -> Vec<pb::Record> {
    let t = T0 + i * MINUTE;
    let r1 = |x: f64| (x * 10.0).round() / 10.0;
    let treat = if off.contains(&i) {
        2.0
    } else {
        150.0 + 2.0 * noise(i, 2)
    };
    let so2 = if off.contains(&i) {
        900.0 + 20.0 * noise(i, 3)
    } else {
        22.0 + 2.0 * noise(i, 3)
    };
    vec![
        record(
            &format!("{e}-p1"),
            t,
            vec![measurement("power_kw", r1(800.0 + 5.0 * noise(i, 1)))],
        ),
        record(
            &format!("{e}-t1"),
            t,
            vec![measurement("power_kw", r1(treat))],
        ),
        record(
            &format!("{e}-s1"),
            t,
            vec![
                measurement("a21026", r1(so2)),
                measurement("a19001", r1(6.5 + 0.2 * noise(i, 4))),
                measurement("a00000", r1(410.0 + 5.0 * noise(i, 5))),
            ],
        ),
    ]
}

/// Minutes `range` of the plant, in batches of `per_batch` minutes.
pub fn plant_batches(
    e: &str,
    range: std::ops::Range<i64>,
    off: std::ops::Range<i64>,
    per_batch: usize,
) -> Vec<pb::RecordBatch> {
    let minutes: Vec<i64> = range.collect();
    minutes
        .chunks(per_batch)
        .enumerate()
        .map(|(n, chunk)| pb::RecordBatch {
            seq: n as u64 + 1,
            records: chunk
                .iter()
                .flat_map(|i| plant_minute(e, *i, &off))
                .collect(),
        })
        .collect()
}

/// Reads every stored record of a source.
pub async fn read_all(s: &mut TestServer, source: &str) -> Vec<pb::Record> {
    let mut stream = s
        .ingest
        .read_records(pb::ReadRecordsRequest {
            source_id: source.into(),
            codes: vec![],
            from_ms: 0,
            to_ms: 0,
        })
        .await
        .expect("read")
        .into_inner();
    let mut out = Vec::new();
    while let Some(r) = stream.message().await.expect("stream") {
        out.push(r);
    }
    out
}

/// Every anomaly, all pages.
pub async fn list_all(s: &mut TestServer, mut req: pb::ListAnomaliesRequest) -> Vec<pb::Anomaly> {
    let mut out = Vec::new();
    loop {
        let page = s
            .enforcement
            .list_anomalies(req.clone())
            .await
            .expect("list")
            .into_inner();
        out.extend(page.anomalies);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
}

/// Pushes batches on one stream and asserts every record was accepted.
pub async fn push_all(s: &mut TestServer, batches: Vec<pb::RecordBatch>) {
    let mut acks = s
        .ingest
        .push(tokio_stream::iter(batches))
        .await
        .expect("push")
        .into_inner();
    while let Some(ack) = acks.message().await.expect("ack") {
        assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
    }
}
