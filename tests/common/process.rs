//! The built `sentinel serve` as a child process: for what only a separate process shows (kill -9, SIGTERM, its
//! own resident memory).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use tonic::transport::Channel;

/// A running child server on a free port.
pub struct Process {
    pub child: Option<Child>,
    pub channel: Channel,
    pub addr: String,
}

/// A failing test must not leave a server running.
impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `sentinel serve` on `dir` with `args` added; returns once it listens.
pub async fn spawn(dir: &Path, args: &[&str]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allowed-lateness-secs",
            "1800",
            "--cache-mb",
            "32",
        ])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sentinel");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read line");
        line
    })
    .await
    .expect("join");
    let addr = line
        .trim()
        .strip_prefix("sentinel listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"))
        .to_string();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Process {
        child: Some(child),
        channel,
        addr,
    }
}

impl Process {
    /// SIGKILL and reap.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
            c.wait().expect("reap");
        }
    }

    /// The child's resident set, MiB (Linux `/proc`).
    pub fn rss_mib(&self) -> f64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// Sends SIGTERM and waits for the exit, at most `within`; `None` if it did not exit in time.
    pub async fn sigterm(
        mut self,
        within: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Some(exit) = child.try_wait().expect("wait") {
                return Some(exit);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}
