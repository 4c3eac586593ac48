//! web-console: the web console (issue 20) and the read API it uses.
//!
//! | request | answer |
//! |---|---|
//! | `GET /console`, `GET /console/{asset}` | the console's static files, embedded in the binary; no token (they hold no data) |
//! | `GET /events?source=&type=&subject=&since=&until=&limit=&cursor=` | 200 `{"events": [...], "next": cursor or null}`, newest first |
//! | `GET /events/stats` | 200: events per source per hour over 24 h and per day over 7 days |
//! | `GET /events/{source}/{event_id}` | 200 `{"event": {..., "payload": decoded}, "deliveries": [...]}`; 404 |
//!
//! Every `/events` request needs `Authorization: Bearer <API_TOKEN>` (401 otherwise, 503 when
//! `API_TOKEN` is unset), checked before anything is read. The console page keeps the token in
//! session storage and sends it in that header only, never in a URL.

pub mod assets;
pub mod events;

use http::{header, HeaderValue, Method};
use hub_core::auth::require_api_token;
use hub_core::clock::{Clock, SystemClock};
use hub_core::config::{ConfigError, Secret};
use hub_core::event::Source;
use hub_core::http::{require_method, respond, ApiError, Handler};
use hub_core::setup::Setup;
use hub_core::store::{EventLookup, RecentEvents, SubjectHistory};
use lambda_http::{Body, Request, Response};
use percent_encoding::percent_decode_str;
use webhooks::store::{DeliveryStore, SubscriptionStore, WebhooksSource};

/// What the console reads from the event store.
pub trait ConsoleStore: EventLookup + SubjectHistory + RecentEvents {}
impl<T: EventLookup + SubjectHistory + RecentEvents> ConsoleStore for T {}

/// What the console reads from the webhook stores: subscriptions and their deliveries.
pub trait ConsoleDeliveries: SubscriptionStore + DeliveryStore {}
impl<T: SubscriptionStore + DeliveryStore> ConsoleDeliveries for T {}

pub struct WebConsole<S, D, C = SystemClock> {
    pub(crate) store: S,
    /// The webhook stores, or why they are not configured: event details then say so instead
    /// of listing deliveries, and everything else keeps working.
    pub(crate) deliveries: Result<D, String>,
    api_token: Option<Secret>,
    pub(crate) clock: C,
}

/// The console over the function's store: the event store it is given, the webhook stores beside
/// it (`WebhooksSource`), and `API_TOKEN`. A missing webhooks configuration does not disable
/// the console: event details then report deliveries as unavailable.
pub async fn build<E: ConsoleStore + WebhooksSource>(
    store: E,
    setup: &Setup,
) -> Result<WebConsole<E, E::Store>, ConfigError> {
    let api_token = setup.api_token().await?;
    let deliveries = match store.webhook_stores(setup).await {
        Ok((hooks, _queue)) => Ok(hooks),
        Err(err) => {
            tracing::info!(reason = %err, "console shows no deliveries");
            Err(err.to_string())
        }
    };
    Ok(WebConsole::new(store, deliveries, api_token, SystemClock))
}

/// What a request path names, after an optional stage prefix (`/prod/console`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Asset(String),
    /// `/console/` or `/console/index.html`: redirected to `/console`.
    ToPage,
    Events,
    Stats,
    Event(String, String),
    /// A path that tries to leave the assets (`..`, a separator in a name).
    BadAsset,
    Unknown,
}

pub(crate) fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(start) = segments
        .iter()
        .position(|s| *s == "console" || *s == "events")
    else {
        return Route::Unknown;
    };
    let decoded: Vec<String> = segments[start + 1..]
        .iter()
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    if segments[start] == "console" {
        // The page names its files relative to `/console` (`console/console.js`), which only
        // resolves from `/console` itself: the other spellings of the page are sent there.
        if matches!(decoded.as_slice(), [] | [_])
            && (path.ends_with('/') || path.ends_with("/index.html"))
        {
            return Route::ToPage;
        }
        if decoded
            .iter()
            .any(|s| s.contains("..") || s.contains('/') || s.contains('\\') || s.contains('\0'))
        {
            return Route::BadAsset;
        }
        return match decoded.as_slice() {
            [] => Route::Asset("index.html".into()),
            [name] => Route::Asset(name.clone()),
            _ => Route::Unknown,
        };
    }
    match decoded.as_slice() {
        [] => Route::Events,
        [stats] if stats == "stats" => Route::Stats,
        [source, id] if !id.is_empty() => Route::Event(source.clone(), id.clone()),
        _ => Route::Unknown,
    }
}

impl<S: ConsoleStore, D: ConsoleDeliveries, C: Clock> WebConsole<S, D, C> {
    pub fn new(
        store: S,
        deliveries: Result<D, String>,
        api_token: Option<Secret>,
        clock: C,
    ) -> Self {
        WebConsole {
            store,
            deliveries,
            api_token,
            clock,
        }
    }

    async fn dispatch(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_method(request, &[Method::GET, Method::HEAD], "GET, HEAD")?;
        let route = route(request.uri().path());
        if let Route::Asset(name) = &route {
            return assets::serve(name).ok_or_else(|| ApiError::NotFound("no such asset".into()));
        }
        if route == Route::ToPage {
            return Ok(assets::to_page());
        }
        if route == Route::BadAsset {
            return Err(ApiError::bad_request("invalid asset name"));
        }
        if route == Route::Unknown {
            return Err(ApiError::NotFound("no such route".into()));
        }
        // Payloads are everything a sender sent: users with the API token only, checked before
        // anything is read. Unset, closed (503).
        require_api_token(request, self.api_token.as_ref())?;
        match route {
            Route::Events => self.list(request).await,
            Route::Stats => self.stats().await,
            Route::Event(source, id) => {
                let source: Source = source
                    .parse()
                    .map_err(|_| ApiError::NotFound("unknown source".into()))?;
                self.detail(source, &id).await
            }
            Route::Asset(_) | Route::ToPage | Route::BadAsset | Route::Unknown => {
                unreachable!("handled above")
            }
        }
    }
}

/// Data answers hold stored payloads: never cached, never sniffed.
fn private(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

impl<S, D, C> Handler for WebConsole<S, D, C>
where
    S: ConsoleStore + 'static,
    D: ConsoleDeliveries + 'static,
    C: Clock + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        let response = respond(self.dispatch(&request).await);
        if response
            .headers()
            .contains_key(header::CONTENT_SECURITY_POLICY)
        {
            response
        } else {
            private(response)
        }
    }
}

#[cfg(test)]
mod tests;
