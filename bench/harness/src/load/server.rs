//! The server under load: the release `callback-hub serve` on a SQLite file, started, killed
//! with SIGKILL and started again on the same file and port.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    binary: PathBuf,
    env_file: PathBuf,
    pub db: PathBuf,
    pub port: u16,
    log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Server {
    pub fn new(binary: &Path, env_file: &Path, scratch: &Path, name: &str) -> Result<Self, String> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        Ok(Server {
            binary: binary.to_owned(),
            env_file: env_file.to_owned(),
            db: scratch.join(format!("{name}.db")),
            port,
            log: scratch.join(format!("{name}.log")),
            child: None,
        })
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the server (appending to its log) and waits until `/healthz` shows every route
    /// enabled: a disabled route would turn the run into a measurement of 503s.
    pub async fn start(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = tokio::process::Command::new(&self.binary)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--db")
            .arg(&self.db)
            .arg("--env-file")
            .arg(&self.env_file)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", "true")
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(health) = self.health().await {
                let disabled: Vec<String> = health["routes"]
                    .as_object()
                    .map(|routes| {
                        routes
                            .iter()
                            .filter(|(_, state)| *state != "enabled")
                            .map(|(route, state)| format!("{route}: {state}"))
                            .collect()
                    })
                    .unwrap_or_default();
                if !disabled.is_empty() {
                    return Err(format!("routes disabled: {}", disabled.join("; ")));
                }
                return Ok(started.elapsed());
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "the server exited ({status}); see {}",
                        self.log.display()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err("the server did not answer /healthz within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /healthz` over a plain connection of its own (not the load's pool).
    async fn health(&self) -> Option<serde_json::Value> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        if !text.starts_with("HTTP/1.1 200") {
            return None;
        }
        let body = text.split_once("\r\n\r\n")?.1;
        serde_json::from_str(body).ok()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    /// SIGKILL (tokio's `kill` on unix), then reaps the process.
    pub async fn kill9(&mut self) -> Result<(), String> {
        let mut child = self.child.take().ok_or("the server is not running")?;
        child.kill().await.map_err(|e| e.to_string())
    }
}

fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc status"))
}

/// Resident set size and its peak, in KiB.
pub fn rss_kib(pid: u32) -> Result<(u64, u64), String> {
    Ok((status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?))
}
