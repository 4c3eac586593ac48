//! `POST /stacks` (stack hooks in) and `GET /stacks/{stack}` (latest status out).

use crate::cfn::{self, CfnError};
use crate::ros::{self, RosError};
use crate::StackHookConfig;
use http::{Method, StatusCode};
use hub_core::auth::require_callback_token;
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{format_time, Event, Source};
use hub_core::http::{
    header_str, json_response, query_param, raw_body, require_method, respond, ApiError,
};
use hub_core::sns::{handshake_reply, looks_like_sns, Received, SnsVerifier};
use hub_core::store::{
    EventLookup, EventWriter, LatestState, PageRequest, PutOutcome, StoreError, SubjectHistory,
};
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

/// What `stack-hook` needs from the store.
pub trait StackStore: EventWriter + EventLookup + LatestState + SubjectHistory {}
impl<T: EventWriter + EventLookup + LatestState + SubjectHistory> StackStore for T {}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Hooks,
    Stack(String),
    Unknown,
}

/// The route of a request. API Gateway gives `{stack}` as a path parameter; the local server
/// gives only the path, which may carry a stage prefix (`/prod/stacks/web`).
fn route(request: &Request) -> Route {
    if let Some(stack) = request.path_parameters().first("stack") {
        return Route::Stack(stack.to_owned());
    }
    let segments: Vec<&str> = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.iter().position(|s| *s == "stacks") {
        Some(i) if i + 1 == segments.len() => Route::Hooks,
        Some(i) if i + 2 == segments.len() => Route::Stack(
            percent_decode_str(segments[i + 1])
                .decode_utf8_lossy()
                .into_owned(),
        ),
        _ => Route::Unknown,
    }
}

pub struct StackHook<S, C, F> {
    store: S,
    clock: C,
    config: StackHookConfig,
    sns: SnsVerifier<F>,
}

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    pub fn new(store: S, clock: C, config: StackHookConfig, sns: SnsVerifier<F>) -> Self {
        StackHook {
            store,
            clock,
            config,
            sns,
        }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.dispatch(&request).await)
    }

    async fn dispatch(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        match route(request) {
            Route::Hooks => {
                require_method(request, &[Method::POST], "POST")?;
                self.receive(request).await
            }
            Route::Stack(stack) => {
                require_method(request, &[Method::GET, Method::HEAD], "GET, HEAD")?;
                self.status(request, &stack).await
            }
            Route::Unknown => Err(ApiError::NotFound("no such route".into())),
        }
    }

    /// ROS webhooks, or SNS envelopes carrying CloudFormation stack events.
    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        let object = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        let sns_type = header_str(request, "x-amz-sns-message-type");
        match object {
            Some(envelope) if looks_like_sns(sns_type, &envelope) => {
                self.receive_sns(&envelope).await
            }
            _ if sns_type.is_some() => Err(ApiError::forbidden("not a verifiable SNS message")),
            object => self.receive_ros(request, object).await,
        }
    }

    /// The signature and the topic allow-list authenticate SNS; no token is involved.
    async fn receive_sns(
        &self,
        envelope: &serde_json::Map<String, Value>,
    ) -> Result<Response<Body>, ApiError> {
        let message = match self.sns.receive(envelope).await? {
            Received::Handshake => return Ok(handshake_reply()),
            Received::Notification(message) => message,
        };
        let bad = |e: CfnError| ApiError::bad_request(e.to_string());
        let event = cfn::parse(&message.message).map_err(bad)?;
        let mut stored = Event::new(
            Source::Stack,
            event.event_id().map_err(bad)?,
            event.resource_status().map_err(bad)?,
            event.stack_name().map_err(bad)?,
            event.to_json().to_string(),
            self.clock.now(),
        )
        .occurred_at(Some(event.timestamp().map_err(bad)?))
        .alias(event.get("StackId").map(str::to_owned))
        .retained_for_days(self.config.edge.event_ttl_days);
        if !event.is_stack_level() {
            stored = stored.history_only();
        }
        let outcome = self.store.put_event(&stored).await?;
        Ok(accepted(outcome, &stored.event_id, &stored.subject))
    }

    async fn receive_ros(
        &self,
        request: &Request,
        body: Option<serde_json::Map<String, Value>>,
    ) -> Result<Response<Body>, ApiError> {
        let Some(token) = &self.config.token else {
            return Err(ApiError::forbidden(
                "ROS webhooks are not enabled (no STACK_HOOK_TOKEN)",
            ));
        };
        require_callback_token(request, token)?;
        let notification = body
            .ok_or(RosError::NotAnObject)
            .and_then(ros::parse_object)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let received_at = self.clock.now();
        let key = ros::idempotency_key(&notification, received_at, self.config.dedup_window_secs);

        // A retry that crossed into the next dedup window: the same content is already stored.
        if self
            .store
            .get_event(Source::Stack, &key.previous)
            .await?
            .is_some()
        {
            return Ok(accepted(
                PutOutcome::Duplicate,
                &key.previous,
                &notification.stack_name,
            ));
        }
        let event = Event::new(
            Source::Stack,
            key.current.clone(),
            notification.status.clone(),
            notification.stack_name.clone(),
            Value::Object(notification.body).to_string(),
            received_at,
        )
        .alias(Some(notification.stack_id))
        .retained_for_days(self.config.edge.event_ttl_days);
        let outcome = self.store.put_event(&event).await?;
        Ok(accepted(outcome, &event.event_id, &event.subject))
    }

    async fn status(&self, request: &Request, stack: &str) -> Result<Response<Body>, ApiError> {
        let Some(subject) = resolve_stack(&self.store, stack).await? else {
            return Err(ApiError::NotFound("unknown stack".into()));
        };
        if query_param(request, "history").as_deref() == Some("true") {
            return self.history(request, &subject).await;
        }
        let latest = self
            .store
            .latest_about(Source::Stack, &subject)
            .await?
            .ok_or_else(|| ApiError::NotFound("unknown stack".into()))?;
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

/// The stack name that `stack` (a name, or else a stack id) refers to, if any event is stored.
pub async fn resolve_stack<S: StackStore>(
    store: &S,
    stack: &str,
) -> Result<Option<String>, StoreError> {
    if store.latest_about(Source::Stack, stack).await?.is_some() {
        return Ok(Some(stack.to_owned()));
    }
    store.subject_for_alias(Source::Stack, stack).await
}

/// What `GET /stacks/{stack}` answers: the latest status of a stack, by name or id.
pub async fn latest_status<S: StackStore>(
    store: &S,
    stack: &str,
) -> Result<Option<Value>, StoreError> {
    let Some(subject) = resolve_stack(store, stack).await? else {
        return Ok(None);
    };
    Ok(store
        .latest_about(Source::Stack, &subject)
        .await?
        .map(|latest| stack_status(&latest)))
}

fn accepted(outcome: PutOutcome, event_id: &str, stack: &str) -> Response<Body> {
    let status = match outcome {
        PutOutcome::Stored => "stored",
        PutOutcome::Duplicate => "duplicate",
    };
    tracing::info!(outcome = status, event_id, stack, "stack hook accepted");
    json_response(
        StatusCode::OK,
        &json!({"status": status, "event_id": event_id}),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use hub_core::certs::testing::FakeFetcher;
    use hub_core::certs::CertificateCache;
    use hub_core::clock::FixedClock;
    use hub_core::config::{EdgeConfig, Secret};
    use hub_core::store::memory::MemoryStore;
    use std::sync::Arc;

    const TOKEN: &str = "unit-test-token";

    type TestHook = StackHook<Arc<MemoryStore>, Arc<FixedClock>, FakeFetcher>;

    fn hook() -> (TestHook, Arc<MemoryStore>, Arc<FixedClock>) {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(FixedClock::at(
            Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
        ));
        let config = StackHookConfig {
            token: Some(Secret::new(TOKEN)),
            edge: EdgeConfig {
                max_body_bytes: 4096,
                event_ttl_days: None,
            },
            dedup_window_secs: 600,
        };
        let sns = SnsVerifier::new(
            CertificateCache::new(FakeFetcher::new(), Default::default()),
            Vec::new(),
        );
        (
            StackHook::new(store.clone(), clock.clone(), config, sns),
            store,
            clock,
        )
    }

    fn post(body: &str, token: Option<&str>) -> Request {
        let uri = match token {
            Some(t) => format!("/stacks?token={t}"),
            None => "/stacks".to_owned(),
        };
        http::Request::builder()
            .method("POST")
            .uri(uri)
            .body(Body::Text(body.into()))
            .unwrap()
    }

    fn get(uri: &str) -> Request {
        http::Request::builder()
            .method("GET")
            .uri(uri)
            .body(Body::Empty)
            .unwrap()
    }

    fn json_of(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    /// Posts a ROS notification with the right token; the reply's `status` field.
    async fn deliver(hook: &TestHook, body: &str) -> Value {
        json_of(&hook.handle(post(body, Some(TOKEN))).await)["status"].clone()
    }

    fn ros(status: &str) -> String {
        format!(
            r#"{{"StackId":"uuid-1","StackName":"web","Status":"{status}","Outputs":[{{"OutputKey":"Url","OutputValue":"http://x"}}]}}"#
        )
    }

    #[tokio::test]
    async fn retries_within_and_across_a_window_collapse() {
        let (hook, store, clock) = hook();
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "stored");
        clock.advance(chrono::Duration::seconds(30));
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "duplicate");
        // 12:00 is the start of a window, so 12:10:30 is in the next one.
        clock.advance(chrono::Duration::seconds(600));
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "duplicate");
        assert_eq!(store.len(), 1);
        // An hour later the same status is a new event.
        clock.advance(chrono::Duration::hours(1));
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "stored");
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn status_by_name_or_id_and_history() {
        let (hook, _store, clock) = hook();
        hook.handle(post(&ros("CREATE_COMPLETE"), Some(TOKEN)))
            .await;
        clock.advance(chrono::Duration::minutes(5));
        hook.handle(post(
            &ros("UPDATE_IN_PROGRESS").replace(
                ",\"Outputs\":[{\"OutputKey\":\"Url\",\"OutputValue\":\"http://x\"}]",
                "",
            ),
            Some(TOKEN),
        ))
        .await;
        let by_name = hook.handle(get("/stacks/web")).await;
        assert_eq!(by_name.status(), 200);
        let body = json_of(&by_name);
        assert_eq!(body["status"], "UPDATE_IN_PROGRESS");
        assert_eq!(body["terminal"], false);
        assert_eq!(body["stack_id"], "uuid-1");
        assert_eq!(body["outputs"], json!([]));
        assert_eq!(body["updated_at"], "2024-03-01T12:05:00.000Z");
        assert_eq!(json_of(&hook.handle(get("/stacks/uuid-1")).await), body);

        let history = json_of(&hook.handle(get("/stacks/web?history=true&limit=1")).await);
        assert_eq!(history["events"][0]["event_type"], "UPDATE_IN_PROGRESS");
        let cursor = history["next"].as_str().expect("a second page");
        let second = json_of(
            &hook
                .handle(get(&format!(
                    "/stacks/web?history=true&limit=1&cursor={cursor}"
                )))
                .await,
        );
        assert_eq!(second["events"][0]["event_type"], "CREATE_COMPLETE");
        assert_eq!(second["next"], Value::Null);
        assert_eq!(
            hook.handle(get("/stacks/web?history=true&limit=0"))
                .await
                .status(),
            400
        );
    }

    #[tokio::test]
    async fn refusals_store_nothing() {
        let (hook, store, _) = hook();
        assert_eq!(
            hook.handle(post(&ros("CREATE_COMPLETE"), None))
                .await
                .status(),
            403
        );
        assert_eq!(
            hook.handle(post(&ros("CREATE_COMPLETE"), Some("wrong")))
                .await
                .status(),
            403
        );
        assert_eq!(
            hook.handle(post("{\"StackId\":1}", Some(TOKEN)))
                .await
                .status(),
            400
        );
        assert_eq!(
            hook.handle(post(&"x".repeat(5000), Some(TOKEN)))
                .await
                .status(),
            413
        );
        assert!(store.is_empty());
        assert_eq!(hook.handle(get("/stacks/nope")).await.status(), 404);
    }

    #[tokio::test]
    async fn outage_is_503_never_200() {
        let (hook, store, _) = hook();
        store.set_unavailable(true);
        let response = hook
            .handle(post(&ros("CREATE_COMPLETE"), Some(TOKEN)))
            .await;
        assert_eq!(response.status(), 503);
        assert_eq!(json_of(&response)["error"], "unavailable");
        assert_eq!(hook.handle(get("/stacks/web")).await.status(), 503);
    }

    #[tokio::test]
    async fn wrong_methods_and_paths() {
        let (hook, _, _) = hook();
        let put = http::Request::builder()
            .method("PUT")
            .uri("/stacks")
            .body(Body::Empty)
            .unwrap();
        let response = hook.handle(put).await;
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let post_stack = http::Request::builder()
            .method("POST")
            .uri("/stacks/web")
            .body(Body::Empty)
            .unwrap();
        assert_eq!(hook.handle(post_stack).await.status(), 405);
        assert_eq!(hook.handle(get("/elsewhere")).await.status(), 404);
    }

    #[test]
    fn routes_with_and_without_stage_prefix() {
        assert_eq!(route(&get("/stacks")), Route::Hooks);
        assert_eq!(
            route(&get("/prod/stacks/my%20stack")),
            Route::Stack("my stack".into())
        );
        assert_eq!(route(&get("/stacks/a/b")), Route::Unknown);
    }
}
