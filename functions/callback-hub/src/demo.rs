//! `callback-hub demo`: the server on a temporary database with the test secrets of
//! `events/env.json`, every sample of `events/` replayed over real HTTP, and what each sender
//! got back and what was stored printed. It fails unless every sample was accepted and stored.

use crate::routes::Routes;
use crate::server::serve;
use crate::store::AnyStore;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hub_core::event::{format_time, Source};
use hub_core::store::{PageRequest, SubjectHistory};
use serde_json::Value;
use sqlite_store::SqliteStore;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the samples of `events/` leave in the store: (source, subject, events).
pub const EXPECTED: &[(Source, &str, usize)] = &[
    (Source::Stack, "test-notification-url", 2),
    (Source::Stack, "orders-api", 2),
    (Source::Dingtalk, "a171de6c-8bf8-4e0d-9e1a-2f4c6d8e0b13", 2),
    (Source::Dingtalk, "user:manager7140", 1),
    (Source::Mns, "orders", 3),
    (Source::S3, "bucketA/reports/2024 q1.csv", 1),
    (Source::S3, "bucketA/reports/old.csv", 1),
    (
        Source::S3,
        "photos-2024/holiday/red flower \u{e9}t\u{e9}.jpg",
        1,
    ),
    (Source::S3, "photos-2024", 1),
    (Source::Tsuru, "app/myapp", 2),
    (Source::Tsuru, "node/http://10.0.3.41:2375", 1),
];

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0} is not valid: {1}")]
    Fixture(String, String),
    #[error(transparent)]
    Store(#[from] hub_core::store::StoreError),
    #[error(transparent)]
    Config(#[from] hub_core::config::ConfigError),
}

/// The test secrets of every route, from `events/local.env` (generated from `env.json` with the
/// samples), with `PINNED_CERTS_FILE` made absolute: it is relative to the repository root.
pub fn demo_vars(events_dir: &Path) -> Result<HashMap<String, String>, DemoError> {
    let path = events_dir.join("local.env");
    let text =
        std::fs::read_to_string(&path).map_err(|e| DemoError::Io(path.display().to_string(), e))?;
    let root = events_dir.parent().unwrap_or(events_dir);
    let pairs = crate::dotenv::parse(&text, &path.display().to_string())
        .map_err(|e| DemoError::Fixture(path.display().to_string(), e.to_string()))?;
    Ok(pairs
        .into_iter()
        .map(|(name, value)| match name.as_str() {
            "PINNED_CERTS_FILE" => (name, root.join(value).display().to_string()),
            _ => (name, value),
        })
        .collect())
}

/// A sample request (API Gateway HTTP API 2.0 JSON) as plain HTTP parts.
pub struct Sample {
    pub name: String,
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

pub fn load_sample(path: &Path) -> Result<Sample, DemoError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bad = |what: &str| DemoError::Fixture(name.clone(), what.to_owned());
    let text =
        std::fs::read_to_string(path).map_err(|e| DemoError::Io(path.display().to_string(), e))?;
    let event: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .ok_or_else(|| bad("no requestContext.http.method"))?
        .to_owned();
    let path = event["rawPath"].as_str().ok_or_else(|| bad("no rawPath"))?;
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    let path_and_query = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let headers = event["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length"))
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect();
    let body = match event["body"].as_str() {
        None => Vec::new(),
        Some(body) if event["isBase64Encoded"] == true => STANDARD
            .decode(body)
            .map_err(|_| bad("body is not base64"))?,
        Some(body) => body.as_bytes().to_vec(),
    };
    Ok(Sample {
        name,
        method,
        path_and_query,
        headers,
        body,
    })
}

/// Every sample file, notifications before the queries that read what they stored.
pub fn sample_files(events_dir: &Path) -> Result<Vec<PathBuf>, DemoError> {
    let entries = std::fs::read_dir(events_dir)
        .map_err(|e| DemoError::Io(events_dir.display().to_string(), e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".json") && name != "env.json" && name != "pinned-certs.json"
        })
        .collect();
    files.sort_by_key(|path| {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        (name.contains("get-"), name)
    });
    Ok(files)
}

pub struct DemoReport {
    pub text: String,
    pub success: bool,
}

/// Runs the demo on the database at `db`.
pub async fn run(events_dir: &Path, db: &Path) -> Result<DemoReport, DemoError> {
    let mut out = String::new();
    let sqlite = SqliteStore::open(db)?;
    let before = sqlite.count().await?;
    let store = AnyStore::Sqlite(sqlite.clone());
    let routes = Arc::new(Routes::local(demo_vars(events_dir)?, store.clone()).await?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Io("binding 127.0.0.1".into(), e))?;
    let address = listener
        .local_addr()
        .map_err(|e| DemoError::Io("local address".into(), e))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, routes.clone(), async {
        let _ = stopped.await;
    }));
    let _ = writeln!(
        out,
        "callback-hub serving on http://{address}, database {}\n",
        db.display()
    );

    let webhook = crate::worker::DemoWebhook::start(&sqlite)
        .await
        .map_err(|e| DemoError::Fixture("the demo webhook".into(), e))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut failures = 0;
    for file in sample_files(events_dir)? {
        let sample = load_sample(&file)?;
        let mut request = http::Request::builder()
            .method(sample.method.as_str())
            .uri(format!("http://{address}{}", sample.path_and_query));
        for (name, value) in &sample.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(sample.body)))
            .map_err(|e| DemoError::Fixture(sample.name.clone(), e.to_string()))?;
        let path = sample
            .path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let (status, body) = match client.request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                (status, body)
            }
            Err(err) => (0, format!("request failed: {err}")),
        };
        let ok = (200..300).contains(&status);
        failures += usize::from(!ok);
        let _ = writeln!(
            out,
            "{}\n  {} {path} -> {status} {}",
            sample.name,
            sample.method,
            body.trim_end()
        );
    }

    for &(source, subject, expected) in EXPECTED {
        let history = store
            .events_about(source, subject, &PageRequest::first(10))
            .await?;
        let _ = writeln!(
            out,
            "\nstored {source} events about {subject}, newest first:"
        );
        for event in &history.events {
            let at = format_time(event.event_time());
            let _ = writeln!(out, "  {at} {} {}", event.event_type, event.event_id);
        }
        if history.events.len() != expected {
            let _ = writeln!(out, "  expected {expected}, found {}", history.events.len());
            failures += 1;
        }
    }
    let after = sqlite.count().await?;
    let _ = writeln!(
        out,
        "\n{} new event(s) stored by this run, {after} in the database",
        after - before
    );
    // Every event stored by this run goes to the demo webhook, signed (issue 17).
    let new_events = usize::try_from(after - before).unwrap_or(usize::MAX);
    let (report, delivered) = webhook
        .finish(new_events, std::time::Duration::from_secs(30))
        .await;
    out.push_str(&report);
    failures += usize::from(!delivered);
    let _ = stop.send(());
    let _ = server.await;
    let success = failures == 0;
    if success {
        let _ = writeln!(out, "demo: every sample accepted and stored");
    } else {
        let _ = writeln!(out, "demo: {failures} check(s) failed");
    }
    Ok(DemoReport { text: out, success })
}
