//! SNS verification on real AWS-signed messages with the signing certificate already cached:
//! the per-request cost once a function has seen its topic's certificate.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use hub_core::certs::{public_key_from_pem, CertError, CertificateCache, Fetcher};
use sns::{parse, SnsVerifier};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

/// The certificate is pinned, so nothing is ever fetched; a fetch would fail the benchmark.
struct NoNetwork;

impl Fetcher for NoNetwork {
    async fn get(&self, _url: &str) -> Result<(u16, Bytes), CertError> {
        Err(CertError::Unreachable("benchmarks never fetch".into()))
    }
}

fn bench(c: &mut Criterion) {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/sns-vectors.json")).unwrap();
    let key = public_key_from_pem(vectors["certificate_pem"].as_str().unwrap().as_bytes()).unwrap();
    let pinned = HashMap::from([(
        vectors["certificate_url"].as_str().unwrap().to_owned(),
        Arc::new(key),
    )]);
    let messages = vectors["messages"].as_array().unwrap();
    let topics = messages
        .iter()
        .map(|m| m["TopicArn"].as_str().unwrap().to_owned())
        .collect();
    let verifier = SnsVerifier::new(CertificateCache::new(NoNetwork, pinned), topics);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (id, version) in [("sns/verify-cached", "1"), ("sns/verify-cached-v2", "2")] {
        let body = messages
            .iter()
            .find(|m| m["SignatureVersion"].as_str() == Some(version))
            .map(|m| serde_json::to_vec(m).unwrap())
            .unwrap();
        runtime
            .block_on(verifier.verify(&parse(&body).unwrap()))
            .expect("the vector verifies");
        c.bench_function(id, |b| {
            b.iter(|| {
                let message = parse(black_box(&body)).unwrap();
                runtime.block_on(verifier.verify(&message)).unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
