//! The HJ 212 gateway: data acquisition units connect over TCP and upload packets; data commands go through the
//! same validation, durability and detection path as gRPC `Push`, and the 9014 acknowledgement (when the Flag A bit
//! asks for one) is sent only once the data is on disk.
//!
//! Each connection may carry many MNs. A packet is refused, logged with its reason and counted, with nothing stored,
//! when its framing or CRC is bad, its MN is not a registered outlet or meter, or its PW differs from the registered
//! password. One misbehaving device cannot exhaust the service: connections are capped, idle ones are closed, the
//! framer never buffers more than one maximal frame plus one read, and a connection's buffers come out of the ingest
//! memory budget. At the cap, a new connection evicts the oldest one that has not yet sent a packet of a registered
//! MN with its PW, so sockets that send nothing useful cannot keep devices out.

use super::budget::BufferHold;
use super::{IngestError, Ingestor};
use crate::domain::quote::quote;
use crate::hj212::reassembly::Reassembler;
use crate::hj212::records::{self, ConvertConfig};
use crate::hj212::{reply, FrameError, Framer, Packet};
use crate::registry::RegistryRef;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};

/// Gateway settings, read from the `--hj212-config` TOML file (every field optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Offset of device `DataTime` from UTC, hours (8 = Beijing time).
    pub utc_offset_hours: f64,
    /// Concurrent connections; further ones are closed at once.
    pub max_connections: usize,
    /// A connection that sends no packet of a registered MN with its PW for this long is closed (devices
    /// reconnect); garbage and refused packets do not reset the clock.
    pub idle_timeout_secs: u64,
    /// A frame begun must be complete within this long (a socket trickling a byte at a time is closed).
    pub frame_timeout_secs: u64,
    /// How long segments of a split packet wait for the rest before the part that arrived is ingested.
    pub segment_timeout_secs: u64,
    /// Extra code mappings (`"i33200" = "current_a"`, `"100000-Pt" = "power_kw"`), added to the built-in ones.
    pub code_dictionary: BTreeMap<String, String>,
    /// Per-device settings by MN.
    pub devices: BTreeMap<String, DeviceConfig>,
    /// Accept packets of an MN registered without a password (off: every MN must have a PW, set with
    /// `RegistryService.SetHj212Password`).
    pub allow_missing_password: bool,
}

/// Settings of one device.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// CRC dialect: `hj212` (standard) or `modbus_low_byte_first` (seen on real devices).
    pub crc: crate::hj212::crc::CrcDialect,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            utc_offset_hours: 8.0,
            max_connections: 1024,
            idle_timeout_secs: 600,
            frame_timeout_secs: 30,
            segment_timeout_secs: 60,
            code_dictionary: BTreeMap::new(),
            devices: BTreeMap::new(),
            allow_missing_password: false,
        }
    }
}

/// Why a gateway config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("parsing {path}: {message}")]
    Parse {
        /// Path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Values out of range, all of them.
    #[error("invalid gateway settings: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl GatewayConfig {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming every problem found.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges, reporting every problem at once.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !(-12.0..=14.0).contains(&self.utc_offset_hours) {
            problems.push(format!(
                "utc_offset_hours {} is not a time zone",
                self.utc_offset_hours
            ));
        }
        if self.max_connections == 0 {
            problems.push("max_connections must be at least 1".into());
        }
        if self.idle_timeout_secs == 0 {
            problems.push("idle_timeout_secs must be at least 1".into());
        }
        if self.frame_timeout_secs == 0 {
            problems.push("frame_timeout_secs must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    fn convert(&self) -> ConvertConfig {
        let mut dictionary = records::default_dictionary();
        dictionary.extend(self.code_dictionary.clone());
        ConvertConfig::new((self.utc_offset_hours * 3_600_000.0) as i64, dictionary)
    }

    fn modbus_devices(&self) -> HashSet<String> {
        self.devices
            .iter()
            .filter(|(_, d)| d.crc == crate::hj212::crc::CrcDialect::ModbusLowByteFirst)
            .map(|(mn, _)| mn.clone())
            .collect()
    }
}

/// Counters, for logs, tests and operators.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at once because the limit was reached.
    pub connections_refused: AtomicU64,
    /// Packets accepted (data stored, or a non-data command handled).
    pub packets_accepted: AtomicU64,
    /// Packets refused for framing (length, truncation).
    pub refused_framing: AtomicU64,
    /// Packets refused for their CRC.
    pub refused_crc: AtomicU64,
    /// Packets whose data segment could not be parsed.
    pub refused_parse: AtomicU64,
    /// Packets from an MN that is not a registered outlet or meter.
    pub refused_unknown_mn: AtomicU64,
    /// Packets with the wrong password.
    pub refused_password: AtomicU64,
    /// Packets the ingest path could not take (store failure, shutdown).
    pub refused_ingest: AtomicU64,
    /// Bytes skipped between frames.
    pub garbage_bytes: AtomicU64,
    /// Measurements accepted.
    pub measurements: AtomicU64,
    /// Acknowledgements sent.
    pub acks_sent: AtomicU64,
    /// TLS connections closed because the handshake failed or did not finish in time.
    pub tls_handshakes_failed: AtomicU64,
    /// Connections closed for sending no accepted packet within the idle timeout, or no complete frame in time.
    pub connections_timed_out: AtomicU64,
    /// Connections that had sent no accepted packet, closed to make room for a new one at the connection cap.
    pub connections_evicted: AtomicU64,
    /// Split packets ingested before their last segment because the memory budget had no room to hold them.
    pub released_for_memory: AtomicU64,
}

impl GatewayStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot for display: (name, value).
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections", g(&self.connections)),
            ("connections_refused", g(&self.connections_refused)),
            ("packets_accepted", g(&self.packets_accepted)),
            ("refused_framing", g(&self.refused_framing)),
            ("refused_crc", g(&self.refused_crc)),
            ("refused_parse", g(&self.refused_parse)),
            ("refused_unknown_mn", g(&self.refused_unknown_mn)),
            ("refused_password", g(&self.refused_password)),
            ("refused_ingest", g(&self.refused_ingest)),
            ("garbage_bytes", g(&self.garbage_bytes)),
            ("measurements", g(&self.measurements)),
            ("acks_sent", g(&self.acks_sent)),
            ("tls_handshakes_failed", g(&self.tls_handshakes_failed)),
            ("connections_timed_out", g(&self.connections_timed_out)),
            ("connections_evicted", g(&self.connections_evicted)),
            ("released_for_memory", g(&self.released_for_memory)),
        ]
    }
}

/// Read size per socket read.
const READ_CHUNK: usize = 16 * 1024;

struct Shared {
    ingestor: Arc<Ingestor>,
    registry: RegistryRef,
    convert: ConvertConfig,
    modbus: HashSet<String>,
    stats: Arc<GatewayStats>,
    idle_timeout: Duration,
    frame_timeout: Duration,
    segment_timeout: Duration,
    allow_missing_password: bool,
}

/// Segments of unfinished split packets one connection may hold; beyond it the oldest are ingested as they stand
/// (incomplete, as on timeout), so never-finished packets cannot grow memory.
const MAX_REASSEMBLY_BYTES: usize = 256 * 1024;

/// Refusals of one connection are logged at most once per this interval (the rest are counted into the next line).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The log lines one connection's bad input causes, rate limited: the first refusal is logged at once, later ones
/// within [`REFUSAL_LOG_INTERVAL`] are counted and summarised with the latest reason, so a device cannot turn 8 MiB
/// of bad frames into half a gigabyte of log. Counters ([`GatewayStats`]) still count every one.
struct Refusals {
    peer: std::net::SocketAddr,
    logged_at: Option<Instant>,
    suppressed: u64,
    latest: String,
}

impl Refusals {
    fn new(peer: std::net::SocketAddr) -> Self {
        Self {
            peer,
            logged_at: None,
            suppressed: 0,
            latest: String::new(),
        }
    }

    /// Notes one refusal; `reason` is built only when it will be logged or kept as the latest.
    fn note(&mut self, what: &str, reason: impl std::fmt::Display) {
        let now = Instant::now();
        match self.logged_at {
            Some(at) if now.duration_since(at) < REFUSAL_LOG_INTERVAL => {
                self.suppressed += 1;
                self.latest = format!("{what}: {reason}");
            }
            _ => {
                self.flush();
                tracing::warn!(peer = %self.peer, "HJ 212 {what}: {reason}");
                self.logged_at = Some(now);
            }
        }
    }

    /// Logs the count of refusals not yet logged.
    fn flush(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(peer = %self.peer, more = self.suppressed, latest = %self.latest, "HJ 212: further refusals from this connection.");
            self.suppressed = 0;
        }
    }
}

/// Connections that have not yet sent an accepted packet, oldest first, each with the bell that closes it.
#[derive(Default)]
struct Unproven {
    next_id: std::sync::atomic::AtomicU64,
    by_age: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Unproven {
    fn add(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bell = Arc::new(Notify::new());
        self.lock().insert(id, bell.clone());
        (id, bell)
    }

    /// The connection proved itself, or went away.
    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the oldest unproven connection; false when every connection is a proven device.
    fn evict_oldest(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, bell)) => {
                bell.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Notify>>> {
        self.by_age.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long a new connection waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// A TLS handshake longer than this is a connection holding a slot for nothing.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `shutdown` turns true; over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    ingestor: Arc<Ingestor>,
    registry: RegistryRef,
    config: GatewayConfig,
    stats: Arc<GatewayStats>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let shared = Arc::new(Shared {
        ingestor,
        registry,
        convert: config.convert(),
        modbus: config.modbus_devices(),
        allow_missing_password: config.allow_missing_password,
        stats,
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
        frame_timeout: Duration::from_secs(config.frame_timeout_secs),
        segment_timeout: Duration::from_secs(config.segment_timeout_secs),
    });
    let unproven = Arc::new(Unproven::default());
    let mut refused_log = Refusals::new(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            // Reap finished connections as they go, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "HJ 212 accept failed.");
                        continue;
                    }
                };
                let permit = match permits.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) if unproven.evict_oldest() => {
                        GatewayStats::add(&shared.stats.connections_evicted, 1);
                        tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned())
                            .await
                            .ok()
                            .and_then(Result::ok)
                    }
                    Err(_) => None,
                };
                let Some(permit) = permit else {
                    GatewayStats::add(&shared.stats.connections_refused, 1);
                    refused_log.note("connection refused", format_args!("{peer}: the connection limit is reached by devices"));
                    drop(stream);
                    continue;
                };
                GatewayStats::add(&shared.stats.connections, 1);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                let tls = tls.clone();
                let (id, evict) = unproven.add();
                let unproven = unproven.clone();
                connections.spawn(async move {
                    let slot = Slot { id, evict, unproven };
                    match tls {
                        None => connection(stream, peer, &shared, shutdown, &slot).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls_stream)) => connection(tls_stream, peer, &shared, shutdown, &slot).await,
                                Ok(Err(e)) => {
                                    GatewayStats::add(&shared.stats.tls_handshakes_failed, 1);
                                    tracing::debug!(%peer, error = %e, "HJ 212 TLS handshake failed; closed.");
                                }
                                Err(_) => {
                                    GatewayStats::add(&shared.stats.tls_handshakes_failed, 1);
                                    tracing::debug!(%peer, "HJ 212 TLS handshake timed out; closed.");
                                }
                            }
                        }
                    }
                    slot.unproven.remove(slot.id);
                    drop(permit);
                });
            }
        }
    }
    refused_log.flush();
    // Let in-flight packets finish (each connection stops reading at shutdown).
    while connections.join_next().await.is_some() {}
    tracing::info!("HJ 212 gateway stopped.");
}

/// What a connection holds in memory: its read buffer, the framer's partial frame, reassembly's waiting segments.
fn buffered(framer: &Framer, reassembler: &Reassembler) -> usize {
    READ_CHUNK + framer.buffered() + reassembler.bytes()
}

/// A connection's place under the cap: until its first accepted packet it may be evicted.
struct Slot {
    id: u64,
    evict: Arc<Notify>,
    unproven: Arc<Unproven>,
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: std::net::SocketAddr,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
    slot: &Slot,
) {
    let budget = shared.ingestor.budget().clone();
    // The read buffer, the framer's partial frame and reassembly's waiting segments, against the ingest budget.
    let mut memory = BufferHold::default();
    if !memory.fit(READ_CHUNK, &budget) {
        GatewayStats::add(&shared.stats.connections_refused, 1);
        tracing::debug!(%peer, "HJ 212 connection closed: the ingest memory budget is exhausted.");
        return;
    }
    let mut proven = false;
    let mut framer = Framer::new();
    let mut reassembler = Reassembler::default();
    let mut refusals = Refusals::new(peer);
    let started = Instant::now();
    let mut buf = vec![0u8; READ_CHUNK];
    // The idle clock runs from the last packet of a registered MN with its PW, not from the last byte: a socket
    // that sends garbage or bad packets slowly cannot hold a connection slot. A frame begun must also finish soon.
    let mut last_useful = Instant::now();
    let mut partial_since: Option<Instant> = None;
    loop {
        let mut wait = shared.idle_timeout.saturating_sub(last_useful.elapsed());
        if let Some(p) = partial_since {
            wait = wait.min(shared.frame_timeout.saturating_sub(p.elapsed()));
        }
        let read = tokio::select! {
            _ = shutdown.changed() => break,
            _ = slot.evict.notified(), if !proven => {
                tracing::debug!(%peer, "HJ 212 connection that sent no accepted packet closed for a new one (connection cap).");
                break;
            }
            r = tokio::time::timeout(wait, stream.read(&mut buf)) => r,
        };
        let n = match read {
            Err(_) => {
                GatewayStats::add(&shared.stats.connections_timed_out, 1);
                tracing::debug!(%peer, "HJ 212 connection sent no packet (or no complete frame) in time; closed.");
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "HJ 212 read failed; closed.");
                break;
            }
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        while let Some(next) = framer.next_frame() {
            let now = started.elapsed().as_millis() as i64;
            match next {
                Ok(mut frame) => {
                    let packet = match Packet::parse(&frame.segment) {
                        Ok(p) => p,
                        Err(e) => {
                            GatewayStats::add(&shared.stats.refused_parse, 1);
                            refusals.note("packet refused", e);
                            continue;
                        }
                    };
                    let mn = packet.mn.clone().unwrap_or_default();
                    if let Err(e) = frame.check_crc(shared.modbus.contains(&mn)) {
                        GatewayStats::add(&shared.stats.refused_crc, 1);
                        refusals.note("packet refused", format_args!("MN {}: {e}", quote(&mn)));
                        continue;
                    }
                    if !authorized(shared, &mut refusals, &packet) {
                        continue;
                    }
                    last_useful = Instant::now();
                    if !proven {
                        proven = true;
                        slot.unproven.remove(slot.id);
                    }
                    let whole = reassembler.push(packet, now);
                    let mut limit = MAX_REASSEMBLY_BYTES;
                    if !memory.fit(buffered(&framer, &reassembler), &budget) {
                        limit = limit.min(
                            memory
                                .bytes()
                                .saturating_sub(READ_CHUNK + framer.buffered()),
                        );
                        GatewayStats::add(&shared.stats.released_for_memory, 1);
                    }
                    for partial in reassembler.release_over(limit) {
                        let _ = handle(shared, &peer, &mut refusals, partial).await;
                    }
                    if let Some(whole) = whole {
                        if let Some(bytes) = handle(shared, &peer, &mut refusals, whole).await {
                            if stream.write_all(&bytes).await.is_err() {
                                return;
                            }
                            GatewayStats::add(&shared.stats.acks_sent, 1);
                        }
                    }
                }
                Err(FrameError::Garbage { bytes }) => {
                    GatewayStats::add(&shared.stats.garbage_bytes, bytes as u64)
                }
                Err(e) => {
                    GatewayStats::add(&shared.stats.refused_framing, 1);
                    refusals.note("frame refused", e);
                }
            }
        }
        partial_since = match (framer.buffered(), partial_since) {
            (0, _) => None,
            (_, Some(p)) => Some(p),
            (_, None) => Some(Instant::now()),
        };
        let now = started.elapsed().as_millis() as i64;
        for partial in reassembler.expire(now, shared.segment_timeout.as_millis() as i64) {
            let _ = handle(shared, &peer, &mut refusals, partial).await;
        }
        // Give back what the buffers no longer hold (the framer's share may not fit: it is bounded by one frame).
        let _ = memory.fit(buffered(&framer, &reassembler), &budget);
    }
    // Segments still waiting when the device goes away are not lost.
    for partial in reassembler.expire(i64::MAX, 0) {
        let _ = handle(shared, &peer, &mut refusals, partial).await;
    }
    refusals.flush();
}

/// MN registered and PW right; otherwise counted, logged and refused.
fn authorized(shared: &Shared, refusals: &mut Refusals, p: &Packet) -> bool {
    let mn = p.mn.as_deref().unwrap_or_default();
    match shared.registry.hj212_password(mn) {
        None => {
            GatewayStats::add(&shared.stats.refused_unknown_mn, 1);
            refusals.note(
                "packet refused",
                format_args!("MN {} is not a registered outlet or meter", quote(mn)),
            );
            false
        }
        Some(pw) if pw.is_empty() => {
            if !shared.allow_missing_password {
                GatewayStats::add(&shared.stats.refused_password, 1);
                refusals.note(
                    "packet refused",
                    format_args!(
                        "no PW registered for MN {} (set one with SetHj212Password)",
                        quote(mn)
                    ),
                );
            }
            shared.allow_missing_password
        }
        Some(pw)
            if !crate::domain::secret::password_matches(
                &pw,
                p.pw.as_deref().unwrap_or_default(),
            ) =>
        {
            GatewayStats::add(&shared.stats.refused_password, 1);
            refusals.note(
                "packet refused",
                format_args!("wrong PW for MN {}", quote(mn)),
            );
            false
        }
        Some(_) => true,
    }
}

/// Ingests a packet's data (waiting for durability) and returns the reply due, if any.
async fn handle(
    shared: &Shared,
    peer: &std::net::SocketAddr,
    refusals: &mut Refusals,
    mut p: Packet,
) -> Option<Vec<u8>> {
    let cn = p.cn.clone().unwrap_or_default();
    // The device authenticated by its MN and PW is who sent it.
    let receipt = crate::ledger::Receipt {
        principal: format!("MN {} ({peer})", p.mn.as_deref().unwrap_or_default()),
        transport: crate::ledger::Transport::Hj212,
        items: std::mem::take(&mut p.received),
    };
    let converted = match records::to_records(&p, &shared.convert) {
        Ok(c) => c,
        Err(e) => {
            GatewayStats::add(&shared.stats.refused_parse, 1);
            refusals.note(
                "packet refused",
                format_args!("MN {}: {e}", quote(p.mn.as_deref().unwrap_or_default())),
            );
            return None;
        }
    };
    if !converted.records.is_empty() {
        let sender = format!("MN {}", p.mn.as_deref().unwrap_or_default());
        match shared
            .ingestor
            .write(&sender, converted.records, receipt)
            .await
        {
            Ok(ack) => {
                GatewayStats::add(&shared.stats.measurements, u64::from(ack.accepted));
                for r in &ack.rejected {
                    refusals.note("value rejected", format_args!("{}: {}", r.code, r.reason));
                }
            }
            Err(e) => {
                GatewayStats::add(&shared.stats.refused_ingest, 1);
                let level_is_error = matches!(e, IngestError::CommitFailed(_));
                if level_is_error {
                    tracing::error!(%peer, error = %e, "HJ 212 packet not stored; no ack sent.");
                } else {
                    tracing::warn!(%peer, error = %e, "HJ 212 packet not stored; no ack sent.");
                }
                return None;
            }
        }
    }
    GatewayStats::add(&shared.stats.packets_accepted, 1);
    match cn.as_str() {
        // A field notice (time-calibration request) gets a notice acknowledgement.
        "1013" => Some(reply::notice_ack(&p)),
        _ => reply::data_ack(&p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hj212.example.toml");
        let c = GatewayConfig::load(&path).unwrap();
        assert_eq!(c.code_dictionary["g11601"], "damper_open_pct");
        assert!(c.modbus_devices().contains("88888880000001"));
    }

    #[test]
    fn config_file_parses_validates_and_rejects_unknown_keys() {
        let c: GatewayConfig = toml::from_str(
            r#"
            utc_offset_hours = 8
            [code_dictionary]
            "100000-Pt" = "power_kw"
            [devices."88888880000001"]
            crc = "modbus_low_byte_first"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert!(c.modbus_devices().contains("88888880000001"));
        assert_eq!(c.convert().dictionary["100000-Pt"], "power_kw");
        assert_eq!(c.convert().utc_offset_ms, 28_800_000);
        assert!(
            toml::from_str::<GatewayConfig>("max_conections = 3").is_err(),
            "typos are refused"
        );
        let bad = GatewayConfig {
            utc_offset_hours: 30.0,
            max_connections: 0,
            ..Default::default()
        };
        match bad.validate() {
            Err(ConfigError::Invalid(p)) => assert_eq!(p.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
