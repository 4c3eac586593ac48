//! `GET /stacks/{stack}`: the latest known status of a stack, by name or id, and its history.
//! The same functions answer the `callback-hub stacks` command. `GET /stacks`: every stack with
//! its latest status (the console's stacks page).

use crate::handler::{StackHook, StackStore};
use crate::ros;
use http::StatusCode;
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{format_time, Event, Source};
use hub_core::http::{json_response, limit_param, query_param, ApiError};
use hub_core::store::{PageRequest, StoreError, TimeRange};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    pub(crate) async fn status(
        &self,
        request: &Request,
        stack: &str,
    ) -> Result<Response<Body>, ApiError> {
        let latest = latest_event(&self.store, stack)
            .await?
            .ok_or_else(|| ApiError::NotFound("unknown stack".into()))?;
        if query_param(request, "history").as_deref() == Some("true") {
            return self.history(request, &latest.subject).await;
        }
        Ok(json_response(StatusCode::OK, &stack_status(&latest)))
    }

    async fn history(&self, request: &Request, subject: &str) -> Result<Response<Body>, ApiError> {
        let limit = limit_param(query_param(request, "limit").as_deref(), 25)?;
        let page = PageRequest {
            limit,
            cursor: query_param(request, "cursor"),
        };
        let page = self
            .store
            .events_about(Source::Stack, subject, &page)
            .await?;
        let events: Vec<Value> = page.events.iter().map(history_entry).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({"stack_name": subject, "events": events, "next": page.next}),
        ))
    }
}

/// `GET /stacks` covers the stacks with an event in this many days, newest activity first. The
/// store has no index of subjects: the list comes from the source's timeline, so its cost is
/// bounded by [`LIST_MAX_PAGES`] pages of events and [`LIST_MAX_STACKS`] status reads.
pub const LIST_DAYS: i64 = 90;
pub const LIST_MAX_STACKS: usize = 100;
pub const LIST_MAX_PAGES: usize = 20;

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    pub(crate) async fn list(&self, _request: &Request) -> Result<Response<Body>, ApiError> {
        let (stacks, truncated) = list_stacks(&self.store, self.clock.now()).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"stacks": stacks, "truncated": truncated, "days": LIST_DAYS}),
        ))
    }
}

/// Every stack with an event in the last [`LIST_DAYS`] days, with its latest status, the most
/// recently active first; and whether the list was cut short by its bounds.
pub async fn list_stacks<S: StackStore>(
    store: &S,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<Value>, bool), StoreError> {
    let range = TimeRange {
        from: now - chrono::Duration::days(LIST_DAYS),
        to: now + chrono::Duration::days(1),
    };
    let mut subjects: Vec<String> = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    let mut truncated = true;
    'pages: for _ in 0..LIST_MAX_PAGES {
        let result = store
            .events_newest_first(Source::Stack, range, &page)
            .await?;
        for event in result.events {
            if !subjects.contains(&event.subject) {
                if subjects.len() == LIST_MAX_STACKS {
                    break 'pages;
                }
                subjects.push(event.subject);
            }
        }
        match result.next {
            Some(next) => page.cursor = Some(next),
            None => {
                truncated = false;
                break;
            }
        }
    }
    let mut stacks = Vec::with_capacity(subjects.len());
    for subject in subjects {
        // A stack whose events are all history-only (resource events) has no status yet.
        if let Some(latest) = store.latest_about(Source::Stack, &subject).await? {
            stacks.push(stack_status(&latest));
        }
    }
    Ok((stacks, truncated))
}

/// The latest state-setting event of `stack` (a stack name, or else a stack id), if any: one
/// query by name, and only when that finds nothing, the alias lookup and one more.
pub async fn latest_event<S: StackStore>(
    store: &S,
    stack: &str,
) -> Result<Option<Event>, StoreError> {
    if let Some(latest) = store.latest_about(Source::Stack, stack).await? {
        return Ok(Some(latest));
    }
    match store.subject_for_alias(Source::Stack, stack).await? {
        Some(subject) => store.latest_about(Source::Stack, &subject).await,
        None => Ok(None),
    }
}

/// What `GET /stacks/{stack}` answers, for the `callback-hub stacks` command too.
pub async fn latest_status<S: StackStore>(
    store: &S,
    stack: &str,
) -> Result<Option<Value>, StoreError> {
    Ok(latest_event(store, stack).await?.as_ref().map(stack_status))
}

fn payload_json(event: &Event) -> Value {
    serde_json::from_str(&event.payload).unwrap_or(Value::Null)
}

/// The `GET /stacks/{stack}` reply.
pub fn stack_status(latest: &Event) -> Value {
    let payload = payload_json(latest);
    let outputs = match payload.get("Outputs") {
        Some(Value::Array(outputs)) => Value::Array(outputs.clone()),
        _ => Value::Array(Vec::new()),
    };
    let stack_id = latest.subject_alias.clone().or_else(|| {
        payload
            .get("StackId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    json!({
        "stack_name": latest.subject,
        "stack_id": stack_id,
        "status": latest.event_type,
        "terminal": ros::is_terminal(&latest.event_type),
        "outputs": outputs,
        "updated_at": format_time(latest.event_time()),
    })
}

fn history_entry(event: &Event) -> Value {
    json!({
        "event_id": event.event_id,
        "event_type": event.event_type,
        "occurred_at": event.occurred_at.map(format_time),
        "received_at": format_time(event.received_at),
        "sets_status": event.sets_state,
        "payload": payload_json(event),
    })
}
