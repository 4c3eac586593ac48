//! The S3 mirror (`s3-notification` with `MIRROR_BUCKET`) under S3 faults: VK records for
//! objects created in a moto source bucket, then for a third of them removed and a third
//! overwritten; after the sender's retries the mirror bucket must equal the source (same keys
//! under `{bucket}/`, same content) and the events store must hold every acknowledged record
//! once.

use super::function::Function;
use super::senders::{marker, send, stored_markers, Delivery, Tally};
use super::{Context, Row};
use crate::fault_proxy::Service;
use bytes::Bytes;
use hub_tests::fixtures;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const SENDER: &str = "s3-notification (mirror, VK records)";

pub async fn run(ctx: &Context) -> Result<Row, String> {
    let id = ctx.next_id();
    let source = format!("faults-source-{id}");
    let mirror = format!("faults-mirror-{id}");
    for bucket in [&source, &mirror] {
        ctx.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| format!("create bucket {bucket}: {e:?}"))?;
    }
    let table = format!("faults-mirror-{id}");
    hub_tests::template::create_events_table(&ctx.dynamodb, &table).await;
    let mut env: Vec<(String, String)> = hub_tests::fixture_vars("S3NotificationFunction")
        .into_iter()
        .filter(|(k, _)| k != "EVENTS_TABLE" && k != "AWS_ENDPOINT_URL")
        .collect();
    env.extend([
        ("EVENTS_TABLE".to_owned(), table.clone()),
        ("AWS_ENDPOINT_URL".to_owned(), ctx.proxy.endpoint()),
        ("MIRROR_BUCKET".to_owned(), mirror.clone()),
        ("MIRROR_SOURCE_BUCKETS".to_owned(), source.clone()),
    ]);
    let mut function = Function::start(&ctx.bin_dir, &ctx.logs, "s3-notification", env).await?;
    ctx.proxy.inject(ctx.share, &[Service::S3]);
    let before = ctx.proxy.counts();
    let mut tally = Tally::default();
    let mut failed_mirrors = 0u64;
    // VK's sequencers are seconds (README, s3-notification): each change of an object a later
    // second than the one before, all in the past.
    let base = chrono::Utc::now().timestamp() as u64 - 3_600;
    let mut phases: Vec<Vec<(usize, &str, u64)>> = vec![Vec::new(), Vec::new()];
    for n in 0..ctx.events {
        phases[0].push((n, "s3:ObjectCreated:Put", base));
        match n % 3 {
            0 => phases[1].push((n, "s3:ObjectRemoved:Delete", base + 20)),
            1 => phases[1].push((n, "s3:ObjectCreated:Post", base + 10)),
            _ => {}
        }
    }
    for phase in &phases {
        for (n, event_name, sequencer) in phase {
            let key = format!("objects/{n:06}.txt");
            if event_name.starts_with("s3:ObjectRemoved") {
                ctx.s3
                    .delete_object()
                    .bucket(&source)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| format!("delete {key}: {e:?}"))?;
            } else {
                ctx.s3
                    .put_object()
                    .bucket(&source)
                    .key(&key)
                    .body(
                        format!("{event_name} {n} at {sequencer}\n")
                            .into_bytes()
                            .into(),
                    )
                    .send()
                    .await
                    .map_err(|e| format!("put {key}: {e:?}"))?;
            }
            let logical = tally.events.len();
            let mut record = fixtures::vk_record(&key, event_name, *sequencer);
            record["s3"]["bucket"]["name"] = json!(source);
            // The marker of this change, where the stored record keeps it.
            record["responseElements"]["x-amz-request-id"] = json!(marker(logical));
            let request = fixtures::vk_request(
                &json!({ "Records": [record] }),
                &format!("mirror-{logical}"),
            );
            let answer = send(
                &mut function,
                Bytes::from(request.to_string()),
                true,
                &mut tally,
            )
            .await;
            if let Some(answer) = &answer {
                let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or_default())
                    .unwrap_or(Value::Null);
                if body["records"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["mirror"] == "failed"))
                {
                    failed_mirrors += 1;
                }
            }
            tally.events.push(Delivery {
                acknowledged: answer.is_some(),
            });
        }
    }
    ctx.proxy.inject(0.0, &[]);
    let faults = ctx.proxy.counts().since(&before);
    let restarts = function.restarts;
    function.stop().await;

    let stored = stored_markers(ctx, &table).await?;
    let mut row = Row::from_tally(SENDER, &tally, faults, restarts);
    row.faulted = "S3";
    row.account(&tally, &stored);
    row.check(false);

    let source_objects = contents(ctx, &source, "").await?;
    let mirrored = contents(ctx, &mirror, &format!("{source}/")).await?;
    let missing = source_objects
        .iter()
        .filter(|(k, _)| !mirrored.contains_key(*k))
        .count();
    let extra = mirrored
        .keys()
        .filter(|k| !source_objects.contains_key(*k))
        .count();
    let different = source_objects
        .iter()
        .filter(|(k, v)| mirrored.get(*k).is_some_and(|m| m != *v))
        .count();
    row.notes.push(format!(
        "{SENDER}: source {} objects after {} creates, {} overwrites, {} removals; mirror {} \
         objects: {missing} missing, {extra} extra (removed at the source), {different} with \
         other content, {failed_mirrors} answers with `\"mirror\":\"failed\"`",
        source_objects.len(),
        ctx.events,
        phases[1]
            .iter()
            .filter(|p| p.1 == "s3:ObjectCreated:Post")
            .count(),
        phases[1]
            .iter()
            .filter(|p| p.1 == "s3:ObjectRemoved:Delete")
            .count(),
        mirrored.len(),
    ));
    if missing + extra + different > 0 {
        row.violations.push(format!(
            "{SENDER}: the mirror differs from the source ({missing} missing, {extra} extra, \
             {different} different)"
        ));
    }
    if failed_mirrors > 0 {
        row.violations.push(format!(
            "{SENDER}: {failed_mirrors} records answered mirror failed (permanently)"
        ));
    }
    Ok(row)
}

/// Every object of `bucket` under `prefix`, by key without the prefix, with its content (read
/// from moto directly).
async fn contents(
    ctx: &Context,
    bucket: &str,
    prefix: &str,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = ctx
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| format!("list {bucket}: {e:?}"))?;
        for object in page.contents() {
            let key = object.key().unwrap_or_default();
            let body = ctx
                .s3
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("get {bucket}/{key}: {e:?}"))?
                .body
                .collect()
                .await
                .map_err(|e| format!("read {bucket}/{key}: {e}"))?
                .into_bytes()
                .to_vec();
            out.insert(key[prefix.len()..].to_owned(), body);
        }
        match page.next_continuation_token {
            Some(next) if page.is_truncated == Some(true) => token = Some(next),
            _ => break,
        }
    }
    Ok(out)
}
