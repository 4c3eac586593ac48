//! The client side of one DynamoDB request, as every function makes it: the SDK configuration of
//! `hub_core::aws::lambda_sdk_config` (signing, retries, timeouts, our HTTP client) against a
//! server on loopback that answers at once, on one thread as the functions run. What the
//! runtime-emulator runs (`BENCHMARKS.md`) count as a function's own time per DynamoDB request,
//! without the proxy's hops. Twice: through the SDK's orchestrator, and as the functions now
//! send their puts (`hub_core::store::dynamo::direct`).

use aws_sdk_dynamodb::types::AttributeValue;
use criterion::{criterion_group, criterion_main, Criterion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: 2\r\n\r\n{}";

/// Answers `{}` to every request on every connection, keeping connections open.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut held = Vec::new();
            loop {
                let Ok(n) = stream.read(&mut buffer).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                held.extend_from_slice(&buffer[..n]);
                // One request is complete when its body (content-length) has arrived.
                while let Some(end) = complete(&held) {
                    held.drain(..end);
                    if stream.write_all(ANSWER).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

fn complete(held: &[u8]) -> Option<usize> {
    let head_end = held.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&held[..head_end]).ok()?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (held.len() >= head_end + length).then_some(head_end + length)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    runtime.spawn(serve(listener));
    // SAFETY: one thread (the runtime is current-thread); nothing reads the environment meanwhile.
    for (name, value) in [
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        ),
        ("AWS_ENDPOINT_URL", format!("http://{address}")),
    ] {
        unsafe { std::env::set_var(name, value) }
    }
    let config = hub_core::aws::lambda_sdk_config().unwrap();
    let client = hub_core::aws::dynamodb_client(&config);
    let put = || {
        client
            .put_item()
            .table_name("callback-hub-events")
            .item(
                "pk",
                AttributeValue::S("stack#ros-0123456789abcdef0123456789abcdef".into()),
            )
            .item("payload", AttributeValue::S("x".repeat(400)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
    };
    runtime
        .block_on(put())
        .expect("the loopback server answers");
    c.bench_function("dynamodb/put-item", |b| {
        b.iter(|| runtime.block_on(put()).unwrap())
    });

    // The same put as the functions send it: `hub_core::store::dynamo::direct`.
    let direct = hub_core::store::dynamo::direct::DirectPut::for_config(
        &config,
        hub_core::aws::dynamodb_connector(
            &config,
            &hub_core::sdk_http::SdkHttpClient::shared().unwrap(),
        ),
        std::time::Duration::from_millis(800),
    )
    .expect("a loopback endpoint the direct path signs for");
    let item = std::collections::HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S("stack#ros-0123456789abcdef0123456789abcdef".into()),
        ),
        ("payload".to_owned(), AttributeValue::S("x".repeat(400))),
    ]);
    runtime
        .block_on(direct.put_if_absent("callback-hub-events", &item))
        .expect("the loopback server answers");
    c.bench_function("dynamodb/put-item-direct", |b| {
        b.iter(|| {
            runtime
                .block_on(direct.put_if_absent("callback-hub-events", &item))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
