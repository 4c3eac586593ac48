//! The stack-hook handler: routes `POST /stacks` to [`crate::receive`] (the sender's credential)
//! and `GET /stacks/{stack}` to [`crate::status`] (the user's `Authorization: Bearer <API_TOKEN>`).

use crate::heads::ChainHeads;
use crate::StackHookConfig;
use http::Method;
use hub_core::auth::require_api_token;
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::http::{require_method, respond, ApiError, Handler};
use hub_core::store::{EventLookup, EventWriter, LatestState, RecentEvents, SubjectHistory};
use lambda_http::{Body, Request, RequestExt, Response};
use percent_encoding::percent_decode_str;
use sns::SnsVerifier;

/// What `stack-hook` needs from the store.
pub trait StackStore:
    EventWriter + EventLookup + LatestState + SubjectHistory + RecentEvents
{
}
impl<T: EventWriter + EventLookup + LatestState + SubjectHistory + RecentEvents> StackStore for T {}

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
    /// The ROS chain heads this instance has proved (`crate::heads`).
    pub(crate) heads: ChainHeads,
}

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    pub fn new(store: S, clock: C, config: StackHookConfig, sns: SnsVerifier<F>) -> Self {
        StackHook {
            store,
            clock,
            config,
            sns,
            heads: ChainHeads::default(),
        }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.dispatch(&request).await)
    }

    async fn dispatch(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        match route(request) {
            Route::Hooks if matches!(*request.method(), Method::GET | Method::HEAD) => {
                // The list of stacks is a read like `GET /stacks/{stack}`: the same token.
                require_api_token(request, self.config.api_token.as_ref())?;
                self.list(request).await
            }
            Route::Hooks => {
                require_method(request, &[Method::POST], "GET, HEAD, POST")?;
                self.receive(request).await
            }
            Route::Stack(stack) => {
                require_method(request, &[Method::GET, Method::HEAD], "GET, HEAD")?;
                // Outputs may hold generated passwords and history holds every payload: users
                // with the API token only, checked before anything is read. Unset, closed (503).
                require_api_token(request, self.config.api_token.as_ref())?;
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
    fn source(&self) -> Option<hub_core::Source> {
        Some(hub_core::Source::Stack)
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
    const API_TOKEN: &str = "unit-test-api-token";

    type TestHook = StackHook<Arc<MemoryStore>, Arc<FixedClock>, FakeFetcher>;

    fn hook() -> (TestHook, Arc<MemoryStore>, Arc<FixedClock>) {
        let store = Arc::new(MemoryStore::new());
        let (hook, clock) = hook_over(store.clone(), Some(API_TOKEN));
        (hook, store, clock)
    }

    fn hook_over<S: StackStore>(
        store: S,
        api_token: Option<&str>,
    ) -> (StackHook<S, Arc<FixedClock>, FakeFetcher>, Arc<FixedClock>) {
        hook_with_ttl(store, api_token, None)
    }

    fn hook_with_ttl<S: StackStore>(
        store: S,
        api_token: Option<&str>,
        event_ttl_days: Option<u32>,
    ) -> (StackHook<S, Arc<FixedClock>, FakeFetcher>, Arc<FixedClock>) {
        let clock = Arc::new(FixedClock::at(
            Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
        ));
        (
            instance(store, api_token, event_ttl_days, clock.clone()),
            clock,
        )
    }

    /// A hook over `store` reading `clock`: another Lambda instance of the same function.
    fn instance<S: StackStore>(
        store: S,
        api_token: Option<&str>,
        event_ttl_days: Option<u32>,
        clock: Arc<FixedClock>,
    ) -> StackHook<S, Arc<FixedClock>, FakeFetcher> {
        let config = StackHookConfig {
            token: Some(Secret::new(TOKEN)),
            api_token: api_token.map(Secret::new),
            edge: EdgeConfig {
                max_body_bytes: 4096,
                event_ttl_days,
            },
            dedup_window_secs: 600,
        };
        let sns = SnsVerifier::new(
            CertificateCache::new(
                FakeFetcher::new(),
                hub_core::certs::PinnedCertificates::default(),
            ),
            Vec::new(),
        );
        StackHook::new(store, clock, config, sns)
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

    /// A user's read, with the right bearer token.
    fn get(uri: &str) -> Request {
        get_with(uri, Some(&format!("Bearer {API_TOKEN}")))
    }

    fn get_with(uri: &str, authorization: Option<&str>) -> Request {
        let mut builder = http::Request::builder().method("GET").uri(uri);
        if let Some(value) = authorization {
            builder = builder.header("Authorization", value);
        }
        builder.body(Body::Empty).unwrap()
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
    async fn every_stack_with_its_latest_status_needs_the_token() {
        let (hook, _, clock) = hook();
        assert_eq!(hook.handle(get_with("/stacks", None)).await.status(), 401);
        let empty = json_of(&hook.handle(get("/stacks")).await);
        assert_eq!(empty["stacks"], json!([]));
        for (stack_id, status) in [
            ("id-web", "CREATE_IN_PROGRESS"),
            ("id-db", "CREATE_FAILED"),
            ("id-web", "CREATE_COMPLETE"),
        ] {
            clock.advance(chrono::Duration::minutes(1));
            let name = if stack_id == "id-web" { "web" } else { "db" };
            let body = format!(
                r#"{{"StackId":"{stack_id}","StackName":"{name}","Status":"{status}","StatusReason":"","Outputs":[]}}"#
            );
            deliver(&hook, &body).await;
        }
        let listing = json_of(&hook.handle(get("/stacks")).await);
        let stacks = listing["stacks"].as_array().unwrap();
        let summary: Vec<(&str, &str)> = stacks
            .iter()
            .map(|s| {
                (
                    s["stack_name"].as_str().unwrap(),
                    s["status"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [("web", "CREATE_COMPLETE"), ("db", "CREATE_FAILED")],
            "each stack once, with its latest status, the latest change first"
        );
        assert_eq!(stacks[0]["terminal"], true);
        assert_eq!(listing["truncated"], false);
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
        assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
        let post_stack = http::Request::builder()
            .method("POST")
            .uri("/stacks/web")
            .body(Body::Empty)
            .unwrap();
        assert_eq!(hook.handle(post_stack).await.status(), 405);
        assert_eq!(hook.handle(get("/elsewhere")).await.status(), 404);
    }

    fn ros_of(stack_id: &str, status: &str, output: &str) -> String {
        format!(
            r#"{{"StackId":"{stack_id}","StackName":"web","Status":"{status}","Outputs":[{{"OutputKey":"Url","OutputValue":"{output}"}}]}}"#
        )
    }

    async fn current(hook: &TestHook) -> Value {
        json_of(&hook.handle(get("/stacks/web")).await)
    }

    async fn history_types<S: StackStore>(
        hook: &StackHook<S, Arc<FixedClock>, FakeFetcher>,
    ) -> Vec<(String, bool)> {
        json_of(&hook.handle(get("/stacks/web?history=true&limit=100")).await)["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["event_type"].as_str().unwrap().to_owned(),
                    e["sets_status"].as_bool().unwrap(),
                )
            })
            .collect()
    }

    // S3: the status route is for users holding the API token; the token is checked before
    // anything is read.
    #[tokio::test]
    async fn status_needs_the_bearer_token_before_any_store_read() {
        let (hook, store, _) = hook();
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "stored");
        for (uri, authorization) in [
            ("/stacks/web", None),
            ("/stacks/web", Some("Bearer wrong-token")),
            ("/stacks/web", Some(&*format!("Basic {API_TOKEN}"))),
            ("/stacks/web", Some(API_TOKEN)),
            ("/stacks/web?history=true", None),
            ("/stacks/uuid-1?history=true&limit=100", Some("Bearer ")),
            ("/stacks/nope", None),
        ] {
            let response = hook.handle(get_with(uri, authorization)).await;
            assert_eq!(response.status(), 401, "{uri} {authorization:?}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body = json_of(&response);
            assert_eq!(body["error"], "unauthorized");
            assert!(body.get("status").is_none() && body.get("events").is_none());
            assert!(!body.to_string().contains("http://x"), "{body}");
        }
        // Refused before the store is asked: an outage does not turn 401 into 503.
        store.set_unavailable(true);
        assert_eq!(
            hook.handle(get_with("/stacks/web", None)).await.status(),
            401
        );
        store.set_unavailable(false);
        let response = hook
            .handle(get_with(
                "/stacks/web",
                Some(&format!("bearer {API_TOKEN}")),
            ))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(json_of(&response)["outputs"][0]["OutputValue"], "http://x");
    }

    #[tokio::test]
    async fn without_an_api_token_reads_are_closed_and_hooks_still_work() {
        let store = Arc::new(MemoryStore::new());
        let (hook, _) = hook_over(store.clone(), None);
        let response = hook
            .handle(post(&ros("CREATE_COMPLETE"), Some(TOKEN)))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(store.len(), 1);
        for authorization in [None, Some("Bearer anything"), Some("Bearer ")] {
            let response = hook.handle(get_with("/stacks/web", authorization)).await;
            assert_eq!(response.status(), 503);
            let body = json_of(&response);
            assert!(
                body["message"].as_str().unwrap().contains("API_TOKEN"),
                "{body}"
            );
            assert!(body.get("status").is_none());
        }
    }

    // S4 (a): a status that comes back is a change, not a retry.
    #[tokio::test]
    async fn a_status_that_comes_back_is_a_change_not_a_retry() {
        let (hook, store, clock) = hook();
        assert_eq!(deliver(&hook, &ros("UPDATE_COMPLETE")).await, "stored");
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(deliver(&hook, &ros("ROLLBACK_COMPLETE")).await, "stored");
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(deliver(&hook, &ros("UPDATE_COMPLETE")).await, "stored");
        assert_eq!(current(&hook).await["status"], "UPDATE_COMPLETE");
        // A retry of the current latest still collapses.
        clock.advance(chrono::Duration::seconds(5));
        assert_eq!(deliver(&hook, &ros("UPDATE_COMPLETE")).await, "duplicate");
        assert_eq!(store.len(), 3);
        assert_eq!(
            history_types(&hook).await,
            [
                ("UPDATE_COMPLETE".to_owned(), true),
                ("ROLLBACK_COMPLETE".to_owned(), true),
                ("UPDATE_COMPLETE".to_owned(), true),
            ]
        );
    }

    // S4 (b): a replay of an older notification is history, never the status.
    #[tokio::test]
    async fn a_late_create_never_supersedes_an_update() {
        let (hook, store, clock) = hook();
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "stored");
        clock.advance(chrono::Duration::minutes(5));
        assert_eq!(deliver(&hook, &ros("UPDATE_COMPLETE")).await, "stored");
        // A retry of the CREATE_COMPLETE within its windows: the same content is stored already.
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(deliver(&hook, &ros("CREATE_COMPLETE")).await, "duplicate");
        // Much later: stored, as history.
        clock.advance(chrono::Duration::hours(2));
        let reply = json_of(
            &hook
                .handle(post(&ros("CREATE_COMPLETE"), Some(TOKEN)))
                .await,
        );
        assert_eq!(reply["status"], "stored");
        assert_eq!(reply["sets_status"], false);
        assert_eq!(current(&hook).await["status"], "UPDATE_COMPLETE");
        assert_eq!(store.len(), 3);
        assert_eq!(
            history_types(&hook).await,
            [
                ("CREATE_COMPLETE".to_owned(), false),
                ("UPDATE_COMPLETE".to_owned(), true),
                ("CREATE_COMPLETE".to_owned(), true),
            ]
        );
        // The status still moves on.
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(deliver(&hook, &ros("CHECK_COMPLETE")).await, "stored");
        assert_eq!(current(&hook).await["status"], "CHECK_COMPLETE");
    }

    #[tokio::test]
    async fn nothing_supersedes_delete_complete_but_a_new_stack_id() {
        let (hook, _store, clock) = hook();
        assert_eq!(
            deliver(&hook, &ros_of("uuid-1", "CREATE_COMPLETE", "a")).await,
            "stored"
        );
        clock.advance(chrono::Duration::minutes(10));
        assert_eq!(
            deliver(&hook, &ros_of("uuid-1", "DELETE_COMPLETE", "a")).await,
            "stored"
        );
        clock.advance(chrono::Duration::hours(1));
        for late in ["UPDATE_COMPLETE", "ROLLBACK_COMPLETE", "DELETE_FAILED"] {
            assert_eq!(deliver(&hook, &ros_of("uuid-1", late, "a")).await, "stored");
            assert_eq!(current(&hook).await["status"], "DELETE_COMPLETE", "{late}");
        }
        // Deleted and created again under the same name: a new stack id, a new lifecycle.
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            deliver(&hook, &ros_of("uuid-2", "CREATE_COMPLETE", "b")).await,
            "stored"
        );
        let status = current(&hook).await;
        assert_eq!(status["status"], "CREATE_COMPLETE");
        assert_eq!(status["stack_id"], "uuid-2");
        // The old stack's late notifications stay history.
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            deliver(&hook, &ros_of("uuid-1", "UPDATE_COMPLETE", "late")).await,
            "stored"
        );
        assert_eq!(current(&hook).await["stack_id"], "uuid-2");
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            deliver(&hook, &ros_of("uuid-2", "UPDATE_COMPLETE", "b2")).await,
            "stored"
        );
        let status = current(&hook).await;
        assert_eq!(status["status"], "UPDATE_COMPLETE");
        assert_eq!(status["outputs"][0]["OutputValue"], "b2");
        assert_eq!(
            json_of(&hook.handle(get("/stacks/uuid-1")).await)["stack_id"],
            "uuid-2",
            "a stack id leads to its name, whose latest is the new stack"
        );
    }

    /// The memory store, but every call yields first, so that concurrent deliveries interleave
    /// between their reads and their writes; its probe counts the reads and writes it passes on
    /// and can hold the "latest" index back.
    #[derive(Clone)]
    struct Interleaved(Arc<MemoryStore>, Arc<Probe>);

    #[derive(Default)]
    struct Probe {
        reads: std::sync::atomic::AtomicUsize,
        writes: std::sync::atomic::AtomicUsize,
        /// While set, the index answers this, however the chain has moved on since.
        stale_latest: std::sync::Mutex<Option<Option<hub_core::event::Event>>>,
    }

    impl Probe {
        async fn freeze_index(&self, store: &MemoryStore, subject: &str) {
            let now = store
                .latest_about(hub_core::event::Source::Stack, subject)
                .await
                .unwrap();
            *self.stale_latest.lock().unwrap() = Some(now);
        }

        fn read(&self) {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn write(&self) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        /// Reads and writes since the last call.
        fn take(&self) -> (usize, usize) {
            (
                self.reads.swap(0, std::sync::atomic::Ordering::Relaxed),
                self.writes.swap(0, std::sync::atomic::Ordering::Relaxed),
            )
        }
    }

    fn interleaved() -> (Interleaved, Arc<MemoryStore>, Arc<Probe>) {
        let store = Arc::new(MemoryStore::new());
        let requests = Arc::new(Probe::default());
        (
            Interleaved(store.clone(), requests.clone()),
            store,
            requests,
        )
    }

    impl EventWriter for Interleaved {
        async fn put_event(
            &self,
            event: &hub_core::event::Event,
        ) -> Result<hub_core::store::PutOutcome, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.write();
            self.0.put_event(event).await
        }
    }
    impl EventLookup for Interleaved {
        async fn get_event(
            &self,
            source: hub_core::event::Source,
            event_id: &str,
        ) -> Result<Option<hub_core::event::Event>, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            self.0.get_event(source, event_id).await
        }
    }
    impl SubjectHistory for Interleaved {
        async fn events_about(
            &self,
            source: hub_core::event::Source,
            subject: &str,
            page: &hub_core::store::PageRequest,
        ) -> Result<hub_core::store::Page, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            self.0.events_about(source, subject, page).await
        }
    }
    impl RecentEvents for Interleaved {
        async fn events_newest_first(
            &self,
            source: hub_core::event::Source,
            range: hub_core::store::TimeRange,
            page: &hub_core::store::PageRequest,
        ) -> Result<hub_core::store::Page, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            self.0.events_newest_first(source, range, page).await
        }
        async fn count_between(
            &self,
            source: hub_core::event::Source,
            range: hub_core::store::TimeRange,
        ) -> Result<u64, hub_core::store::StoreError> {
            self.0.count_between(source, range).await
        }
    }
    impl LatestState for Interleaved {
        async fn latest_about(
            &self,
            source: hub_core::event::Source,
            subject: &str,
        ) -> Result<Option<hub_core::event::Event>, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            if let Some(stale) = self.1.stale_latest.lock().unwrap().clone() {
                return Ok(stale);
            }
            self.0.latest_about(source, subject).await
        }
        async fn latest_with_id_prefix(
            &self,
            source: hub_core::event::Source,
            subject: &str,
            id_prefix: &str,
        ) -> Result<Option<hub_core::event::Event>, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            self.0
                .latest_with_id_prefix(source, subject, id_prefix)
                .await
        }
        async fn subject_for_alias(
            &self,
            source: hub_core::event::Source,
            alias: &str,
        ) -> Result<Option<String>, hub_core::store::StoreError> {
            tokio::task::yield_now().await;
            self.1.read();
            self.0.subject_for_alias(source, alias).await
        }
    }

    #[tokio::test]
    async fn concurrent_deliveries_keep_the_lifecycle_and_collapse_retries() {
        let (interleaved, store, _) = interleaved();
        let (hook, clock) = hook_over(interleaved, Some(API_TOKEN));
        let send = |name: &str, status: &str| {
            post(
                &format!(r#"{{"StackId":"id-{name}","StackName":"{name}","Status":"{status}"}}"#),
                Some(TOKEN),
            )
        };
        let names: Vec<String> = (0..16).map(|i| format!("stack-{i}")).collect();
        for name in &names {
            assert_eq!(
                hook.handle(send(name, "CREATE_COMPLETE")).await.status(),
                200
            );
        }
        clock.advance(chrono::Duration::hours(1));
        for name in &names {
            // A fresh update and a replay of the creation, racing in both orders.
            let (a, b) = tokio::join!(
                hook.handle(send(name, "UPDATE_COMPLETE")),
                hook.handle(send(name, "CREATE_COMPLETE")),
            );
            assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
            let (a, b) = tokio::join!(
                hook.handle(send(name, "CREATE_COMPLETE")),
                hook.handle(send(name, "UPDATE_COMPLETE")),
            );
            assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
            let status = json_of(&hook.handle(get(&format!("/stacks/{name}"))).await);
            assert_eq!(status["status"], "UPDATE_COMPLETE", "{name}");
        }
        // Five copies of one change at once: one event; the status is that change.
        clock.advance(chrono::Duration::minutes(1));
        let before = store.len();
        let replies = futures_join5(
            hook.handle(send("stack-0", "ROLLBACK_COMPLETE")),
            hook.handle(send("stack-0", "ROLLBACK_COMPLETE")),
            hook.handle(send("stack-0", "ROLLBACK_COMPLETE")),
            hook.handle(send("stack-0", "ROLLBACK_COMPLETE")),
            hook.handle(send("stack-0", "ROLLBACK_COMPLETE")),
        )
        .await;
        let stored = replies
            .iter()
            .filter(|r| json_of(r)["status"] == "stored")
            .count();
        assert_eq!(stored, 1);
        assert_eq!(store.len(), before + 1);
        let status = json_of(&hook.handle(get("/stacks/stack-0")).await);
        assert_eq!(status["status"], "ROLLBACK_COMPLETE");
    }

    /// Whether a reply, which must be `stored`, set the stack's status (a change) or filed the
    /// event as history (a retry or a late delivery).
    fn sets_status(reply: &Value) -> bool {
        assert_eq!(reply["status"], "stored", "{reply}");
        reply["sets_status"]
            .as_bool()
            .expect("a stored reply says sets_status")
    }

    /// `count` changes about `name` through `hook`, a second apart, UPDATE and ROLLBACK in turn.
    async fn change_many<S: StackStore>(
        hook: &StackHook<S, Arc<FixedClock>, FakeFetcher>,
        clock: &FixedClock,
        name: &str,
        stack_id: &str,
        count: usize,
    ) {
        for n in 0..count {
            clock.advance(chrono::Duration::seconds(1));
            let status = ["UPDATE_COMPLETE", "ROLLBACK_COMPLETE"][n % 2];
            assert!(sets_status(&send_to(hook, name, stack_id, status).await));
        }
    }

    /// Posts a ROS notification about `name` to any hook; the reply.
    async fn send_to<S: StackStore>(
        hook: &StackHook<S, Arc<FixedClock>, FakeFetcher>,
        name: &str,
        stack_id: &str,
        status: &str,
    ) -> Value {
        let body =
            format!(r#"{{"StackId":"{stack_id}","StackName":"{name}","Status":"{status}"}}"#);
        let response = hook.handle(post(&body, Some(TOKEN))).await;
        assert_eq!(response.status(), 200, "{name} {stack_id} {status}");
        json_of(&response)
    }

    // A new stack's creation is one write and no read, and so is a change to a stack this
    // instance has just placed; another instance reads the index first.
    #[tokio::test]
    async fn a_new_stack_is_one_write_and_so_is_a_change_to_a_stack_the_instance_knows() {
        let (interleaved, store, requests) = interleaved();
        let (hook, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        let reply = send_to(&hook, "web", "uuid-1", "CREATE_COMPLETE").await;
        assert!(sets_status(&reply));
        assert_eq!(requests.take(), (0, 1));

        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            send_to(&hook, "web", "uuid-1", "UPDATE_COMPLETE").await["status"],
            "stored"
        );
        // The put into the place after the head this instance stored.
        assert_eq!(requests.take(), (0, 1));

        // Another instance: the latest index, then the put into the place after its answer.
        let other = instance(interleaved.clone(), Some(API_TOKEN), None, clock.clone());
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            send_to(&other, "web", "uuid-1", "ROLLBACK_COMPLETE").await["status"],
            "stored"
        );
        assert_eq!(requests.take(), (1, 1));

        // A retry of the creation at the first instance, which remembers a head, so no put into
        // the first place is tried: late against that head (UPDATE_COMPLETE), and against the
        // chain's head, reached by a consistent read, too: a duplicate of the stored creation.
        clock.advance(chrono::Duration::seconds(20));
        let reply = send_to(&hook, "web", "uuid-1", "CREATE_COMPLETE").await;
        assert_eq!(reply["status"], "duplicate");
        assert_eq!(requests.take().1, 0);
        // At a third instance, which remembers none, the put into the first place is tried.
        let third = instance(interleaved, Some(API_TOKEN), None, clock.clone());
        let reply = send_to(&third, "web", "uuid-1", "CREATE_COMPLETE").await;
        assert_eq!(reply["status"], "duplicate");
        assert_eq!(requests.take().1, 1);
        assert_eq!(store.len(), 3);
        let status = json_of(&hook.handle(get("/stacks/web")).await);
        assert_eq!(status["status"], "ROLLBACK_COMPLETE");
    }

    // One instance remembers a head that another instance has since moved on from: each verdict
    // is still taken against the chain's true head.
    #[tokio::test]
    async fn a_remembered_head_another_instance_moved_on_from_never_decides_a_delivery() {
        let (interleaved, store, requests) = interleaved();
        let (first, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        let second = instance(interleaved, Some(API_TOKEN), None, clock.clone());
        send_to(&first, "web", "uuid-1", "CREATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(1));
        send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(1));
        send_to(&second, "web", "uuid-1", "ROLLBACK_COMPLETE").await;
        requests.take();

        // ROS retries the rollback at the first instance. Against its head (UPDATE_COMPLETE) the
        // rollback is a change; the put into the place after that head finds it taken, and
        // against the winner it is a retry.
        clock.advance(chrono::Duration::seconds(10));
        assert_eq!(
            send_to(&first, "web", "uuid-1", "ROLLBACK_COMPLETE").await["status"],
            "duplicate"
        );
        assert_eq!(store.len(), 3);
        assert_eq!(
            requests.take(),
            (2, 1),
            "the winner, then the place after it"
        );

        // The second instance moves on again; the first one's head is the rollback now.
        clock.advance(chrono::Duration::seconds(10));
        send_to(&second, "web", "uuid-1", "UPDATE_COMPLETE").await;
        // A retry of that update at the first instance: against its head it is a change (A-B-A);
        // the put finds the place taken, and against the winner it is a retry.
        clock.advance(chrono::Duration::seconds(10));
        assert_eq!(
            send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await["status"],
            "duplicate"
        );
        // The second instance moves on once more. A creation ROS sends late reaches the first
        // instance: late against its remembered head and against the true head: history.
        clock.advance(chrono::Duration::seconds(10));
        send_to(&second, "web", "uuid-1", "CHECK_COMPLETE").await;
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&first, "web", "uuid-1", "CREATE_IN_PROGRESS").await;
        assert!(!sets_status(&reply));
        // And a retry of the true head at the first instance is a retry, not a change.
        clock.advance(chrono::Duration::seconds(10));
        send_to(&second, "web", "uuid-1", "UPDATE_COMPLETE").await;
        clock.advance(chrono::Duration::seconds(10));
        assert_eq!(
            send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await["status"],
            "duplicate"
        );
        let status = json_of(&first.handle(get("/stacks/web")).await);
        assert_eq!(status["status"], "UPDATE_COMPLETE");
        assert_eq!(
            history_types(&first)
                .await
                .iter()
                .filter(|(_, sets)| *sets)
                .count(),
            6,
            "create, update, rollback, update, check, update"
        );
    }

    // The head a first instance remembers (UPDATE_COMPLETE) looks like a retry of the status
    // that came back at it; only the true head, after another instance's rollback, shows it is
    // a change.
    #[tokio::test]
    async fn a_status_that_came_back_through_another_instance_is_a_change_not_a_retry() {
        let (interleaved, store, _) = interleaved();
        let (first, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        let second = instance(interleaved, Some(API_TOKEN), None, clock.clone());
        send_to(&first, "web", "uuid-1", "CREATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(1));
        send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await;
        clock.advance(chrono::Duration::seconds(10));
        send_to(&second, "web", "uuid-1", "ROLLBACK_COMPLETE").await;
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await;
        assert!(sets_status(&reply));
        assert_eq!(store.len(), 4);
        let status = json_of(&first.handle(get("/stacks/web")).await);
        assert_eq!(status["status"], "UPDATE_COMPLETE");
    }

    // Other instances moved the chain on by more than one walk since the first instance
    // remembered it: the index, not a 503.
    #[tokio::test]
    async fn a_head_remembered_far_behind_the_chain_gives_way_to_the_index() {
        let (interleaved, _store, _) = interleaved();
        let (first, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        let second = instance(interleaved, Some(API_TOKEN), None, clock.clone());
        send_to(&first, "web", "uuid-1", "CREATE_COMPLETE").await;
        change_many(
            &second,
            &clock,
            "web",
            "uuid-1",
            crate::receive::MAX_WALK + 4,
        )
        .await;
        clock.advance(chrono::Duration::seconds(1));
        // A change against the remembered head and the true one: the put after the remembered
        // head fails, the walk from its winner ends before the head, the index leads there.
        let reply = send_to(&first, "web", "uuid-1", "CHECK_COMPLETE").await;
        assert!(sets_status(&reply));
        assert_eq!(
            json_of(&first.handle(get("/stacks/web")).await)["status"],
            "CHECK_COMPLETE"
        );
        // Again, and now a late delivery: its verdict's walk from the remembered head (CHECK)
        // ends before the head too.
        change_many(
            &second,
            &clock,
            "web",
            "uuid-1",
            crate::receive::MAX_WALK + 4,
        )
        .await;
        clock.advance(chrono::Duration::seconds(1));
        let reply = send_to(&first, "web", "uuid-1", "CREATE_IN_PROGRESS").await;
        assert!(!sets_status(&reply));
        assert_eq!(
            json_of(&first.handle(get("/stacks/web")).await)["status"],
            "ROLLBACK_COMPLETE",
            "the last of the second instance's"
        );
    }

    // A CloudFormation stack of the same name: its statuses are outside the ROS chain. ROS
    // deliveries are decided against the ROS chain, whichever instance takes them, and the
    // name's status is the newer stack's.
    #[tokio::test]
    async fn a_cloudformation_status_of_the_same_name_is_outside_the_ros_chain() {
        let (interleaved, store, _) = interleaved();
        let (first, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        send_to(&first, "web", "uuid-1", "CREATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(1));
        send_to(&first, "web", "uuid-1", "UPDATE_COMPLETE").await;
        // What the SNS path stores for a CloudFormation stack event (crate::cfn).
        clock.advance(chrono::Duration::minutes(1));
        let arn = "arn:aws:cloudformation:us-east-1:123456789012:stack/web/0b1c";
        let cfn = hub_core::event::Event::new(
            hub_core::event::Source::Stack,
            format!("9a8b-7c6d@{arn}"),
            "UPDATE_COMPLETE",
            "web",
            format!(r#"{{"StackId":"{arn}"}}"#),
            clock.now(),
        )
        .occurred_at(Some(clock.now()))
        .alias(Some(arn.to_owned()));
        store.put_event(&cfn).await.unwrap();
        assert_eq!(
            json_of(&first.handle(get("/stacks/web")).await)["stack_id"],
            arn
        );

        // A second instance, remembering nothing: the index's latest is the CloudFormation
        // status, and the ROS chain's head is found behind it. A rollback of the ROS stack
        // follows its update: the name's status.
        let second = instance(interleaved.clone(), Some(API_TOKEN), None, clock.clone());
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&second, "web", "uuid-1", "ROLLBACK_COMPLETE").await;
        assert!(sets_status(&reply));
        let status = json_of(&second.handle(get("/stacks/web")).await);
        assert_eq!(
            (status["status"].as_str(), status["stack_id"].as_str()),
            (Some("ROLLBACK_COMPLETE"), Some("uuid-1"))
        );
        // The first instance still remembers the update: the rollback's retry there is a retry,
        // one chain, not two.
        clock.advance(chrono::Duration::seconds(10));
        assert_eq!(
            send_to(&first, "web", "uuid-1", "ROLLBACK_COMPLETE").await["status"],
            "duplicate"
        );
        // A creation ROS sends late is late against the ROS chain, at either instance.
        for hook in [&first, &second] {
            clock.advance(chrono::Duration::seconds(10));
            let reply = send_to(hook, "web", "uuid-1", "CREATE_IN_PROGRESS").await;
            assert_eq!(reply["sets_status"], false);
        }
        // A third instance: a new ROS stack under the name starts a new lifecycle in the chain.
        let third = instance(interleaved, Some(API_TOKEN), None, clock.clone());
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&third, "web", "uuid-2", "CREATE_COMPLETE").await;
        assert_eq!(reply["sets_status"], true);
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&first, "web", "uuid-1", "CHECK_COMPLETE").await;
        assert!(!sets_status(&reply), "the old ROS stack is late now");
        let status = json_of(&first.handle(get("/stacks/web")).await);
        assert_eq!(
            (status["status"].as_str(), status["stack_id"].as_str()),
            (Some("CREATE_COMPLETE"), Some("uuid-2"))
        );
    }

    #[tokio::test]
    async fn a_remembered_head_is_used_for_minutes_then_the_index_is_asked_again() {
        let (interleaved, _store, requests) = interleaved();
        let (hook, clock) = hook_over(interleaved, Some(API_TOKEN));
        send_to(&hook, "web", "uuid-1", "CREATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(4));
        send_to(&hook, "web", "uuid-1", "UPDATE_COMPLETE").await;
        requests.take();
        clock.advance(chrono::Duration::minutes(4));
        send_to(&hook, "web", "uuid-1", "ROLLBACK_COMPLETE").await;
        assert_eq!(requests.take(), (0, 1), "proved four minutes ago");
        clock.advance(crate::heads::MAX_AGE);
        send_to(&hook, "web", "uuid-1", "UPDATE_COMPLETE").await;
        assert_eq!(
            requests.take(),
            (1, 1),
            "proved too long ago: the index first"
        );
    }

    // The "latest" index lags: every verdict is still taken against the chain's true head.
    #[tokio::test]
    async fn a_lagging_index_never_decides_a_delivery() {
        let (interleaved, store, probe) = interleaved();
        let (hook, clock) = hook_over(interleaved.clone(), Some(API_TOKEN));
        send_to(&hook, "web", "uuid-1", "CREATE_COMPLETE").await;
        clock.advance(chrono::Duration::minutes(1));
        send_to(&hook, "web", "uuid-1", "UPDATE_COMPLETE").await;
        probe.freeze_index(&store, "web").await;
        // Each delivery reaches a new instance, which remembers no head: the index's answer is
        // where each starts.
        let fresh = || instance(interleaved.clone(), Some(API_TOKEN), None, clock.clone());
        clock.advance(chrono::Duration::minutes(1));
        // Against the index's UPDATE_COMPLETE it is a change; so it is against the head.
        let reply = send_to(&fresh(), "web", "uuid-1", "ROLLBACK_COMPLETE").await;
        assert!(sets_status(&reply));
        // Against the index's answer this would be a retry; the head is ROLLBACK_COMPLETE, so
        // it is a status that came back: a change.
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&fresh(), "web", "uuid-1", "UPDATE_COMPLETE").await;
        assert!(sets_status(&reply));
        // Against the index's answer a new place is free-looking; the put into it fails and
        // the delivery is placed after the head.
        clock.advance(chrono::Duration::seconds(10));
        let reply = send_to(&fresh(), "web", "uuid-1", "CHECK_COMPLETE").await;
        assert_eq!(reply["sets_status"], true);
        // And a retry of the head is a retry, not a change.
        clock.advance(chrono::Duration::seconds(10));
        assert_eq!(
            send_to(&fresh(), "web", "uuid-1", "CHECK_COMPLETE").await["status"],
            "duplicate"
        );
        *probe.stale_latest.lock().unwrap() = None;
        let status = json_of(&hook.handle(get("/stacks/web")).await);
        assert_eq!(status["status"], "CHECK_COMPLETE");
        assert_eq!(store.len(), 5);
    }

    #[tokio::test]
    async fn with_a_retention_period_a_creation_reads_the_chain_first() {
        let (interleaved, _store, requests) = interleaved();
        let (hook, _clock) = hook_with_ttl(interleaved, Some(API_TOKEN), Some(30));
        assert_eq!(
            send_to(&hook, "web", "uuid-1", "CREATE_COMPLETE").await["status"],
            "stored"
        );
        let (reads, writes) = requests.take();
        assert!(reads >= 1, "no read before the first place ({reads})");
        assert_eq!(writes, 1);
    }

    #[tokio::test]
    async fn racing_copies_of_a_new_stacks_creation_store_one_event() {
        let (interleaved, store, _) = interleaved();
        let (hook, _clock) = hook_over(interleaved, Some(API_TOKEN));
        let replies = futures_join5(
            send_to(&hook, "fresh", "id-1", "CREATE_COMPLETE"),
            send_to(&hook, "fresh", "id-1", "CREATE_COMPLETE"),
            send_to(&hook, "fresh", "id-1", "CREATE_COMPLETE"),
            send_to(&hook, "fresh", "id-1", "CREATE_COMPLETE"),
            send_to(&hook, "fresh", "id-1", "CREATE_COMPLETE"),
        )
        .await;
        let stored = replies.iter().filter(|r| r["status"] == "stored").count();
        assert_eq!(stored, 1, "{replies:?}");
        assert_eq!(store.len(), 1);
    }

    // A name whose chain is longer than one walk: a new stack under it is placed after the
    // chain's head, not refused (the taken first place is not where the walk starts).
    #[tokio::test]
    async fn a_stack_created_again_under_a_long_lived_name_becomes_its_status() {
        let (interleaved, _store, _) = interleaved();
        let (hook, clock) = hook_over(interleaved, Some(API_TOKEN));
        assert_eq!(
            send_to(&hook, "ci", "id-1", "CREATE_COMPLETE").await["status"],
            "stored"
        );
        for n in 0..(crate::receive::MAX_WALK + 8) {
            clock.advance(chrono::Duration::minutes(1));
            let status = if n % 2 == 0 {
                "UPDATE_COMPLETE"
            } else {
                "ROLLBACK_COMPLETE"
            };
            assert_eq!(
                send_to(&hook, "ci", "id-1", status).await["status"],
                "stored"
            );
        }
        clock.advance(chrono::Duration::minutes(1));
        assert_eq!(
            send_to(&hook, "ci", "id-1", "DELETE_COMPLETE").await["status"],
            "stored"
        );
        clock.advance(chrono::Duration::minutes(1));
        let reply = send_to(&hook, "ci", "id-2", "CREATE_COMPLETE").await;
        assert!(sets_status(&reply));
        let status = json_of(&hook.handle(get("/stacks/ci")).await);
        assert_eq!(
            (status["status"].as_str(), status["stack_id"].as_str()),
            (Some("CREATE_COMPLETE"), Some("id-2"))
        );
        // The first stack's creation, replayed now, is history.
        clock.advance(chrono::Duration::hours(1));
        let reply = send_to(&hook, "ci", "id-1", "CREATE_COMPLETE").await;
        assert_eq!(reply["sets_status"], false);
        assert_eq!(
            json_of(&hook.handle(get("/stacks/ci")).await)["stack_id"],
            "id-2"
        );
    }

    async fn futures_join5<F: std::future::Future>(a: F, b: F, c: F, d: F, e: F) -> [F::Output; 5] {
        let (a, b, c, d, e) = tokio::join!(a, b, c, d, e);
        [a, b, c, d, e]
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
