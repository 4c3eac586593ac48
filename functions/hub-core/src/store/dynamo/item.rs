//! An event as an item of the events table, and back (the layout is in `TableLayout`).

use super::{Item, TableLayout};
use crate::event::{format_time, parse_time, Event, Source};
use crate::store::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Datelike, Utc};

pub(super) fn keyed(source: Source, value: &str) -> String {
    format!("{}#{}", source.as_str(), value)
}

pub(super) fn month_of(at: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", at.year(), at.month())
}

pub fn event_to_item(event: &Event) -> Item {
    let mut item = Item::new();
    let mut s = |k: &str, v: String| {
        item.insert(k.to_owned(), AttributeValue::S(v));
    };
    s(TableLayout::PK, keyed(event.source, &event.event_id));
    s("source", event.source.as_str().to_owned());
    s("event_id", event.event_id.clone());
    s("event_type", event.event_type.clone());
    s("subject", event.subject.clone());
    s("received_at", format_time(event.received_at));
    s("payload", event.payload.clone());
    s(TableLayout::EVENT_KEY, event.order_key());
    s(
        TableLayout::SUBJECT_KEY,
        keyed(event.source, &event.subject),
    );
    s(
        TableLayout::SOURCE_MONTH,
        keyed(event.source, &month_of(event.event_time())),
    );
    if let Some(at) = event.occurred_at {
        s("occurred_at", format_time(at));
    }
    if event.sets_state {
        s(TableLayout::STATE_KEY, keyed(event.source, &event.subject));
    }
    if let Some(alias) = &event.subject_alias {
        s("subject_alias", alias.clone());
        s(TableLayout::ALIAS_KEY, keyed(event.source, alias));
    }
    if let Some(expires_at) = event.expires_at {
        item.insert(
            TableLayout::EXPIRES_AT.to_owned(),
            AttributeValue::N(expires_at.to_string()),
        );
    }
    item
}

/// An events-table item as an event (the fan-out reads stream images with it).
pub fn item_to_event(item: &Item) -> Result<Event, StoreError> {
    let text = |name: &str| -> Option<&str> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    let required = |name: &str| -> Result<&str, StoreError> {
        text(name).ok_or_else(|| StoreError::Failed(format!("stored item lacks {name}")))
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        text(name)
            .map(|t| {
                parse_time(t)
                    .ok_or_else(|| StoreError::Failed(format!("stored {name} is not RFC 3339")))
            })
            .transpose()
    };
    let source: Source = required("source")?
        .parse()
        .map_err(|e| StoreError::Failed(format!("{e}")))?;
    Ok(Event {
        source,
        event_id: required("event_id")?.to_owned(),
        event_type: required("event_type")?.to_owned(),
        subject: required("subject")?.to_owned(),
        subject_alias: text("subject_alias").map(str::to_owned),
        sets_state: item.contains_key(TableLayout::STATE_KEY),
        occurred_at: time("occurred_at")?,
        received_at: time("received_at")?
            .ok_or_else(|| StoreError::Failed("stored item lacks received_at".into()))?,
        payload: required("payload")?.to_owned(),
        expires_at: item
            .get(TableLayout::EXPIRES_AT)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
    })
}
