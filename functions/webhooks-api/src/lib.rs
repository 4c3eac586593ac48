//! webhooks-api: the management API of outbound event webhooks (issue 17), with Tsuru's shapes
//! and status codes (`docs/protocols.md` §5.1) under `/webhooks`, and `/events/webhooks` and
//! `/1.6/events/webhooks` as aliases so that Tsuru clients work:
//!
//! | request | answer |
//! |---|---|
//! | `GET /webhooks` | 200 with the subscriptions (secrets redacted), 204 when there are none |
//! | `POST /webhooks` | 200 with the created subscription, its secret shown this once; 400 invalid (a body template that does not parse included); 409 name taken |
//! | `GET /webhooks/{name}` | 200 (redacted); 404 |
//! | `PUT /webhooks/{name}` | replaces the whole subscription, the name from the path: 200 (redacted); 400; 404 |
//! | `DELETE /webhooks/{name}` | 200; 404 |
//! | `GET /webhooks/{name}/deliveries?limit=&cursor=` | 200 `{"deliveries": [...], "next": cursor or null}`, newest first, each with its attempts |
//! | `POST /webhooks/{name}/replay` | `{"delivery": id}` or `{"since": RFC 3339}`: 200 `{"replayed": n, "deliveries": [ids], "limit_reached": bool}`; 404 unknown delivery |
//! | `POST /webhooks/{name}/test` | delivers a sample event now: 200 `{"webhook_id", "verdict", "attempt"}` |
//!
//! Every request needs `Authorization: Bearer <API_TOKEN>`: 401 without the right one, 503
//! when `API_TOKEN` is unset (checked before anything else, so that nothing about the
//! subscriptions, not even whether a name exists, is answered to a stranger).

use http::{Method, StatusCode};
use hub_core::auth::require_api_token;
use hub_core::clock::{Clock, SystemClock};
use hub_core::config::{ConfigError, Secret};
use hub_core::event::parse_time;
use hub_core::http::{
    empty_response, json_response, query_param, raw_body, respond, ApiError, Handler,
};
use hub_core::setup::Setup;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use webhooks::engine::{replay, test_delivery, ReplayError, ReplayTarget};
use webhooks::store::{
    DeliveryQueue, DeliveryStore, Found, PageRequest, SubscriptionCreate, SubscriptionStore,
    WebhooksSource,
};
use webhooks::{Sender, SenderConfig, Subscription, ValidationPolicy};

/// The path prefixes the API answers under, longest first.
pub const PREFIXES: [&str; 3] = ["/1.6/events/webhooks", "/events/webhooks", "/webhooks"];
/// Deliveries per page when the request does not say.
pub const DEFAULT_PAGE: u32 = 20;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'p> {
    Collection,
    One(&'p str),
    Deliveries(&'p str),
    Replay(&'p str),
    Test(&'p str),
}

impl<'p> Endpoint<'p> {
    /// The endpoint a request path names, under any of the [`PREFIXES`].
    pub fn of(path: &'p str) -> Option<Endpoint<'p>> {
        let rest = PREFIXES
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix))?;
        if rest.is_empty() {
            return Some(Endpoint::Collection);
        }
        let mut parts = rest.strip_prefix('/')?.split('/');
        let name = parts.next().filter(|n| !n.is_empty())?;
        let endpoint = match (parts.next(), parts.next()) {
            (None, _) => Endpoint::One(name),
            (Some("deliveries"), None) => Endpoint::Deliveries(name),
            (Some("replay"), None) => Endpoint::Replay(name),
            (Some("test"), None) => Endpoint::Test(name),
            _ => return None,
        };
        Some(endpoint)
    }
}

/// The handler, over the webhook stores, a queue told about replayed deliveries, and a clock.
pub struct WebhooksApi<S, Q, C = SystemClock> {
    store: S,
    queue: Q,
    sender: Arc<Sender>,
    policy: ValidationPolicy,
    api_token: Option<Secret>,
    clock: C,
    max_body_bytes: usize,
}

impl<S, Q, C> WebhooksApi<S, Q, C> {
    pub fn new(
        store: S,
        queue: Q,
        sender: Arc<Sender>,
        api_token: Option<Secret>,
        clock: C,
        max_body_bytes: usize,
    ) -> Self {
        let policy = sender.config().policy.clone();
        WebhooksApi {
            store,
            queue,
            sender,
            policy,
            api_token,
            clock,
            max_body_bytes,
        }
    }
}

/// Reads the whole configuration once (`API_TOKEN`, `WEBHOOKS_PROXY_URLS`,
/// `WEBHOOKS_ALLOW_PRIVATE_NETWORKS` and the webhook stores' own variables) and builds the
/// handler beside `store`.
pub async fn build<E: WebhooksSource>(
    store: E,
    setup: &Setup,
) -> Result<WebhooksApi<E::Store, E::Queue>, ConfigError> {
    let (hooks, queue) = store.webhook_stores(setup).await?;
    let sender = Arc::new(Sender::new(SenderConfig::from_vars(setup)?));
    let api_token = setup.api_token().await?;
    Ok(WebhooksApi::new(
        hooks,
        queue,
        sender,
        api_token,
        SystemClock,
        setup.edge().max_body_bytes,
    ))
}

const COLLECTION_METHODS: &str = "GET, POST";
const ONE_METHODS: &str = "GET, PUT, DELETE";

fn conflict(message: &str) -> Response<Body> {
    json_response(
        StatusCode::CONFLICT,
        &json!({"error": "conflict", "message": message}),
    )
}

fn not_found() -> ApiError {
    ApiError::NotFound("no such webhook".into())
}

fn parse_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|_| ApiError::Internal)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    delivery: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

impl<S, Q, C> WebhooksApi<S, Q, C>
where
    S: SubscriptionStore + DeliveryStore + 'static,
    Q: DeliveryQueue + 'static,
    C: Clock + 'static,
{
    async fn route(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_api_token(request, self.api_token.as_ref())?;
        let endpoint = Endpoint::of(request.uri().path())
            .ok_or_else(|| ApiError::NotFound("no such route".into()))?;
        let method = request.method();
        match (endpoint, method) {
            (Endpoint::Collection, &Method::GET) => self.list().await,
            (Endpoint::Collection, &Method::POST) => self.create(request).await,
            (Endpoint::Collection, _) => Err(ApiError::MethodNotAllowed {
                allow: COLLECTION_METHODS,
            }),
            (Endpoint::One(name), &Method::GET) => self.get(name).await,
            (Endpoint::One(name), &Method::PUT) => self.replace(name, request).await,
            (Endpoint::One(name), &Method::DELETE) => self.delete(name).await,
            (Endpoint::One(_), _) => Err(ApiError::MethodNotAllowed { allow: ONE_METHODS }),
            (Endpoint::Deliveries(name), &Method::GET) => self.deliveries(name, request).await,
            (Endpoint::Deliveries(_), _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
            (Endpoint::Replay(name), &Method::POST) => self.replay(name, request).await,
            (Endpoint::Test(name), &Method::POST) => self.test(name).await,
            (Endpoint::Replay(_) | Endpoint::Test(_), _) => {
                Err(ApiError::MethodNotAllowed { allow: "POST" })
            }
        }
    }

    async fn existing(&self, name: &str) -> Result<Subscription, ApiError> {
        self.store
            .get_subscription(name)
            .await?
            .ok_or_else(not_found)
    }

    async fn list(&self) -> Result<Response<Body>, ApiError> {
        let all = self.store.list_subscriptions().await?;
        if all.is_empty() {
            return Ok(empty_response(StatusCode::NO_CONTENT));
        }
        let shown: Vec<_> = all.iter().map(Subscription::redacted).collect();
        Ok(json_response(StatusCode::OK, &to_json(&shown)?))
    }

    async fn create(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.max_body_bytes)?;
        let input: Subscription = parse_body(body)?;
        let subscription = input
            .prepare_new(&self.policy, self.clock.now())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        match self.store.create_subscription(&subscription).await? {
            SubscriptionCreate::NameTaken => {
                Ok(conflict("a webhook with this name already exists"))
            }
            SubscriptionCreate::Created => {
                tracing::info!(webhook = %subscription.name, "webhook created");
                // The one answer that shows the secret.
                Ok(json_response(StatusCode::OK, &to_json(&subscription)?))
            }
        }
    }

    async fn get(&self, name: &str) -> Result<Response<Body>, ApiError> {
        let subscription = self.existing(name).await?;
        Ok(json_response(
            StatusCode::OK,
            &to_json(&subscription.redacted())?,
        ))
    }

    async fn replace(&self, name: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.max_body_bytes)?;
        let input: Subscription = parse_body(body)?;
        let existing = self.existing(name).await?;
        let replacement = input
            .prepare_replacement(&existing, &self.policy, self.clock.now())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        match self.store.replace_subscription(&replacement).await? {
            Found::No => Err(not_found()),
            Found::Yes => {
                tracing::info!(webhook = %name, "webhook replaced");
                Ok(json_response(
                    StatusCode::OK,
                    &to_json(&replacement.redacted())?,
                ))
            }
        }
    }

    async fn delete(&self, name: &str) -> Result<Response<Body>, ApiError> {
        match self.store.delete_subscription(name).await? {
            Found::No => Err(not_found()),
            Found::Yes => {
                tracing::info!(webhook = %name, "webhook deleted");
                Ok(empty_response(StatusCode::OK))
            }
        }
    }

    async fn deliveries(&self, name: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        self.existing(name).await?;
        let limit = match query_param(request, "limit") {
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::bad_request("limit must be a positive number"))?,
            None => DEFAULT_PAGE,
        };
        let page = PageRequest {
            limit,
            cursor: query_param(request, "cursor"),
        };
        let found = self.store.list_deliveries(name, &page).await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({"deliveries": to_json(&found.deliveries)?, "next": found.next}),
        ))
    }

    async fn replay(&self, name: &str, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.max_body_bytes)?;
        let input: ReplayRequest = parse_body(body)?;
        let target = match (input.delivery, input.since) {
            (Some(id), None) if !id.is_empty() => ReplayTarget::Delivery(id),
            (None, Some(since)) => ReplayTarget::FailedSince(
                parse_time(&since)
                    .ok_or_else(|| ApiError::bad_request("since must be an RFC 3339 time"))?,
            ),
            _ => {
                return Err(ApiError::bad_request(
                    "give either delivery (an id) or since (an RFC 3339 time)",
                ))
            }
        };
        self.existing(name).await?;
        let replayed = match replay(&self.store, &self.queue, name, &target, self.clock.now()).await
        {
            Ok(replayed) => replayed,
            Err(ReplayError::UnknownDelivery) => {
                return Err(ApiError::NotFound("no such delivery".into()))
            }
            Err(ReplayError::Store(e)) => return Err(e.into()),
        };
        let ids: Vec<&str> = replayed.iter().map(|d| d.id.as_str()).collect();
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "replayed": ids.len(),
                "deliveries": ids,
                "limit_reached": ids.len() >= webhooks::engine::MAX_REPLAY,
            }),
        ))
    }

    async fn test(&self, name: &str) -> Result<Response<Body>, ApiError> {
        let subscription = self.existing(name).await?;
        let now = self.clock.now();
        let (webhook_id, attempt) = test_delivery(&self.sender, &subscription, now).await;
        tracing::info!(webhook = %name, status = ?attempt.status, "test delivery");
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "webhook_id": webhook_id,
                "verdict": attempt.verdict(),
                "attempt": to_json(&attempt)?,
            }),
        ))
    }
}

impl<S, Q, C> Handler for WebhooksApi<S, Q, C>
where
    S: SubscriptionStore + DeliveryStore + 'static,
    Q: DeliveryQueue + 'static,
    C: Clock + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.route(&request).await)
    }
}

#[cfg(test)]
mod tests;
