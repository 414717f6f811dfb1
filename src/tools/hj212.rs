//! `sentinel hj212 check|send` and `sentinel bench hj212`: the protocol from the command line.

use super::table::render;
use crate::hj212::records::ConvertConfig;
use crate::hj212::{check_line, FrameError, Framer, Packet, Verdict};
use anyhow::Context as _;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `sentinel hj212 …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Hj212Command {
    /// One verdict per packet (ok / warnings / rejected with reason) and totals; exits 1 if any was rejected.
    Check {
        /// File with one packet per line.
        file: PathBuf,
        /// MNs whose devices send the MODBUS CRC dialect (repeatable).
        #[arg(long = "modbus-mn")]
        modbus_mns: Vec<String>,
    },
    /// Sends a file of packets to a gateway and reports the replies.
    Send {
        /// File with one packet per line.
        file: PathBuf,
        /// Gateway address.
        #[arg(long)]
        to: String,
        /// Seconds of silence after which no more replies are expected.
        #[arg(long, default_value_t = 2.0)]
        reply_timeout_secs: f64,
    },
}

impl Hj212Command {
    /// Runs the command and prints its report. `check` fails (exit status 1) when any packet was rejected.
    ///
    /// # Errors
    /// An unreadable file, a bad timeout, or an unreachable gateway.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Self::Check { file, modbus_mns } => {
                let (report, all_ok) = check(&file, &modbus_mns, &ConvertConfig::default())?;
                print!("{report}");
                Ok(if all_ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
            Self::Send {
                file,
                to,
                reply_timeout_secs,
            } => {
                let timeout = Duration::try_from_secs_f64(reply_timeout_secs).map_err(|_| {
                    anyhow::anyhow!(
                        "--reply-timeout-secs must be a finite number of seconds ≥ 0, got {reply_timeout_secs}"
                    )
                })?;
                print!("{}", send(&file, &to, timeout).await?);
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Lines of a packet file (one frame per line; blank lines skipped).
fn read_lines(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect())
}

/// One verdict per packet and totals. Returns the report and whether every packet was accepted.
///
/// # Errors
/// When the file cannot be read.
pub fn check(
    path: &Path,
    modbus_mns: &[String],
    cfg: &ConvertConfig,
) -> anyhow::Result<(String, bool)> {
    let modbus: HashSet<&str> = modbus_mns.iter().map(String::as_str).collect();
    let allowed = |mn: &str| modbus.contains(mn);
    let mut rows = Vec::new();
    let (mut ok, mut warned, mut rejected, mut values) = (0, 0, 0, 0);
    for (i, line) in read_lines(path)?.iter().enumerate() {
        let (verdict, detail) = match check_line(line, &allowed, cfg) {
            Verdict::Accepted {
                packet,
                warnings,
                measurements,
            } => {
                values += measurements;
                let head = format!(
                    "CN={} MN={} values={}",
                    packet.cn.unwrap_or_default(),
                    packet.mn.unwrap_or_default(),
                    measurements
                );
                if warnings.is_empty() {
                    ok += 1;
                    ("ok", head)
                } else {
                    warned += 1;
                    let w: Vec<String> = warnings.iter().map(ToString::to_string).collect();
                    ("warnings", format!("{head}: {}", w.join("; ")))
                }
            }
            Verdict::Rejected { reason } => {
                rejected += 1;
                ("rejected", reason)
            }
        };
        rows.push(vec![(i + 1).to_string(), verdict.to_string(), detail]);
    }
    let mut out = render(&["line", "verdict", "detail"], &rows);
    out.push_str(&format!(
        "{} packets: {ok} ok, {warned} ok with warnings, {rejected} rejected; {values} values\n",
        ok + warned + rejected
    ));
    Ok((out, rejected == 0))
}

/// Sends a file of packets to a gateway, one frame per line, and reports the replies.
///
/// # Errors
/// When the file cannot be read or the gateway cannot be reached.
pub async fn send(path: &Path, to: &str, reply_timeout: Duration) -> anyhow::Result<String> {
    let lines = read_lines(path)?;
    let mut stream = tokio::net::TcpStream::connect(to)
        .await
        .with_context(|| format!("connecting to {to}"))?;
    let started = Instant::now();
    let mut sent = 0usize;
    for line in &lines {
        stream.write_all(line).await?;
        if !line.ends_with(b"\r\n") {
            stream.write_all(b"\r\n").await?;
        }
        sent += 1;
    }
    stream.flush().await?;
    // Collect replies until the gateway has been quiet for `reply_timeout`.
    let mut framer = Framer::new();
    let mut acks = Vec::new();
    let mut buf = vec![0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(reply_timeout, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        framer.push(&buf[..n]);
        while let Some(f) = framer.next_frame() {
            match f {
                Ok(f) => {
                    if let Ok(p) = Packet::parse(&f.segment) {
                        acks.push(p);
                    }
                }
                Err(FrameError::Garbage { .. }) => {}
                Err(e) => tracing::warn!(error = %e, "Unreadable reply."),
            }
        }
    }
    let by_cn = |cn: &str| acks.iter().filter(|p| p.cn.as_deref() == Some(cn)).count();
    Ok(format!(
        "sent {sent} packets to {to} in {:.2} s; replies: {} data acks (9014), {} notice acks (9013), {} other\n",
        started.elapsed().as_secs_f64(),
        by_cn("9014"),
        by_cn("9013"),
        acks.len() - by_cn("9014") - by_cn("9013")
    ))
}

/// Parse throughput over a corpus: framing + CRC + data segment + conversion to records, repeated.
///
/// # Errors
/// When the file cannot be read.
pub fn bench(path: &Path, rounds: usize) -> anyhow::Result<String> {
    let lines = read_lines(path)?;
    let mut stream = Vec::new();
    for l in &lines {
        stream.extend_from_slice(l);
        stream.extend_from_slice(b"\r\n");
    }
    let cfg = ConvertConfig::default();
    let mut packets = 0u64;
    let mut values = 0u64;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut framer = Framer::new();
        // Feed in TCP-sized pieces, as the gateway does.
        for chunk in stream.chunks(1460) {
            framer.push(chunk);
            while let Some(f) = framer.next_frame() {
                let Ok(mut f) = f else { continue };
                let Ok(p) = Packet::parse(&f.segment) else {
                    continue;
                };
                if f.check_crc(true).is_err() {
                    continue;
                }
                if let Ok(c) = crate::hj212::records::to_records(&p, &cfg) {
                    values += c.records.iter().map(|r| r.values.len() as u64).sum::<u64>();
                }
                packets += 1;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = (stream.len() * rounds) as f64;
    Ok(render(
        &["figure", "value"],
        &[
            vec![
                "corpus".into(),
                format!(
                    "{} ({} lines, {} bytes)",
                    path.display(),
                    lines.len(),
                    stream.len()
                ),
            ],
            vec!["rounds".into(), rounds.to_string()],
            vec!["packets parsed".into(), packets.to_string()],
            vec![
                "throughput".into(),
                format!("{:.0} packets/s", packets as f64 / secs),
            ],
            vec![
                "throughput".into(),
                format!("{:.1} MB/s", bytes / secs / 1e6),
            ],
            vec![
                "values".into(),
                format!("{:.0} values/s", values as f64 / secs),
            ],
        ],
    ))
}
