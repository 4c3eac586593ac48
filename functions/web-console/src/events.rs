//! The read API of the console: the events listing, one event with its deliveries, and the
//! activity counts of the overview.

use crate::{ConsoleDeliveries, ConsoleStore, WebConsole};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, DurationRound, Utc};
use http::StatusCode;
use hub_core::clock::Clock;
use hub_core::event::{format_time, parse_time, Event, Source};
use hub_core::http::{json_response, limit_param, query_param, ApiError};
use hub_core::store::{PageRequest, TimeRange};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use webhooks::store::Delivery;

/// Events per page when the request does not say.
pub const DEFAULT_LIMIT: u32 = 25;
/// Without `since`, the listing covers this many days back from `until` (or now).
pub const DEFAULT_DAYS: i64 = 90;
/// The widest range one listing may cover: the DynamoDB store reads one partition per month of
/// it, so an unbounded range would be an unbounded number of queries.
pub const MAX_RANGE_DAYS: i64 = 400;
/// Store pages read per source for one listing page when filters skip most events: the cost of
/// one request stays bounded, and the cursor resumes where the reading stopped.
pub const MAX_STORE_PAGES: usize = 10;

const CURSOR_PREFIX: &str = "console:";

/// A listing query, validated.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub sources: Vec<Source>,
    pub subject: Option<String>,
    pub event_type: Option<String>,
    pub range: TimeRange,
    /// Only events whose order key sorts before this one (the cursor: keyset pagination, so a
    /// page of several sources merged newest first resumes exactly where it ended).
    pub before: Option<String>,
    pub limit: usize,
}

/// The listing cursor: the order key (`{time}#{event_id}`) of the last event a page examined.
pub fn encode_cursor(order_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{order_key}"))
}

pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("invalid pagination cursor");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let key = text.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
    key_time(key).ok_or_else(bad)?;
    Ok(key.to_owned())
}

/// The event time an order key starts with.
fn key_time(key: &str) -> Option<DateTime<Utc>> {
    parse_time(key.split_once('#')?.0)
}

fn time_param(request: &Request, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    query_param(request, name)
        .filter(|t| !t.is_empty())
        .map(|text| {
            parse_time(&text)
                .ok_or_else(|| ApiError::bad_request(format!("{name} must be an RFC 3339 time")))
        })
        .transpose()
}

fn non_empty(request: &Request, name: &str) -> Option<String> {
    query_param(request, name).filter(|v| !v.is_empty())
}

impl EventQuery {
    pub fn from_request(request: &Request, now: DateTime<Utc>) -> Result<EventQuery, ApiError> {
        let sources = match non_empty(request, "source") {
            None => Source::ALL.to_vec(),
            Some(text) => vec![text
                .parse::<Source>()
                .map_err(|_| ApiError::bad_request("unknown source"))?],
        };
        let subject = non_empty(request, "subject");
        if subject.is_some() && sources.len() != 1 {
            return Err(ApiError::bad_request("subject needs a source"));
        }
        let limit = limit_param(non_empty(request, "limit").as_deref(), DEFAULT_LIMIT)?;
        // `until` is inclusive for a user; the store's ranges end before `to`.
        let to = match time_param(request, "until")? {
            Some(until) => until + Duration::milliseconds(1),
            None => now + Duration::days(1),
        };
        let from = time_param(request, "since")?.unwrap_or(to - Duration::days(DEFAULT_DAYS));
        if from >= to {
            return Err(ApiError::bad_request("since must be before until"));
        }
        if to - from > Duration::days(MAX_RANGE_DAYS) {
            return Err(ApiError::bad_request(format!(
                "the time range may span {MAX_RANGE_DAYS} days at most"
            )));
        }
        let before = non_empty(request, "cursor")
            .map(|c| decode_cursor(&c))
            .transpose()?;
        Ok(EventQuery {
            sources,
            subject,
            event_type: non_empty(request, "type"),
            range: TimeRange { from, to },
            before,
            limit: limit as usize,
        })
    }

    fn keeps(&self, event: &Event) -> bool {
        let time = event.event_time();
        self.event_type
            .as_deref()
            .is_none_or(|t| t == event.event_type)
            && time >= self.range.from
            && time < self.range.to
            && self
                .before
                .as_deref()
                .is_none_or(|before| event.order_key().as_str() < before)
    }
}

/// What one source gave a listing page: up to `limit + 1` matching events, newest first, and
/// the order key where reading stopped if it stopped before the source was exhausted.
struct SourcePart {
    events: Vec<Event>,
    stopped_at: Option<String>,
}

/// One page of the listing, and the cursor of the next.
#[derive(Debug, Clone)]
pub struct Listing {
    pub events: Vec<Event>,
    pub next: Option<String>,
}

pub async fn list_events<S: ConsoleStore>(
    store: &S,
    query: &EventQuery,
) -> Result<Listing, ApiError> {
    let parts = futures::future::try_join_all(
        query
            .sources
            .iter()
            .map(|source| read_source(store, *source, query)),
    )
    .await?;
    // A source read only part way bounds the page: below its stopping point, one of its unread
    // events could come before what other sources gave.
    let cut = parts.iter().filter_map(|p| p.stopped_at.clone()).max();
    let mut events: Vec<Event> = parts.into_iter().flat_map(|p| p.events).collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.order_key()));
    if let Some(cut) = &cut {
        events.retain(|e| e.order_key() >= *cut);
    }
    let more = events.len() > query.limit;
    events.truncate(query.limit);
    let next = if more {
        events.last().map(|e| encode_cursor(&e.order_key()))
    } else {
        cut.map(|c| encode_cursor(&c))
    };
    Ok(Listing { events, next })
}

async fn read_source<S: ConsoleStore>(
    store: &S,
    source: Source,
    query: &EventQuery,
) -> Result<SourcePart, ApiError> {
    let mut range = query.range;
    if let Some(before) = query.before.as_deref().and_then(key_time) {
        // Keys at exactly the cursor's instant are in; `keeps` drops those at or after it.
        range.to = range.to.min(before + Duration::milliseconds(1));
    }
    let mut events = Vec::new();
    // With a type filter most of what is read may be skipped: read whole store pages then.
    let size = match query.event_type {
        Some(_) => PageRequest::MAX_LIMIT,
        None => (query.limit as u32 + 1).min(PageRequest::MAX_LIMIT),
    };
    let mut page = PageRequest::first(size);
    let mut last_seen = None;
    for _ in 0..MAX_STORE_PAGES {
        let result = match &query.subject {
            Some(subject) => store.events_about(source, subject, &page).await?,
            None => store.events_newest_first(source, range, &page).await?,
        };
        for event in result.events {
            // A subject's history is newest first over all time: past the range, nothing more.
            if event.event_time() < range.from {
                return Ok(SourcePart {
                    events,
                    stopped_at: None,
                });
            }
            last_seen = Some(event.order_key());
            if query.keeps(&event) {
                events.push(event);
                if events.len() > query.limit {
                    return Ok(SourcePart {
                        events,
                        stopped_at: None,
                    });
                }
            }
        }
        match result.next {
            Some(next) => page.cursor = Some(next),
            None => {
                return Ok(SourcePart {
                    events,
                    stopped_at: None,
                })
            }
        }
    }
    Ok(SourcePart {
        events,
        stopped_at: last_seen,
    })
}

fn payload_json(event: &Event) -> Value {
    serde_json::from_str(&event.payload).unwrap_or(Value::Null)
}

/// An event's attributes, as the listing shows them (the payload only in the detail).
pub fn event_summary(event: &Event) -> Value {
    json!({
        "source": event.source.as_str(),
        "event_id": event.event_id,
        "event_type": event.event_type,
        "subject": event.subject,
        "subject_alias": event.subject_alias,
        "occurred_at": event.occurred_at.map(format_time),
        "received_at": format_time(event.received_at),
        "sets_state": event.sets_state,
        "expires_at": event.expires_at,
    })
}

impl<S: ConsoleStore, D: ConsoleDeliveries, C: Clock> WebConsole<S, D, C> {
    pub(crate) async fn list(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let query = EventQuery::from_request(request, self.clock.now())?;
        let listing = list_events(&self.store, &query).await?;
        let events: Vec<Value> = listing.events.iter().map(event_summary).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"events": events, "next": listing.next}),
        ))
    }

    pub(crate) async fn detail(
        &self,
        source: Source,
        event_id: &str,
    ) -> Result<Response<Body>, ApiError> {
        let event = self
            .store
            .get_event(source, event_id)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such event".into()))?;
        let mut body = event_summary(&event);
        body["payload"] = payload_json(&event);
        let (deliveries, note) = match &self.deliveries {
            Ok(hooks) => (
                Value::Array(deliveries_of(hooks, &event, self.clock.now()).await?),
                None,
            ),
            Err(reason) => (Value::Null, Some(reason.clone())),
        };
        Ok(json_response(
            StatusCode::OK,
            &json!({"event": body, "deliveries": deliveries, "deliveries_unavailable": note}),
        ))
    }

    pub(crate) async fn stats(&self) -> Result<Response<Body>, ApiError> {
        let now = self.clock.now();
        let stats = activity(&self.store, now).await?;
        Ok(json_response(StatusCode::OK, &stats))
    }
}

/// The deliveries `event` caused, one per current subscription that has one: a delivery's id is
/// stable per (subscription, event), so each is one read, whatever the number of deliveries.
/// Deliveries of a deleted subscription are not found this way (its deliveries listing is gone
/// with it too).
pub async fn deliveries_of<D: ConsoleDeliveries>(
    hooks: &D,
    event: &Event,
    now: DateTime<Utc>,
) -> Result<Vec<Value>, ApiError> {
    let subscriptions = hooks.list_subscriptions().await?;
    let mut found = Vec::new();
    for subscription in subscriptions {
        let id = Delivery::new(&subscription.name, event, now).id;
        if let Some(delivery) = hooks.get_delivery(&id).await? {
            found.push(serde_json::to_value(&delivery).map_err(|_| ApiError::Internal)?);
        }
    }
    Ok(found)
}

/// Events per source per hour over the last 24 hours and per day over the last 7 days (UTC),
/// each series oldest first, the current hour and day included.
pub async fn activity<S: ConsoleStore>(store: &S, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let hour = now
        .duration_trunc(Duration::hours(1))
        .map_err(|_| ApiError::Internal)?;
    let day = now
        .duration_trunc(Duration::days(1))
        .map_err(|_| ApiError::Internal)?;
    let hours: Vec<DateTime<Utc>> = (0..24).rev().map(|i| hour - Duration::hours(i)).collect();
    let days: Vec<DateTime<Utc>> = (0..7).rev().map(|i| day - Duration::days(i)).collect();
    let per_source = futures::future::try_join_all(Source::ALL.iter().map(|source| {
        let (hours, days) = (&hours, &days);
        async move {
            let mut hourly = Vec::with_capacity(hours.len());
            for start in hours {
                let range = TimeRange {
                    from: *start,
                    to: *start + Duration::hours(1),
                };
                hourly.push(store.count_between(*source, range).await?);
            }
            let mut daily = Vec::with_capacity(days.len());
            for start in days {
                let range = TimeRange {
                    from: *start,
                    to: *start + Duration::days(1),
                };
                daily.push(store.count_between(*source, range).await?);
            }
            Ok::<_, ApiError>(json!({
                "source": source.as_str(),
                "hourly": hourly,
                "daily": daily,
                "last_24h": hourly.iter().sum::<u64>(),
                "last_7d": daily.iter().sum::<u64>(),
            }))
        }
    }))
    .await?;
    Ok(json!({
        "generated_at": format_time(now),
        "hours": hours.iter().map(|t| format_time(*t)).collect::<Vec<_>>(),
        "days": days.iter().map(|t| format_time(*t)).collect::<Vec<_>>(),
        "sources": per_source,
    }))
}
