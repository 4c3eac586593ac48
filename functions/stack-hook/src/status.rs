//! `GET /stacks/{stack}`: the latest known status of a stack, by name or id, and its history.
//! The same functions answer the `callback-hub stacks` command.

use crate::handler::{StackHook, StackStore};
use crate::ros;
use http::StatusCode;
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{format_time, Event, Source};
use hub_core::http::{json_response, query_param, ApiError};
use hub_core::store::{PageRequest, StoreError};
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
        let limit = match query_param(request, "limit") {
            None => 25,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("limit must be 1..={}", PageRequest::MAX_LIMIT))
                })?,
        };
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
