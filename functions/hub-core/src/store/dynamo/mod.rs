//! The event store on one DynamoDB table.
//!
//! Layout (the table definition itself lives in `template.yaml`, and the tests create their
//! tables from it):
//!
//! | key | attribute | value |
//! |---|---|---|
//! | table HASH | `pk` | `{source}#{event_id}`: the idempotency key, guarded by `attribute_not_exists(pk)` |
//! | every index RANGE | `event_key` | `{event time, RFC 3339 ms}#{event_id}` |
//! | `by-subject` HASH | `subject_key` | `{source}#{subject}`: a subject's history |
//! | `by-state` HASH (sparse) | `state_key` | `{source}#{subject}`, only on events that set the subject's state |
//! | `by-alias` HASH (sparse) | `alias_key` | `{source}#{alias}`, only on events that carry an alias |
//! | `by-source-month` HASH | `source_month` | `{source}#{YYYY-MM}`: a source's timeline, one partition a month |
//!
//! TTL is on `expires_at`.
//!
//! Other items may share the table (a function's own bookkeeping) as long as they carry none of the
//! index attributes, so that they never show up in an event query.

// Public only for the fuzz targets (fuzz/) and property tests: the decoder takes client input.
#[doc(hidden)]
pub mod cursor;
pub mod direct;
mod errors;
mod item;

use cursor::{decode_cursor, encode_cursor, to_key};
pub use errors::classify;
pub use item::{event_to_item, item_to_event};
use item::{keyed, month_of};

use super::{
    EventLookup, EventWriter, LatestState, Page, PageRequest, PutOutcome, RecentEvents,
    SourceTimeline, StoreError, SubjectHistory, TimeRange,
};
use crate::event::{format_time, parse_time, Event, Source};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use direct::{Direct, DirectPut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attribute and index names of the events table.
pub struct TableLayout;

impl TableLayout {
    pub const PK: &'static str = "pk";
    pub const EVENT_KEY: &'static str = "event_key";
    pub const SUBJECT_KEY: &'static str = "subject_key";
    pub const STATE_KEY: &'static str = "state_key";
    pub const ALIAS_KEY: &'static str = "alias_key";
    pub const SOURCE_MONTH: &'static str = "source_month";
    pub const EXPIRES_AT: &'static str = "expires_at";

    pub const BY_SUBJECT: &'static str = "by-subject";
    pub const BY_STATE: &'static str = "by-state";
    pub const BY_ALIAS: &'static str = "by-alias";
    pub const BY_SOURCE_MONTH: &'static str = "by-source-month";
}

type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    direct: Option<Arc<DirectPut>>,
    /// Every put, however it is sent, ends within this (the SDK's operation timeout).
    put_budget: Duration,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            direct: None,
            put_budget: Duration::MAX,
        }
    }

    /// Puts events through `direct` first ([`direct`] says why, and what stays the SDK's),
    /// all of a put within `budget`, a direct attempt and the SDK's after it together.
    pub fn with_direct_put(mut self, direct: DirectPut, budget: Duration) -> Self {
        self.direct = Some(Arc::new(direct));
        self.put_budget = budget;
        self
    }

    /// After a direct attempt that went out, the SDK's put is the rest of one operation: one
    /// attempt fewer than its retry configuration allows, and, after a throttle or a 5xx, a
    /// first wait as long as the SDK's own first retry would have made (its initial backoff,
    /// with full jitter).
    async fn after_direct_attempt(&self, back_off: bool) -> Option<RetryConfig> {
        let configured = self.client.config().retry_config()?.clone();
        if back_off {
            let jitter = f64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos()
                    % 1_000,
            ) / 1_000.0;
            tokio::time::sleep(configured.initial_backoff().mul_f64(jitter)).await;
        }
        let attempts = configured.max_attempts().saturating_sub(1).max(1);
        Some(configured.with_max_attempts(attempts))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A cheap request that opens the connection (TLS included), so that the first callback
    /// after a cold start does not pay for it. Failures are ignored: it is only a warm-up.
    pub async fn warm_up(&self) {
        let result = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(TableLayout::PK, AttributeValue::S("warm-up#".into()))
            .projection_expression(TableLayout::PK)
            .send()
            .await;
        if let Err(err) = result {
            tracing::debug!(error = %DisplayErrorContext(&err), "store warm-up failed");
        }
    }

    async fn query_page(
        &self,
        index: &str,
        hash_attr: &str,
        hash_value: String,
        newest_first: bool,
        limit: u32,
        start: Option<Item>,
    ) -> Result<(Vec<Event>, Option<Item>), StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", hash_attr)
            .expression_attribute_values(":h", AttributeValue::S(hash_value))
            .scan_index_forward(!newest_first)
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        let events = output
            .items()
            .iter()
            .map(item_to_event)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((events, output.last_evaluated_key))
    }
}

impl EventWriter for DynamoStore {
    async fn put_event(&self, event: &Event) -> Result<PutOutcome, StoreError> {
        super::check_event_size(event)?;
        let started = Instant::now();
        let item = event_to_item(event);
        let mut retry = None;
        if let Some(direct) = &self.direct {
            match direct.put_if_absent(&self.table, &item).await {
                Ok(Direct::Stored) => return Ok(PutOutcome::Stored),
                Ok(Direct::AlreadyThere) => return Ok(PutOutcome::Duplicate),
                Err(handover) => {
                    if handover.is_unexpected() {
                        tracing::warn!(reason = %handover, "direct PutItem refused; the SDK sends it");
                    } else {
                        tracing::debug!(reason = %handover, "direct PutItem handed to the SDK");
                    }
                    if handover.attempted() {
                        retry = self.after_direct_attempt(handover.asks_to_back_off()).await;
                    }
                }
            }
        }
        let mut sdk_put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", TableLayout::PK)
            .customize();
        if let Some(retry) = retry {
            sdk_put = sdk_put
                .config_override(aws_sdk_dynamodb::config::Builder::default().retry_config(retry));
        }
        let sdk_put = sdk_put.send();
        let result = if self.direct.is_some() {
            let remaining = self.put_budget.saturating_sub(started.elapsed());
            let Ok(result) = tokio::time::timeout(remaining, sdk_put).await else {
                return Err(StoreError::Unavailable(format!(
                    "PutItem did not finish within {} ms",
                    self.put_budget.as_millis()
                )));
            };
            result
        } else {
            sdk_put.await
        };
        match result {
            Ok(_) => Ok(PutOutcome::Stored),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                Ok(PutOutcome::Duplicate)
            }
            Err(err) => Err(classify(err)),
        }
    }
}

impl EventLookup for DynamoStore {
    async fn get_event(&self, source: Source, event_id: &str) -> Result<Option<Event>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(TableLayout::PK, AttributeValue::S(keyed(source, event_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output.item.as_ref().map(item_to_event).transpose()
    }
}

impl SubjectHistory for DynamoStore {
    async fn events_about(
        &self,
        source: Source,
        subject: &str,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        const KEY_ATTRS: [&str; 3] = [
            TableLayout::PK,
            TableLayout::SUBJECT_KEY,
            TableLayout::EVENT_KEY,
        ];
        let start = page
            .cursor
            .as_deref()
            .map(|c| decode_cursor(c, &KEY_ATTRS))
            .transpose()?;
        let hash = keyed(source, subject);
        if let Some(start) = &start {
            if start.get(TableLayout::SUBJECT_KEY) != Some(&hash) {
                return Err(StoreError::BadCursor);
            }
        }
        let (events, last) = self
            .query_page(
                TableLayout::BY_SUBJECT,
                TableLayout::SUBJECT_KEY,
                hash,
                true,
                page.effective_limit(),
                start.map(to_key),
            )
            .await?;
        let next = last.as_ref().map(|k| encode_cursor(k, None)).transpose()?;
        Ok(Page { events, next })
    }
}

impl LatestState for DynamoStore {
    async fn latest_about(
        &self,
        source: Source,
        subject: &str,
    ) -> Result<Option<Event>, StoreError> {
        let (events, _) = self
            .query_page(
                TableLayout::BY_STATE,
                TableLayout::STATE_KEY,
                keyed(source, subject),
                true,
                1,
                None,
            )
            .await?;
        Ok(events.into_iter().next())
    }

    /// Pages through the state index newest first until an id matches: a filter expression
    /// would read (and bill) the same items.
    async fn latest_with_id_prefix(
        &self,
        source: Source,
        subject: &str,
        id_prefix: &str,
    ) -> Result<Option<Event>, StoreError> {
        let mut start = None;
        loop {
            let (events, last) = self
                .query_page(
                    TableLayout::BY_STATE,
                    TableLayout::STATE_KEY,
                    keyed(source, subject),
                    true,
                    PageRequest::MAX_LIMIT,
                    start,
                )
                .await?;
            if let Some(found) = events
                .into_iter()
                .find(|e| e.event_id.starts_with(id_prefix))
            {
                return Ok(Some(found));
            }
            match last {
                Some(key) => start = Some(key),
                None => return Ok(None),
            }
        }
    }

    async fn subject_for_alias(
        &self,
        source: Source,
        alias: &str,
    ) -> Result<Option<String>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(TableLayout::BY_ALIAS)
            .key_condition_expression("#h = :h")
            .expression_attribute_names("#h", TableLayout::ALIAS_KEY)
            .expression_attribute_values(":h", AttributeValue::S(keyed(source, alias)))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(classify)?;
        Ok(output
            .items()
            .first()
            .and_then(|item| item.get("subject"))
            .and_then(|v| v.as_s().ok())
            .cloned())
    }
}

/// The first instant of the month after `at`'s month.
fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .expect("first of a month is a valid UTC time")
}

impl SourceTimeline for DynamoStore {
    async fn events_between(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.walk_months(source, range, page, Direction::OldestFirst)
            .await
    }
}

/// The first instant of `at`'s month.
fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .expect("first of a month is a valid UTC time")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    OldestFirst,
    NewestFirst,
}

impl DynamoStore {
    /// One page of a source's events within `range`, walking its month partitions of the
    /// `by-source-month` index in `direction`. The cursor names an instant of the month to
    /// resume in, and the key to resume after within it (none when the page ended exactly at a
    /// month's end). Both key bounds are bare times: "T#id" sorts after "T", so events at
    /// exactly `from` are in and events at exactly `to` are out.
    async fn walk_months(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
        direction: Direction,
    ) -> Result<Page, StoreError> {
        const KEY_ATTRS: [&str; 4] = [
            TableLayout::PK,
            TableLayout::SOURCE_MONTH,
            TableLayout::EVENT_KEY,
            "month",
        ];
        if range.to <= range.from {
            return Ok(Page {
                events: Vec::new(),
                next: None,
            });
        }
        let forward = direction == Direction::OldestFirst;
        let limit = page.effective_limit() as usize;
        let first_month = if forward {
            range.from
        } else {
            range.to - chrono::Duration::milliseconds(1)
        };
        let (mut month, mut start) = match page.cursor.as_deref() {
            None => (first_month, None),
            Some(cursor) => {
                let mut map = decode_cursor(cursor, &KEY_ATTRS)?;
                let resume = map.remove("month").ok_or(StoreError::BadCursor)?;
                let resume = parse_time(&resume).ok_or(StoreError::BadCursor)?;
                if resume < range.from || resume >= range.to {
                    return Err(StoreError::BadCursor);
                }
                (resume, (!map.is_empty()).then(|| to_key(map)))
            }
        };
        let mut events = Vec::new();
        loop {
            let output = self
                .month_query(source, month, range)
                .scan_index_forward(forward)
                .limit((limit - events.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            for item in output.items() {
                events.push(item_to_event(item)?);
            }
            // The month after this one, or an instant of the one before, and whether the
            // range ends before it.
            let (following, past_range) = if forward {
                let following = next_month(month);
                (following, following >= range.to)
            } else {
                let previous = month_start(month) - chrono::Duration::milliseconds(1);
                (previous, previous < range.from)
            };
            match output.last_evaluated_key {
                Some(last) if events.len() >= limit => {
                    let next = encode_cursor(&last, Some(("month", &format_time(month))))?;
                    return Ok(Page {
                        events,
                        next: Some(next),
                    });
                }
                Some(last) => start = Some(last),
                None if past_range => return Ok(Page { events, next: None }),
                None if events.len() >= limit => {
                    let mut only_month = Item::new();
                    only_month.insert("month".into(), AttributeValue::S(format_time(following)));
                    let next = encode_cursor(&only_month, None)?;
                    return Ok(Page {
                        events,
                        next: Some(next),
                    });
                }
                None => month = following,
            }
        }
    }

    /// The `by-source-month` query of one month partition within `range`'s key bounds.
    fn month_query(
        &self,
        source: Source,
        month: DateTime<Utc>,
        range: TimeRange,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(TableLayout::BY_SOURCE_MONTH)
            .key_condition_expression("#h = :h AND #r BETWEEN :lo AND :hi")
            .expression_attribute_names("#h", TableLayout::SOURCE_MONTH)
            .expression_attribute_names("#r", TableLayout::EVENT_KEY)
            .expression_attribute_values(":h", AttributeValue::S(keyed(source, &month_of(month))))
            .expression_attribute_values(":lo", AttributeValue::S(format_time(range.from)))
            .expression_attribute_values(":hi", AttributeValue::S(format_time(range.to)))
    }
}

impl RecentEvents for DynamoStore {
    async fn events_newest_first(
        &self,
        source: Source,
        range: TimeRange,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.walk_months(source, range, page, Direction::NewestFirst)
            .await
    }

    async fn count_between(&self, source: Source, range: TimeRange) -> Result<u64, StoreError> {
        if range.to <= range.from {
            return Ok(0);
        }
        let mut count = 0u64;
        let mut month = range.from;
        while month < range.to {
            let mut start = None;
            loop {
                let output = self
                    .month_query(source, month, range)
                    .select(aws_sdk_dynamodb::types::Select::Count)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(classify)?;
                count += output.count.max(0) as u64;
                match output.last_evaluated_key {
                    Some(last) => start = Some(last),
                    None => break,
                }
            }
            month = next_month(month);
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use chrono::TimeZone;

    fn sample() -> Event {
        let received = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
        Event::new(
            Source::Stack,
            "id-1",
            "CREATE_COMPLETE",
            "web",
            r#"{"a":1}"#,
            received,
        )
        .alias(Some("uuid-1".into()))
        .retained_for_days(Some(30))
    }

    #[test]
    fn item_round_trips() {
        let event = sample();
        let item = event_to_item(&event);
        assert_eq!(item[TableLayout::PK].as_s().unwrap(), "stack#id-1");
        assert_eq!(item[TableLayout::SUBJECT_KEY].as_s().unwrap(), "stack#web");
        assert_eq!(item[TableLayout::STATE_KEY].as_s().unwrap(), "stack#web");
        assert_eq!(item[TableLayout::ALIAS_KEY].as_s().unwrap(), "stack#uuid-1");
        assert_eq!(
            item[TableLayout::SOURCE_MONTH].as_s().unwrap(),
            "stack#2024-05"
        );
        assert_eq!(item_to_event(&item).unwrap(), event);
    }

    #[test]
    fn history_only_events_have_no_state_key() {
        let item = event_to_item(&sample().history_only());
        assert!(!item.contains_key(TableLayout::STATE_KEY));
        assert!(!item_to_event(&item).unwrap().sets_state);
    }

    #[test]
    fn foreign_cursors_are_rejected() {
        assert!(matches!(
            decode_cursor("not base64!", &["pk"]),
            Err(StoreError::BadCursor)
        ));
        let other = URL_SAFE_NO_PAD.encode(r#"{"secret":"x"}"#);
        assert!(matches!(
            decode_cursor(&other, &["pk"]),
            Err(StoreError::BadCursor)
        ));
        let mut key = Item::new();
        key.insert("pk".into(), AttributeValue::S("stack#1".into()));
        let cursor = encode_cursor(&key, None).unwrap();
        assert_eq!(decode_cursor(&cursor, &["pk"]).unwrap()["pk"], "stack#1");
    }

    #[test]
    fn next_month_rolls_over_the_year() {
        let december = Utc.with_ymd_and_hms(2024, 12, 31, 23, 0, 0).unwrap();
        assert_eq!(
            next_month(december),
            Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
        );
    }
}
