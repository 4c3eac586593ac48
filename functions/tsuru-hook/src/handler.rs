//! `POST /tsuru` (also PUT and PATCH): check the token, read the event (§5.4), store it once,
//! answer 200. Tsuru sends each event once, waits at most 60 s and never retries (§5.3): the only
//! work before the reply is the conditional write, and an event that could not be stored is
//! logged at error level with its `UniqueID` ([`NOT_STORED_LOG`]) so that an operator can re-send
//! it.

use crate::access;
use crate::body::{self, BodyError};
use crate::TsuruConfig;
use http::{Method, StatusCode};
use hub_core::clock::Clock;
use hub_core::event::{Event, Source};
use hub_core::http::{json_response, raw_body, require_method, respond, ApiError};
use hub_core::store::{EventWriter, PutOutcome, StoreError};
use lambda_http::{Body, Request, Response};
use serde_json::json;

/// The message of the error line logged for an event that was refused by the store; the
/// template's `TsuruNotStored` metric filter counts these lines.
pub const NOT_STORED_LOG: &str = "tsuru event not stored";

/// The methods Tsuru sends the default JSON body with (§5.3).
const ALLOW: &str = "POST, PUT, PATCH";

pub struct TsuruHook<S, C> {
    store: S,
    clock: C,
    config: TsuruConfig,
}

impl<S: EventWriter, C: Clock> TsuruHook<S, C> {
    pub fn new(store: S, clock: C, config: TsuruConfig) -> Self {
        TsuruHook {
            store,
            clock,
            config,
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.receive(&request).await)
    }

    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        // Other methods carry no body at all (§5.3): nothing to store.
        require_method(request, &[Method::POST, Method::PUT, Method::PATCH], ALLOW)?;
        // The token first: without it not a byte of the body is read.
        access::require_token(request, &self.config.token).map_err(|e| {
            tracing::warn!(reason = %e, "tsuru event refused: token");
            ApiError::forbidden(e.to_string())
        })?;
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        let tsuru =
            body::parse(body).map_err(|e: BodyError| ApiError::bad_request(e.to_string()))?;
        let event = Event::new(
            Source::Tsuru,
            tsuru.unique_id.clone(),
            tsuru.kind_name.clone(),
            tsuru.subject(),
            tsuru.payload.clone(),
            self.clock.now(),
        )
        .occurred_at(tsuru.occurred_at);
        let outcome = match hub_core::metrics::time_store(self.store.put_event(&event)).await {
            Ok(outcome) => outcome,
            Err(err) => {
                not_stored(&tsuru, &err);
                return Err(err.into());
            }
        };
        tracing::info!(
            source = "tsuru",
            event_id = %event.event_id,
            kind = %event.event_type,
            subject = %event.subject,
            failed = tsuru.failed(),
            duplicate = outcome == PutOutcome::Duplicate,
            "tsuru event accepted"
        );
        let status = match outcome {
            PutOutcome::Stored => "stored",
            PutOutcome::Duplicate => "duplicate",
        };
        let response = json_response(
            StatusCode::OK,
            &json!({"status": status, "event_id": event.event_id}),
        );
        Ok(match outcome {
            PutOutcome::Stored => response,
            PutOutcome::Duplicate => hub_core::metrics::Outcome::Duplicate.mark(response),
        })
    }
}

/// Tsuru will not send this event again: say which one was lost. A too-large event cannot be
/// stored by any re-send, so it is a warning, not the line the alarm counts.
fn not_stored(event: &body::TsuruEvent, err: &StoreError) {
    match err {
        StoreError::TooLarge { .. } => tracing::warn!(
            source = "tsuru",
            event_id = %event.unique_id,
            kind = %event.kind_name,
            error = %err,
            "tsuru event too large to store"
        ),
        _ => tracing::error!(
            source = "tsuru",
            event_id = %event.unique_id,
            kind = %event.kind_name,
            subject = %event.subject(),
            error = %err,
            "{}",
            NOT_STORED_LOG
        ),
    }
}

impl<S, C> hub_core::http::Handler for TsuruHook<S, C>
where
    S: EventWriter + 'static,
    C: Clock + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        TsuruHook::handle(self, request).await
    }
    fn source(&self) -> Option<hub_core::Source> {
        Some(Source::Tsuru)
    }
}

#[cfg(test)]
mod tests {
    //! Through the handler with the memory store and a fixed clock.
    use super::*;
    use hub_core::clock::FixedClock;
    use hub_core::config::{EdgeConfig, Secret};
    use hub_core::store::memory::MemoryStore;
    use serde_json::Value;
    use std::sync::{Arc, Mutex};

    const TOKEN: &str = "local-tsuru-webhook-token-0001";
    const ID: &str = "65e1c2d3a4b5c6d7e8f90123";
    const NOW: &str = "2024-03-01T12:00:01Z";

    fn hook(max_body_bytes: usize) -> TsuruHook<Arc<MemoryStore>, FixedClock> {
        let edge = EdgeConfig {
            max_body_bytes,
            ..EdgeConfig::default()
        };
        let config = TsuruConfig::new(edge, Secret::new(TOKEN), "TSURU_WEBHOOK_TOKEN").unwrap();
        let clock = FixedClock::at(hub_core::event::parse_time(NOW).unwrap());
        TsuruHook::new(Arc::new(MemoryStore::new()), clock, config)
    }

    fn event(id: &str, error: &str) -> Value {
        json!({
            "UniqueID": id,
            "Lock": null,
            "StartTime": "2024-03-01T11:58:02.481516Z",
            "EndTime": "2024-03-01T12:00:00.913274Z",
            "Target": {"Type": "app", "Value": "myapp"},
            "Kind": {"Type": "permission", "Name": "app.deploy"},
            "Error": error,
            "SomethingNew": {"kept": true}
        })
    }

    fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::Text(body.to_owned())).unwrap()
    }

    fn bearer() -> String {
        format!("Bearer {TOKEN}")
    }

    fn post(body: &str) -> Request {
        request("POST", "/tsuru", &[("authorization", &bearer())], body)
    }

    fn json_of(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("a text body, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_event_is_stored_once_and_every_delivery_answers_200() {
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        let body = event(ID, "").to_string();
        let first = hook.handle(post(&body)).await;
        assert_eq!(first.status(), 200);
        assert_eq!(json_of(&first), json!({"status": "stored", "event_id": ID}));
        for method in ["POST", "PUT", "PATCH"] {
            let again = hook
                .handle(request(
                    method,
                    "/tsuru",
                    &[("authorization", &bearer())],
                    &body,
                ))
                .await;
            assert_eq!(again.status(), 200, "{method}");
            assert_eq!(
                json_of(&again),
                json!({"status": "duplicate", "event_id": ID})
            );
        }
        let stored = hook.store().all();
        assert_eq!(stored.len(), 1);
        let e = &stored[0];
        assert_eq!(e.source, Source::Tsuru);
        assert_eq!(e.event_id, ID);
        assert_eq!(e.event_type, "app.deploy");
        assert_eq!(e.subject, "app/myapp");
        assert_eq!(
            e.occurred_at.map(hub_core::event::format_time).as_deref(),
            Some("2024-03-01T12:00:00.913Z")
        );
        assert_eq!(
            hub_core::event::format_time(e.received_at),
            "2024-03-01T12:00:01.000Z"
        );
        assert_eq!(
            e.payload, body,
            "the event as sent, unknown fields included"
        );
    }

    #[tokio::test]
    async fn without_the_token_nothing_is_read_not_even_a_broken_body() {
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        let good = event(ID, "").to_string();
        let huge = "x".repeat(EdgeConfig::DEFAULT_MAX_BODY_BYTES + 1);
        for (headers, uri, body, message) in [
            (vec![], "/tsuru", good.as_str(), "missing webhook token"),
            (
                vec![("authorization", "Bearer nope")],
                "/tsuru",
                &good,
                "invalid webhook token",
            ),
            (
                vec![("x-callback-token", "nope")],
                "/tsuru",
                &good,
                "invalid webhook token",
            ),
            (vec![], "/tsuru?token=nope", &good, "invalid webhook token"),
            (vec![], "/tsuru", "{not json", "missing webhook token"),
            (
                vec![("authorization", "Bearer nope")],
                "/tsuru",
                "[]",
                "invalid webhook token",
            ),
            (vec![], "/tsuru", &huge, "missing webhook token"),
        ] {
            let response = hook.handle(request("POST", uri, &headers, body)).await;
            assert_eq!(response.status(), 403, "{headers:?} {uri}");
            let reply = json_of(&response);
            assert_eq!(reply["error"], "forbidden");
            assert_eq!(reply["message"], message);
        }
        assert!(hook.store().is_empty());
    }

    #[tokio::test]
    async fn each_way_of_presenting_the_token_is_accepted() {
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        let ids = [
            "65e1c2d3a4b5c6d7e8f90001",
            "65e1c2d3a4b5c6d7e8f90002",
            "65e1c2d3a4b5c6d7e8f90003",
        ];
        let bearer = bearer();
        let query = format!("/tsuru?token={TOKEN}");
        let ways: [(&str, Vec<(&str, &str)>); 3] = [
            ("/tsuru", vec![("authorization", bearer.as_str())]),
            ("/tsuru", vec![("x-callback-token", TOKEN)]),
            (query.as_str(), vec![]),
        ];
        for (id, (uri, headers)) in ids.iter().zip(ways) {
            let response = hook
                .handle(request("POST", uri, &headers, &event(id, "").to_string()))
                .await;
            assert_eq!(response.status(), 200, "{uri} {headers:?}");
        }
        assert_eq!(hook.store().len(), 3);
    }

    #[tokio::test]
    async fn other_methods_are_405_with_allow() {
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        for method in ["GET", "DELETE", "HEAD", "OPTIONS"] {
            let response = hook
                .handle(request(
                    method,
                    "/tsuru",
                    &[("authorization", &bearer())],
                    "",
                ))
                .await;
            assert_eq!(response.status(), 405, "{method}");
            assert_eq!(response.headers()["allow"], "POST, PUT, PATCH");
        }
        assert!(hook.store().is_empty());
    }

    #[tokio::test]
    async fn malformed_events_are_400_and_not_stored() {
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        let mut no_kind = event(ID, "");
        no_kind["Kind"] = json!({"Type": "permission"});
        let mut no_target = event(ID, "");
        no_target.as_object_mut().unwrap().remove("Target");
        let mut long_target = event(ID, "");
        long_target["Target"]["Value"] = "v".repeat(5000).into();
        for body in [
            String::new(),
            "app.deploy event for app named myapp".into(),
            format!("[{}]", event(ID, "")),
            event("65e1c2d3a4b5c6d7e8f9012", "").to_string(),
            event("zze1c2d3a4b5c6d7e8f90123", "").to_string(),
            no_kind.to_string(),
            no_target.to_string(),
            long_target.to_string(),
            format!(
                r#"{{"UniqueID":"{ID}","UniqueID":"65e1c2d3a4b5c6d7e8f90999","Kind":{{"Name":"a"}},"Target":{{"Type":"app","Value":"x"}}}}"#
            ),
        ] {
            let response = hook.handle(post(&body)).await;
            assert_eq!(response.status(), 400, "{body:.80}");
            assert_eq!(json_of(&response)["error"], "bad_request");
        }
        assert!(hook.store().is_empty());
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_413_after_the_token() {
        let body = event(ID, "").to_string();
        let hook = hook(body.len() - 1);
        assert_eq!(hook.handle(post(&body)).await.status(), 413);
        assert!(hook.store().is_empty());
        let hook = self::hook(body.len());
        assert_eq!(hook.handle(post(&body)).await.status(), 200);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_store_outage_is_503_and_names_the_lost_event_at_error_level() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let hook = hook(EdgeConfig::DEFAULT_MAX_BODY_BYTES);
        hook.store().set_unavailable(true);
        let response = hook
            .handle(post(&event(ID, "exit status 1").to_string()))
            .await;
        assert_eq!(response.status(), 503);
        assert_eq!(json_of(&response)["error"], "unavailable");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        let lost = lines
            .iter()
            .find(|line| line["message"] == NOT_STORED_LOG)
            .unwrap_or_else(|| panic!("no error line: {text}"));
        assert_eq!(lost["level"], "ERROR");
        assert_eq!(lost["event_id"], ID);
        assert_eq!(lost["source"], "tsuru");
        assert_eq!(lost["subject"], "app/myapp");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(
            !text.contains("exit status 1"),
            "no payload in the logs: {text}"
        );
        hook.store().set_unavailable(false);
        assert_eq!(
            hook.handle(post(&event(ID, "").to_string())).await.status(),
            200
        );
    }
}
