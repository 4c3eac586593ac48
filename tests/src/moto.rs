//! moto server, started by the tests themselves on a free port on 127.0.0.1.

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub struct Moto {
    endpoint: String,
    // Dropping stdin (at process exit) tells the launcher to stop the server.
    _stdin: Mutex<ChildStdin>,
    _child: Mutex<Child>,
}

/// The Python that has moto: `HUB_MOTO_PYTHON`, else the venv `scripts/python-env.sh` builds.
fn python() -> PathBuf {
    if let Ok(path) = std::env::var("HUB_MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    let cache = std::env::var("HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").expect("HOME is set")).join(".cache/callback-hub")
        });
    cache.join("venv-moto/bin/python")
}

impl Moto {
    /// The moto server of this test process, started on first use.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let python = python();
        let script = crate::repo_root().join("tests/support/moto_server.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto with {} ({e}); run scripts/python-env.sh first",
                    python.display()
                )
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("moto launcher prints its port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("moto launcher printed {line:?}, not a port"));
        let stdin = child.stdin.take().expect("piped stdin");
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _stdin: Mutex::new(stdin),
            _child: Mutex::new(child),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK configuration for moto. Timeouts are relaxed: moto loads each service's backend on
    /// first use, which can take longer than the functions' production timeouts allow.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let relaxed = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .operation_timeout(std::time::Duration::from_secs(30))
            .build();
        sdk_config_for(&self.endpoint)
            .await
            .into_builder()
            .timeout_config(relaxed)
            .build()
    }

    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk_config().await)
    }
}

/// SDK configuration for any endpoint (a closed port, to test outages): a fixed region, dummy
/// credentials, and the same timeouts and retries as the functions use.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(hub_core::aws::https_client().expect("trust roots"))
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .timeout_config(hub_core::aws::timeout_config())
        .retry_config(hub_core::aws::retry_config())
        .load()
        .await
}
