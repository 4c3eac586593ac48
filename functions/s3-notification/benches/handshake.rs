use criterion::{criterion_group, criterion_main, Criterion};
use s3_notification::records;
use s3_notification::vk::handshake_signature;
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    c.bench_function("vk/handshake_hmac_chain", |b| {
        b.iter(|| {
            handshake_signature(
                black_box("RPE5UuG94rGgBH6kHXN9FUPugFxj1hs2aUQc99btJp3E49tA"),
                black_box("2019-12-26T19:29:12+03:00"),
                black_box("mcs2883541269|bucketA|s3:ObjectCreated:Put"),
                black_box("http://test.com"),
            )
        })
    });
    let body = br#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T10:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","bucket":{"name":"photos","arn":"arn:aws:s3:::photos"},"object":{"key":"red+flower.jpg","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","sequencer":"0055AED6DCD90281E5"}}}]}"#;
    c.bench_function("s3/parse_aws_record", |b| {
        b.iter(|| records::parse(black_box(body)).unwrap())
    });
}

criterion_group!(s3, benches);
criterion_main!(s3);
