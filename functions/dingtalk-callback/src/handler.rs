//! `POST /dingtalk`: verify, decrypt, store, and answer the encrypted "success".

use crate::crypto::{CryptoError, DingTalkCrypto};
use crate::events;
use http::{Method, StatusCode};
use hub_core::clock::Clock;
use hub_core::config::EdgeConfig;
use hub_core::event::{content_id, Event, Source};
use hub_core::http::{json_response, query_param, raw_body, require_method, respond, ApiError};
use hub_core::store::{EventWriter, PutOutcome};
use lambda_http::{Body, Request, Response};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;

pub struct DingTalkHandler<S, C> {
    store: S,
    clock: C,
    crypto: DingTalkCrypto,
    edge: EdgeConfig,
}

/// The signed query: both spellings DingTalk uses (`msg_signature ?? signature`,
/// `timeStamp ?? timestamp`), as the official SDK README orders them.
struct SignedQuery {
    signature: String,
    timestamp: String,
    nonce: String,
}

fn signed_query(request: &Request) -> Result<SignedQuery, ApiError> {
    let first = |names: &[&str]| names.iter().find_map(|name| query_param(request, name));
    match (
        first(&["msg_signature", "signature"]),
        first(&["timeStamp", "timestamp"]),
        first(&["nonce"]),
    ) {
        (Some(signature), Some(timestamp), Some(nonce)) => Ok(SignedQuery {
            signature,
            timestamp,
            nonce,
        }),
        _ => Err(ApiError::forbidden("missing signature, timestamp or nonce")),
    }
}

/// The `encrypt` string of the body. The body must be read to find what the signature covers;
/// an unreadable body cannot be authenticated, so it is refused as forbidden.
fn encrypt_field(body: &[u8]) -> Result<String, ApiError> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        encrypt: String,
    }
    serde_json::from_slice::<Envelope>(body)
        .map(|e| e.encrypt)
        .map_err(|_| ApiError::forbidden("body has no encrypt field to verify"))
}

impl<S: EventWriter, C: Clock> DingTalkHandler<S, C> {
    pub fn new(store: S, clock: C, crypto: DingTalkCrypto, edge: EdgeConfig) -> Self {
        DingTalkHandler {
            store,
            clock,
            crypto,
            edge,
        }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.receive(&request).await)
    }

    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_method(request, &[Method::POST], "POST")?;
        let query = signed_query(request)?;
        let body = raw_body(request, self.edge.max_body_bytes)?;
        let encrypt = encrypt_field(body)?;
        self.crypto
            .verify(&query.signature, &query.timestamp, &query.nonce, &encrypt)
            .map_err(|_| ApiError::forbidden("signature mismatch"))?;

        let plaintext = self.crypto.decrypt(&encrypt).map_err(|e: CryptoError| {
            ApiError::bad_request(match e {
                CryptoError::OwnerKeyMismatch => "owner key mismatch",
                _ => "content could not be decrypted",
            })
        })?;
        let event = match serde_json::from_slice::<Value>(&plaintext) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(ApiError::bad_request(
                    "decrypted content is not a JSON object",
                ))
            }
        };
        let Some(event_type) = event
            .get("EventType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(ApiError::bad_request("decrypted content has no EventType"));
        };
        tracing::debug!(event_type, plaintext = %String::from_utf8_lossy(&plaintext), "decrypted callback");

        if events::is_url_check(event_type) {
            tracing::info!(event_type, "url check answered");
            return Ok(hub_core::metrics::Outcome::Handshake.mark(self.reply()));
        }
        let stored = Event::new(
            Source::Dingtalk,
            // The plaintext holds a fresh random prefix per push, but the message does not: a
            // retry of one push is one event, and a task event never shares its instance's key.
            content_id(&[&plaintext]),
            event_type,
            events::subject(event_type, &event, self.crypto.owner_key()),
            String::from_utf8_lossy(&plaintext).into_owned(),
            self.clock.now(),
        )
        .occurred_at(events::occurred_at(&event));
        let outcome = hub_core::metrics::time_store(self.store.put_event(&stored)).await?;
        tracing::info!(
            source = "dingtalk",
            event_type,
            event_id = %stored.event_id,
            duplicate = outcome == PutOutcome::Duplicate,
            "dingtalk event accepted"
        );
        Ok(match outcome {
            PutOutcome::Stored => self.reply(),
            PutOutcome::Duplicate => hub_core::metrics::Outcome::Duplicate.mark(self.reply()),
        })
    }

    /// The encrypted "success", with a fresh nonce and the current time in milliseconds.
    fn reply(&self) -> Response<Body> {
        let nonce = Alphanumeric.sample_string(&mut rand::rng(), 12);
        let reply = self
            .crypto
            .success_reply(self.clock.now().timestamp_millis().to_string(), nonce);
        json_response(
            StatusCode::OK,
            &serde_json::to_value(reply).expect("reply serializes"),
        )
    }
}
impl<S: EventWriter + 'static, C: Clock + 'static> hub_core::http::Handler
    for DingTalkHandler<S, C>
{
    async fn handle(&self, request: Request) -> Response<Body> {
        DingTalkHandler::handle(self, request).await
    }
    fn source(&self) -> Option<hub_core::Source> {
        Some(Source::Dingtalk)
    }
}
