//! `callback-hub events` and `callback-hub stacks`: read what was stored, from SQLite or from the
//! deployed DynamoDB table.

use crate::store::AnyStore;
use chrono::{DateTime, Duration, Utc};
use hub_core::event::{format_time, Event, Source};
use hub_core::store::{PageRequest, SourceTimeline, StoreError, SubjectHistory, TimeRange};
use serde_json::{json, Value};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub source: Option<Source>,
    pub subject: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// DynamoDB reads a source's timeline one month partition at a time, so an open-ended query
/// there looks back this far unless `--since` says otherwise. SQLite reads everything.
pub const DYNAMO_DEFAULT_LOOKBACK_DAYS: i64 = 30;

/// The matching events, newest first.
pub async fn find_events(store: &AnyStore, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
    let sources: Vec<Source> = match query.source {
        Some(source) => vec![source],
        None => Source::ALL.to_vec(),
    };
    let since = query.since.unwrap_or_else(|| match store {
        AnyStore::Sqlite(_) => DateTime::<Utc>::UNIX_EPOCH,
        AnyStore::Dynamo(_) => Utc::now() - Duration::days(DYNAMO_DEFAULT_LOOKBACK_DAYS),
    });
    let mut found = Vec::new();
    for source in sources {
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let result = match &query.subject {
                Some(subject) => store.events_about(source, subject, &page).await?,
                None => {
                    let range = TimeRange {
                        from: since,
                        to: Utc::now() + Duration::days(1),
                    };
                    store.events_between(source, range, &page).await?
                }
            };
            found.extend(
                result
                    .events
                    .into_iter()
                    .filter(|e| e.event_time() >= since),
            );
            match result.next {
                // A subject's history is newest first: the first `limit` events are enough.
                Some(_) if query.subject.is_some() && found.len() >= query.limit => break,
                Some(next) => page.cursor = Some(next),
                None => break,
            }
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.order_key()));
    found.truncate(query.limit);
    Ok(found)
}

pub fn event_json(event: &Event) -> Value {
    json!({
        "source": event.source.as_str(),
        "event_id": event.event_id,
        "event_type": event.event_type,
        "subject": event.subject,
        "occurred_at": event.occurred_at.map(format_time),
        "received_at": format_time(event.received_at),
        "payload": serde_json::from_str::<Value>(&event.payload).unwrap_or(Value::Null),
    })
}

/// One JSON object per line.
pub fn json_lines(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| event_json(e).to_string() + "\n")
        .collect()
}

/// A plain-text table: time, source, type, subject, id.
pub fn table(events: &[Event]) -> String {
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            [
                format_time(e.event_time()),
                e.source.as_str().to_owned(),
                e.event_type.clone(),
                e.subject.clone(),
                e.event_id.clone(),
            ]
        })
        .collect();
    let header = ["TIME", "SOURCE", "TYPE", "SUBJECT", "EVENT ID"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_core::event::parse_time;
    use hub_core::store::EventWriter;
    use sqlite_store::SqliteStore;

    fn event(source: Source, id: &str, subject: &str, at: &str) -> Event {
        Event::new(
            source,
            id,
            "TYPE",
            subject,
            r#"{"n":1}"#,
            parse_time(at).unwrap(),
        )
    }

    #[tokio::test]
    async fn filters_by_source_subject_and_time_newest_first() {
        let sqlite = SqliteStore::in_memory().unwrap();
        for e in [
            event(Source::Stack, "a", "web", "2024-01-01T00:00:00Z"),
            event(Source::Stack, "b", "web", "2024-02-01T00:00:00Z"),
            event(Source::Mns, "c", "orders", "2024-03-01T00:00:00Z"),
            event(Source::Stack, "d", "db", "2024-04-01T00:00:00Z"),
        ] {
            sqlite.put_event(&e).await.unwrap();
        }
        let store = AnyStore::Sqlite(sqlite);
        let ids = |events: Vec<Event>| events.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
        let all = EventQuery {
            source: None,
            subject: None,
            since: None,
            limit: 10,
        };
        assert_eq!(
            ids(find_events(&store, &all).await.unwrap()),
            ["d", "c", "b", "a"]
        );
        let web = EventQuery {
            source: Some(Source::Stack),
            subject: Some("web".into()),
            ..all.clone()
        };
        assert_eq!(ids(find_events(&store, &web).await.unwrap()), ["b", "a"]);
        let recent = EventQuery {
            since: parse_time("2024-02-15T00:00:00Z"),
            limit: 1,
            ..all.clone()
        };
        assert_eq!(ids(find_events(&store, &recent).await.unwrap()), ["d"]);

        let events = find_events(&store, &all).await.unwrap();
        let text = table(&events);
        assert!(text.starts_with("TIME"), "{text}");
        assert!(
            text.contains("2024-04-01T00:00:00.000Z  stack   TYPE  db"),
            "{text}"
        );
        let lines = json_lines(&events);
        assert_eq!(lines.lines().count(), 4);
        let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(first["payload"]["n"], 1);
    }
}
