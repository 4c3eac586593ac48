//! The cold path with TLS, as on AWS: the functions reach moto through a TLS-terminating proxy
//! (a certificate of a CA that `scripts/bench.sh` makes with openssl, RSA 2048 as AWS's are),
//! trusted the normal way, by `AWS_CA_BUNDLE` (hub_core::tls). Every cold start then pays a TLS
//! handshake to DynamoDB somewhere: in init (`DYNAMODB_WARM_UP=init`), overlapped with the
//! first event (`background`), or in the first invocation (`off`). What a caller waits for is
//! spawn to first answer; that is what chooses the default.

use crate::emulator::RuntimeApi;
use crate::scenarios::Scenario;
use crate::stats::{median, ms, percentile};
use crate::{stop, Bench, DEFAULT_MODE, INIT_LIMIT, INVOKE_LIMIT, WARM_UP_MODES};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Terminates TLS on 127.0.0.1 and relays the plain bytes to `upstream` (the timing proxy).
pub struct TlsProxy {
    address: SocketAddr,
    handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start(dir: &Path, upstream: SocketAddr) -> Result<TlsProxy, String> {
        let read = |name: &str| -> Result<PathBuf, String> {
            let path = dir.join(name);
            path.is_file()
                .then_some(path.clone())
                .ok_or_else(|| format!("{} is missing (scripts/bench.sh makes it)", path.display()))
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(read("server.pem")?)
                .map_err(|e| format!("server.pem: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("server.pem: {e}"))?;
        let key = PrivateKeyDer::from_pem_file(read("server.key")?)
            .map_err(|e| format!("server.key: {e}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("server certificate: {e}"))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let handshakes = Arc::new(AtomicU64::new(0));
        let counter = handshakes.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = plain.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Ok(TlsProxy {
            address,
            handshakes,
            task,
        })
    }

    /// The endpoint the functions get: an IP address the certificate names.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.address)
    }

    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct ColdSamples {
    init: Vec<Duration>,
    first: Vec<Duration>,
    to_answer: Vec<Duration>,
}

/// Cold starts of `scenarios` in every warm-up mode through the TLS proxy, rounds interleaved.
/// Returns the BENCHMARKS.md section, and the mode with the shortest spawn to first answer.
pub async fn measure(
    bench: &mut Bench,
    scenarios: &[&Scenario],
    tls_dir: &Path,
    rounds: usize,
) -> Result<(String, &'static str), String> {
    // A table of its own, empty at the start as the main table is for the cold starts without
    // TLS: moto answers the "latest" index query (the known-stack row's first request) by
    // scanning the table, and after the warm runs that scan alone would take a quarter second.
    let client = hub_tests::Moto::shared().dynamodb().await;
    let table = format!("{}-tls", bench.table);
    hub_tests::template::create_events_table(&client, &table).await;
    let main_table = std::mem::replace(&mut bench.table, table);
    let measured = cold_starts(bench, scenarios, tls_dir, rounds).await;
    let table = std::mem::replace(&mut bench.table, main_table);
    let _ = client.delete_table().table_name(&table).send().await;
    let samples = measured?;
    let mut text = format!(
        "## The cold path with TLS\n\n\
         The functions reach moto through a TLS-terminating proxy (RSA 2048 certificate of a \
         CA made by `scripts/bench.sh`, trusted through `AWS_CA_BUNDLE`), so every cold start \
         includes a TLS handshake to DynamoDB, as on AWS. {rounds} cold starts per function and \
         mode, rounds interleaved, against a table of their own, empty at the start (as the \
         main table is for the cold starts without TLS above). **spawn → answer** is what the caller of a cold function \
         waits for: from exec to the first invocation's answer.\n\n\
         | function | `DYNAMODB_WARM_UP` | init p50 | first invocation p50 | spawn → answer p50 | spawn → answer p90 |\n\
         |---|---|---:|---:|---:|---:|\n"
    );
    let mut totals: HashMap<&'static str, f64> = HashMap::new();
    for scenario in scenarios {
        for mode in WARM_UP_MODES {
            let s = &samples[&(scenario.name, mode)];
            let _ = writeln!(
                text,
                "| {} | {mode}{} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
                scenario.name,
                if mode == DEFAULT_MODE {
                    " (default)"
                } else {
                    ""
                },
                ms(median(&s.init)),
                ms(median(&s.first)),
                ms(median(&s.to_answer)),
                ms(percentile(&s.to_answer, 90.0)),
            );
            *totals.entry(mode).or_default() += median(&s.to_answer).as_secs_f64();
        }
    }
    let fastest = WARM_UP_MODES
        .into_iter()
        .min_by(|a, b| totals[a].total_cmp(&totals[b]))
        .unwrap_or(DEFAULT_MODE);
    let _ = write!(
        text,
        "\nSum over the functions of the spawn → answer medians: {}. Shortest in this run: \
         **{fastest}**; the functions ship with **{DEFAULT_MODE}**.\n",
        WARM_UP_MODES
            .iter()
            .map(|mode| format!("{mode} {:.1} ms", totals[mode] * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((text, fastest))
}

type Samples = HashMap<(&'static str, &'static str), ColdSamples>;

async fn cold_starts(
    bench: &mut Bench,
    scenarios: &[&Scenario],
    tls_dir: &Path,
    rounds: usize,
) -> Result<Samples, String> {
    let upstream = bench.proxy.address();
    let proxy = TlsProxy::start(tls_dir, upstream).await?;
    let bundle = tls_dir.join("ca.pem");
    let mut samples: Samples = HashMap::new();
    for round in 0..rounds {
        eprintln!("bench: TLS cold starts, round {}/{rounds}", round + 1);
        for scenario in scenarios {
            for mode in WARM_UP_MODES {
                let before = proxy.handshakes();
                let (init, first, to_answer) =
                    cold_start(bench, scenario, mode, &proxy, &bundle).await?;
                if proxy.handshakes() == before {
                    return Err(format!(
                        "{} ({mode}): no TLS handshake reached the proxy",
                        scenario.name
                    ));
                }
                let entry = samples.entry((scenario.name, mode)).or_default();
                entry.init.push(init);
                entry.first.push(first);
                entry.to_answer.push(to_answer);
            }
        }
    }
    Ok(samples)
}

async fn cold_start(
    bench: &mut Bench,
    scenario: &Scenario,
    mode: &str,
    proxy: &TlsProxy,
    bundle: &Path,
) -> Result<(Duration, Duration, Duration), String> {
    let request = bench.next_request(scenario);
    let mut env = bench.scenario_env(scenario, mode);
    for (name, value) in env.iter_mut() {
        if name == "AWS_ENDPOINT_URL" {
            *value = proxy.endpoint();
        }
    }
    env.push(("AWS_CA_BUNDLE".into(), bundle.display().to_string()));
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let mut api = RuntimeApi::start(scenario.binary)
        .await
        .map_err(|e| e.to_string())?;
    let spawned = Instant::now();
    let mut child = bench.spawn_with(scenario.binary, &api, &env)?;
    let polled = api
        .first_poll(INIT_LIMIT)
        .await
        .map_err(|e| bench.failure(scenario, &e))?;
    let invocation = api
        .invoke(request, INVOKE_LIMIT)
        .await
        .map_err(|e| bench.failure(scenario, &e))?;
    let answered = Instant::now();
    bench.check(scenario, &invocation.body)?;
    stop(&mut child).await;
    Ok((polled - spawned, invocation.latency, answered - spawned))
}
