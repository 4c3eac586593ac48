//! MNS verification on the real 2023 push: string to sign plus RSA-SHA1 with a cached key.

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use mns_endpoint::signature::{string_to_sign, verify};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let vector: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/mns-vector.json")).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in vector["headers"].as_object().unwrap() {
        headers.insert(
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    let key = hub_core::certs::public_key_from_pem(
        vector["certificate_pem"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let authorization = vector["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    c.bench_function("mns/verify", |b| {
        b.iter(|| {
            let text = string_to_sign("POST", black_box(&headers), "/notifications").unwrap();
            verify(&key, &text, &authorization).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
