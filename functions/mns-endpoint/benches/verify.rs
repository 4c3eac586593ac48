//! MNS verification: the real 2023 push (string to sign plus RSA-SHA1 with its cached 512-bit
//! key, the `rsa` crate's path), and the same text signed with the 1024-bit test key of
//! `events/keys` (ring's path, as for any key of 1024 bits or more).

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use mns_endpoint::signature::{string_to_sign, verify};
use rsa::pkcs8::DecodePrivateKey;
use rsa::Pkcs1v15Sign;
use sha1::{Digest, Sha1};
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

    let private =
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../../events/keys/mns-test-key.pem"))
            .unwrap();
    let key_1024 = hub_core::certs::public_key_from_pem(include_bytes!(
        "../../../events/keys/mns-test-cert.pem"
    ))
    .unwrap();
    let text = string_to_sign("POST", &headers, "/notifications").unwrap();
    let signature = private
        .sign(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(text.as_bytes()))
        .unwrap();
    let authorization_1024 =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature);
    c.bench_function("mns/verify-1024", |b| {
        b.iter(|| {
            let text = string_to_sign("POST", black_box(&headers), "/notifications").unwrap();
            verify(&key_1024, &text, &authorization_1024).unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
