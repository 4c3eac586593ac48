//! Verify, decrypt and encrypt-reply on the official vectors: the per-request crypto cost.

use criterion::{criterion_group, criterion_main, Criterion};
use dingtalk_callback::DingTalkCrypto;
use hub_core::config::Secret;
use std::hint::black_box;

// Official vector A (`docs/protocols.md` §7.2).
const TOKEN: &str = "123456";
const AES_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
const OWNER: &str = "suite4xxxxxxxxxxxxxxx";
const TIMESTAMP: &str = "1445827045067";
const NONCE: &str = "nEXhMP4r";
const SIGNATURE: &str = "5a65ceeef9aab2d149439f82dc191dd6c5cbe2c0";
const ENCRYPT: &str = "1a3NBxmCFwkCJvfoQ7WhJHB+iX3qHPsc9JbaDznE1i03peOk1LaOQoRz3+nlyGNhwmwJ3vDMG+OzrHMeiZI7gTRWVdUBmfxjZ8Ej23JVYa9VrYeJ5as7XM/ZpulX8NEQis44w53h1qAgnC3PRzM7Zc/D6Ibr0rgUathB6zRHP8PYrfgnNOS9PhSBdHlegK+AGGanfwjXuQ9+0pZcy0w9lQ==";

fn bench(c: &mut Criterion) {
    let crypto = DingTalkCrypto::new(Secret::new(TOKEN), AES_KEY, OWNER).unwrap();
    c.bench_function("dingtalk/verify", |b| {
        b.iter(|| {
            crypto
                .verify(black_box(SIGNATURE), TIMESTAMP, NONCE, black_box(ENCRYPT))
                .unwrap()
        })
    });
    c.bench_function("dingtalk/decrypt", |b| {
        b.iter(|| crypto.decrypt(black_box(ENCRYPT)).unwrap())
    });
    c.bench_function("dingtalk/verify+decrypt", |b| {
        b.iter(|| {
            crypto
                .verify(black_box(SIGNATURE), TIMESTAMP, NONCE, black_box(ENCRYPT))
                .unwrap();
            crypto.decrypt(black_box(ENCRYPT)).unwrap()
        })
    });
    c.bench_function("dingtalk/encrypt-reply", |b| {
        b.iter(|| crypto.success_reply(TIMESTAMP.to_owned(), NONCE.to_owned()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
