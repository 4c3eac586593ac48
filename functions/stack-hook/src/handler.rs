//! The stack-hook handler: routes `POST /stacks` to [`crate::receive`] and `GET /stacks/{stack}`
//! to [`crate::status`].

use crate::StackHookConfig;
use http::Method;
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::http::{require_method, respond, ApiError, Handler};
use hub_core::store::{EventLookup, EventWriter, LatestState, SubjectHistory};
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::percent_decode_str;
use sns::SnsVerifier;

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
    pub(crate) store: S,
    pub(crate) clock: C,
    pub(crate) config: StackHookConfig,
    pub(crate) sns: SnsVerifier<F>,
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
}

impl<S, C, F> Handler for StackHook<S, C, F>
where
    S: StackStore + 'static,
    C: Clock + 'static,
    F: Fetcher + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        StackHook::handle(self, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackHookConfig;
    use chrono::{TimeZone, Utc};
    use hub_core::certs::testing::FakeFetcher;
    use hub_core::certs::CertificateCache;
    use hub_core::clock::FixedClock;
    use hub_core::config::{EdgeConfig, Secret};
    use hub_core::store::memory::MemoryStore;
    use serde_json::{json, Value};
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
