//! The store contract: what every `EventStore` must do, as one suite that runs against each
//! store. A behaviour difference between stores is a bug in one of them.

use chrono::{DateTime, Duration, TimeZone, Utc};
use hub_core::event::{Event, Source};
use hub_core::store::{EventStore, PageRequest, PutOutcome, StoreError, TimeRange};

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn event(source: Source, id: &str, subject: &str, time: DateTime<Utc>) -> Event {
    Event::new(
        source,
        id,
        "TYPE",
        subject,
        format!(r#"{{"id":"{id}"}}"#),
        time,
    )
}

/// Follows `next` cursors through pages of two, checking each page's size; the event ids in order.
async fn pages_of_two<F, Fut>(mut fetch: F) -> Vec<String>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<hub_core::store::Page, StoreError>>,
{
    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    loop {
        let result = fetch(page.clone()).await.unwrap();
        assert!(result.events.len() <= 2);
        seen.extend(result.events.into_iter().map(|e| e.event_id));
        match result.next {
            Some(next) => page.cursor = Some(next),
            None => return seen,
        }
    }
}

/// Runs every contract check, each on its own empty store from `fresh`, so that no check can
/// pass on what another left behind.
pub async fn run_all<S, F, Fut>(fresh: F)
where
    S: EventStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    put_is_idempotent(&fresh().await).await;
    history_is_newest_first_and_paginated(&fresh().await).await;
    latest_ignores_history_only_events(&fresh().await).await;
    latest_by_id_prefix_skips_other_senders_and_history(&fresh().await).await;
    aliases_resolve_to_subjects(&fresh().await).await;
    timeline_spans_months_oldest_first(&fresh().await).await;
    sources_do_not_mix(&fresh().await).await;
    foreign_cursors_are_refused(&fresh().await).await;
    oversized_events_are_refused_alike(&fresh().await).await;
    recent_events_are_newest_first_across_months_and_counted(&fresh().await).await;
}

/// An event over one item's limit is refused as too large by every store (413 at the edge),
/// never written, and never a retryable failure; one just under it is stored.
pub async fn oversized_events_are_refused_alike<S: EventStore>(store: &S) {
    let limit = hub_core::store::MAX_EVENT_BYTES;
    let mut big = event(Source::Tsuru, "big", "app/big", at(2024, 2, 1, 0));
    big.payload = format!("\"{}\"", "x".repeat(limit));
    assert!(matches!(
        store.put_event(&big).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert!(store
        .get_event(Source::Tsuru, "big")
        .await
        .unwrap()
        .is_none());
    let mut fits = event(Source::Tsuru, "fits", "app/big", at(2024, 2, 1, 0));
    fits.payload = format!("\"{}\"", "x".repeat(limit - 1024));
    assert_eq!(store.put_event(&fits).await.unwrap(), PutOutcome::Stored);
    let read = store
        .get_event(Source::Tsuru, "fits")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.payload.len(), fits.payload.len());
}

pub async fn put_is_idempotent<S: EventStore>(store: &S) {
    let first = event(Source::Mns, "dup-1", "topic", at(2024, 1, 1, 0));
    assert_eq!(store.put_event(&first).await.unwrap(), PutOutcome::Stored);
    let mut changed = first.clone();
    changed.payload = r#"{"overwritten":true}"#.into();
    assert_eq!(
        store.put_event(&changed).await.unwrap(),
        PutOutcome::Duplicate
    );
    let stored = store
        .get_event(Source::Mns, "dup-1")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored, first, "a duplicate never overwrites");
    assert_eq!(store.get_event(Source::Mns, "never").await.unwrap(), None);
    // The same id from another source is another event.
    let other = event(Source::S3, "dup-1", "bucket/key", at(2024, 1, 1, 0));
    assert_eq!(store.put_event(&other).await.unwrap(), PutOutcome::Stored);
}

pub async fn history_is_newest_first_and_paginated<S: EventStore>(store: &S) {
    let base = at(2024, 2, 10, 0);
    for i in 0..5 {
        let e = event(
            Source::Dingtalk,
            &format!("h-{i}"),
            "approval-1",
            base + Duration::minutes(i),
        );
        store.put_event(&e).await.unwrap();
    }
    // occurred_at, where given, orders the history, not the arrival.
    let late_arrival = event(
        Source::Dingtalk,
        "h-early",
        "approval-1",
        base + Duration::hours(5),
    )
    .occurred_at(Some(base - Duration::minutes(1)));
    store.put_event(&late_arrival).await.unwrap();
    store
        .put_event(&event(Source::Dingtalk, "other", "approval-2", base))
        .await
        .unwrap();

    let seen = pages_of_two(|page| async move {
        store
            .events_about(Source::Dingtalk, "approval-1", &page)
            .await
    })
    .await;
    assert_eq!(seen, ["h-4", "h-3", "h-2", "h-1", "h-0", "h-early"]);
    let empty = store
        .events_about(Source::Dingtalk, "nobody", &PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.events.is_empty() && empty.next.is_none());
}

pub async fn latest_ignores_history_only_events<S: EventStore>(store: &S) {
    let base = at(2024, 3, 1, 0);
    store
        .put_event(&event(Source::Stack, "s-1", "web", base))
        .await
        .unwrap();
    store
        .put_event(&event(
            Source::Stack,
            "s-2",
            "web",
            base + Duration::minutes(1),
        ))
        .await
        .unwrap();
    let resource = event(Source::Stack, "s-3", "web", base + Duration::minutes(2)).history_only();
    store.put_event(&resource).await.unwrap();
    let latest = store
        .latest_about(Source::Stack, "web")
        .await
        .unwrap()
        .expect("a latest event");
    assert_eq!(latest.event_id, "s-2");
    let history = store
        .events_about(Source::Stack, "web", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        history.events[0].event_id, "s-3",
        "history-only events are still history"
    );
    assert!(!history.events[0].sets_state);
    assert_eq!(
        store.latest_about(Source::Stack, "absent").await.unwrap(),
        None
    );
}

/// The newest state-setting event whose id has the prefix, however many newer state-setting
/// events with other ids are in front of it (more than one page of the store's index).
pub async fn latest_by_id_prefix_skips_other_senders_and_history<S: EventStore>(store: &S) {
    let base = at(2024, 3, 1, 0);
    let ours = |n: i64, id: &str| event(Source::Stack, id, "web", base + Duration::minutes(n));
    store.put_event(&ours(0, "ros-a")).await.unwrap();
    store.put_event(&ours(1, "ros-b")).await.unwrap();
    // Newer, but history only, or not ours, or not this subject, or not this source.
    store
        .put_event(&ours(2, "ros-late").history_only())
        .await
        .unwrap();
    let others = PageRequest::MAX_LIMIT as i64 + 5;
    for n in 0..others {
        store
            .put_event(&ours(3 + n, &format!("cfn-{n}@arn")))
            .await
            .unwrap();
    }
    store
        .put_event(&event(
            Source::Stack,
            "ros-c",
            "api",
            base + Duration::hours(9),
        ))
        .await
        .unwrap();
    store
        .put_event(&event(
            Source::Tsuru,
            "ros-d",
            "web",
            base + Duration::hours(9),
        ))
        .await
        .unwrap();
    let found = store
        .latest_with_id_prefix(Source::Stack, "web", "ros-")
        .await
        .unwrap()
        .expect("the newest ros- event");
    assert_eq!(found.event_id, "ros-b");
    assert_eq!(
        store
            .latest_about(Source::Stack, "web")
            .await
            .unwrap()
            .unwrap()
            .event_id,
        format!("cfn-{}@arn", others - 1)
    );
    for (subject, prefix) in [("web", "nope-"), ("web", "ros_"), ("absent", "ros-")] {
        assert_eq!(
            store
                .latest_with_id_prefix(Source::Stack, subject, prefix)
                .await
                .unwrap(),
            None,
            "{subject} {prefix}"
        );
    }
}

pub async fn aliases_resolve_to_subjects<S: EventStore>(store: &S) {
    let e = event(Source::Stack, "a-1", "api", at(2024, 3, 2, 0)).alias(Some("uuid-api".into()));
    store.put_event(&e).await.unwrap();
    assert_eq!(
        store
            .subject_for_alias(Source::Stack, "uuid-api")
            .await
            .unwrap()
            .as_deref(),
        Some("api")
    );
    assert_eq!(
        store
            .subject_for_alias(Source::Mns, "uuid-api")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.subject_for_alias(Source::Stack, "api").await.unwrap(),
        None
    );
}

pub async fn timeline_spans_months_oldest_first<S: EventStore>(store: &S) {
    let times = [
        at(2023, 11, 30, 23),
        at(2023, 12, 15, 0),
        at(2024, 1, 1, 0),
        at(2024, 1, 31, 23),
        at(2024, 4, 1, 0),
    ];
    for (i, t) in times.iter().enumerate() {
        store
            .put_event(&event(Source::S3, &format!("t-{i}"), "b/k", *t))
            .await
            .unwrap();
    }
    let range = TimeRange {
        from: at(2023, 11, 30, 23),
        to: at(2024, 4, 1, 0),
    };
    let seen =
        pages_of_two(|page| async move { store.events_between(Source::S3, range, &page).await })
            .await;
    // `from` is inclusive, `to` exclusive.
    assert_eq!(seen, ["t-0", "t-1", "t-2", "t-3"]);
    let empty = TimeRange {
        from: at(2025, 1, 1, 0),
        to: at(2025, 1, 1, 0),
    };
    assert!(store
        .events_between(Source::S3, empty, &PageRequest::first(5))
        .await
        .unwrap()
        .events
        .is_empty());
}

/// The console's listing: the same range semantics as the timeline (`from` in, `to` out), newest
/// first across month partitions, paginated; and the counts of its charts agree with it.
pub async fn recent_events_are_newest_first_across_months_and_counted<S: EventStore>(store: &S) {
    let times = [
        at(2023, 11, 30, 23),
        at(2023, 12, 15, 0),
        at(2024, 1, 1, 0),
        at(2024, 1, 31, 23),
        at(2024, 4, 1, 0),
    ];
    for (i, t) in times.iter().enumerate() {
        store
            .put_event(&event(Source::S3, &format!("r-{i}"), "b/k", *t))
            .await
            .unwrap();
    }
    // Another source in the same months must neither be listed nor counted.
    store
        .put_event(&event(Source::Mns, "r-other", "b/k", at(2024, 1, 1, 0)))
        .await
        .unwrap();
    let range = TimeRange {
        from: at(2023, 11, 30, 23),
        to: at(2024, 4, 1, 0),
    };
    let seen =
        pages_of_two(
            |page| async move { store.events_newest_first(Source::S3, range, &page).await },
        )
        .await;
    assert_eq!(seen, ["r-3", "r-2", "r-1", "r-0"]);
    let one_page = store
        .events_newest_first(Source::S3, range, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(one_page.events.len(), 4);
    assert_eq!(one_page.next, None);
    assert_eq!(store.count_between(Source::S3, range).await.unwrap(), 4);
    let january = TimeRange {
        from: at(2024, 1, 1, 0),
        to: at(2024, 2, 1, 0),
    };
    assert_eq!(store.count_between(Source::S3, january).await.unwrap(), 2);
    assert_eq!(store.count_between(Source::Mns, january).await.unwrap(), 1);
    let empty = TimeRange {
        from: at(2025, 1, 1, 0),
        to: at(2025, 1, 1, 0),
    };
    assert_eq!(store.count_between(Source::S3, empty).await.unwrap(), 0);
    assert!(store
        .events_newest_first(Source::S3, empty, &PageRequest::first(5))
        .await
        .unwrap()
        .events
        .is_empty());
}

pub async fn sources_do_not_mix<S: EventStore>(store: &S) {
    // The same subject under two sources: each history holds its own source's event only.
    for (source, id) in [(Source::Mns, "mix-mns"), (Source::Stack, "mix-stack")] {
        store
            .put_event(&event(source, id, "web", at(2024, 3, 1, 0)))
            .await
            .unwrap();
    }
    for (source, id) in [(Source::Mns, "mix-mns"), (Source::Stack, "mix-stack")] {
        let history = store
            .events_about(source, "web", &PageRequest::first(50))
            .await
            .unwrap();
        let ids: Vec<&str> = history.events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, [id], "{source}");
        let range = TimeRange {
            from: at(2024, 1, 1, 0),
            to: at(2024, 12, 1, 0),
        };
        let timeline = store
            .events_between(source, range, &PageRequest::first(50))
            .await
            .unwrap();
        assert!(!timeline.events.is_empty(), "{source}");
        assert!(
            timeline.events.iter().all(|e| e.source == source),
            "{source}"
        );
    }
}

pub async fn foreign_cursors_are_refused<S: EventStore>(store: &S) {
    let page = PageRequest {
        limit: 5,
        cursor: Some("bm90LWEtY3Vyc29y".into()),
    };
    assert!(matches!(
        store.events_about(Source::Stack, "web", &page).await,
        Err(StoreError::BadCursor)
    ));
}

/// Twenty concurrent puts of one event, spread over `stores` (handles on one database): exactly
/// one is told "stored", and one event exists.
pub async fn concurrent_duplicates_are_stored_once<S: EventStore + Clone + 'static>(stores: &[S]) {
    let event = Event::new(Source::Mns, "same", "T", "race", "{}", Utc::now());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, event) = (stores[i % stores.len()].clone(), event.clone());
            tokio::spawn(async move { store.put_event(&event).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for task in tasks {
        if task.await.unwrap() == PutOutcome::Stored {
            stored += 1;
        }
    }
    assert_eq!(stored, 1);
    let history = stores[0]
        .events_about(Source::Mns, "race", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(history.events.len(), 1);
}
