//! One function's release bootstrap under the Runtime API emulator, started again after a
//! timeout or a crash as Lambda would.

use crate::emulator::RuntimeApi;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const INIT_LIMIT: Duration = Duration::from_secs(10);

pub struct Function {
    binary: &'static str,
    path: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    api: RuntimeApi,
    child: tokio::process::Child,
    /// Processes started again (after a timeout, a crash, an init error).
    pub restarts: u64,
}

/// What the caller of an invocation saw.
pub enum Outcome {
    /// The function's answer (for API Gateway: the proxy result JSON).
    Answer(Bytes),
    /// An error reply, a timeout or a crash: API Gateway would answer 502/504, an SQS poller
    /// would see every message of the batch come back.
    Failed(String),
}

impl Function {
    pub async fn start(
        bin_dir: &Path,
        logs: &Path,
        binary: &'static str,
        env: Vec<(String, String)>,
    ) -> Result<Function, String> {
        let path = bin_dir.join(binary);
        if !path.is_file() {
            return Err(format!("{} is missing: build it first", path.display()));
        }
        let log = logs.join(format!("{binary}.log"));
        let (api, child) = launch(binary, &path, &log, &env).await?;
        Ok(Function {
            binary,
            path,
            log,
            env,
            api,
            child,
            restarts: 0,
        })
    }

    /// One invocation; after a timeout or a crash the process is replaced.
    pub async fn invoke(&mut self, event: Bytes, limit: Duration) -> Outcome {
        match self.api.invoke(event, limit).await {
            Ok(invocation) => Outcome::Answer(invocation.body),
            Err(message) => {
                let timed_out = message.starts_with("no answer within");
                let exited = !matches!(self.child.try_wait(), Ok(None));
                if timed_out || exited {
                    if let Err(e) = self.restart().await {
                        return Outcome::Failed(format!("{message}; restart failed: {e}"));
                    }
                }
                Outcome::Failed(message)
            }
        }
    }

    async fn restart(&mut self) -> Result<(), String> {
        stop(&mut self.child).await;
        self.restarts += 1;
        let (api, child) = launch(self.binary, &self.path, &self.log, &self.env).await?;
        self.api = api;
        self.child = child;
        Ok(())
    }

    pub fn name(&self) -> &'static str {
        self.binary
    }

    pub async fn stop(mut self) {
        stop(&mut self.child).await;
    }
}

async fn stop(child: &mut tokio::process::Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Spawns the bootstrap with only what Lambda itself would set, and `env`; waits for its first
/// poll. An init that fails (a faulted SSM or warm-up call may do that) is tried again, as
/// Lambda would on the next invocation.
async fn launch(
    binary: &str,
    path: &Path,
    log: &Path,
    env: &[(String, String)],
) -> Result<(RuntimeApi, tokio::process::Child), String> {
    let mut last = String::new();
    for _ in 0..5 {
        let mut api = RuntimeApi::start(binary).await.map_err(|e| e.to_string())?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = tokio::process::Command::new(path);
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/faults")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "faults")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_SESSION_TOKEN", "testing")
            .env("TZ", ":UTC");
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(|e| e.to_string())?)
            .stderr(file)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        match api.first_poll(INIT_LIMIT).await {
            Ok(_) => return Ok((api, child)),
            Err(e) => {
                last = e;
                stop(&mut child).await;
            }
        }
    }
    Err(format!("{binary} did not start: {last}"))
}
