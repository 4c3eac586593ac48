//! Every route of the interface, each served by its function's own constructor and handler:
//! the server names no function's variables. A function whose configuration is missing is a
//! disabled route: it answers 503 naming the variable, and the others keep working. Nothing is
//! ever accepted unauthenticated because a secret is unset.

use crate::store::{AnyStore, LocalStore};
use http::StatusCode;
use hub_core::aws::LazyAws;
use hub_core::config::ConfigError;
use hub_core::http::{json_response, shared, ApiError, Handler, SharedHandler};
use hub_core::setup::Setup;
use hub_core::store::Retained;
use lambda_http::{Body, Request, Response};
use serde_json::json;

/// Which request paths a route serves, as API Gateway routes them.
#[derive(Debug, Clone, Copy)]
pub enum PathPattern {
    /// `/dingtalk`
    Exact(&'static str),
    /// `/stacks/{stack}`: the prefix and one more non-empty segment.
    WithParameter(&'static str),
    /// `/webhooks` and everything below it (`/webhooks/{name}/deliveries`, ...): the handler
    /// routes further itself.
    Tree(&'static str),
}

impl PathPattern {
    fn matches(self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => path == exact,
            PathPattern::WithParameter(prefix) => path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|parameter| !parameter.is_empty() && !parameter.contains('/')),
            PathPattern::Tree(prefix) => path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

struct Route {
    name: &'static str,
    paths: &'static [PathPattern],
    handler: Result<SharedHandler, String>,
}

pub struct Routes {
    max_body_bytes: usize,
    table: Vec<Route>,
    /// The bearer token of `GET /metrics` (the API's); `None` keeps it closed (503).
    api_token: Option<hub_core::config::Secret>,
}

impl Routes {
    /// Builds every function over `store` with the same constructors the Lambda functions use.
    pub async fn build(setup: &Setup, store: LocalStore) -> Routes {
        use PathPattern::{Exact, Tree, WithParameter};
        let mut routes = Routes {
            max_body_bytes: setup.edge().max_body_bytes,
            table: Vec::new(),
            api_token: setup.api_token().await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "GET /metrics disabled");
                None
            }),
        };
        routes.add(
            "POST /stacks, GET /stacks, GET /stacks/{stack}",
            &[Exact("/stacks"), WithParameter("/stacks")],
            stack_hook::build(store.clone(), setup).await,
        );
        routes.add(
            "POST /dingtalk",
            &[Exact("/dingtalk")],
            dingtalk_callback::build(store.clone(), setup).await,
        );
        routes.add(
            "POST /s3",
            &[Exact("/s3")],
            s3_notification::build(store.clone(), setup).await,
        );
        routes.add(
            "POST /mns",
            &[Exact("/mns")],
            mns_endpoint::build(store.clone(), setup).await,
        );
        routes.add(
            "POST /tsuru (also PUT, PATCH)",
            &[Exact("/tsuru")],
            tsuru_hook::build(store.clone(), setup).await,
        );
        routes.add(
            "/webhooks (also /events/webhooks, /1.6/events/webhooks)",
            &[
                Tree("/webhooks"),
                Tree("/events/webhooks"),
                Tree("/1.6/events/webhooks"),
            ],
            webhooks_api::build(store.clone(), setup).await,
        );
        // After the webhooks API: `/events/webhooks` is its alias, and the first match wins.
        routes.add(
            "GET /console, GET /events, GET /events/stats, GET /events/{source}/{id}",
            &[Tree("/console"), Tree("/events")],
            web_console::build(store.clone(), setup).await,
        );
        for (route, status) in routes.status() {
            match status {
                Ok(()) => tracing::info!(route, "route enabled"),
                Err(reason) => tracing::warn!(route, reason, "route disabled"),
            }
        }
        routes
    }

    /// The local server's routes: `vars` (the environment and its env file), the full SDK
    /// loader (profiles, SSO, IMDS) made on first use, and `store` with retention applied.
    pub async fn local(
        vars: std::collections::HashMap<String, String>,
        store: AnyStore,
    ) -> Result<Routes, ConfigError> {
        let setup = Setup::new(vars, LazyAws::full())?;
        let store = Retained::new(store, setup.edge().event_ttl_days);
        Ok(Routes::build(&setup, store).await)
    }

    fn add<H: Handler>(
        &mut self,
        name: &'static str,
        paths: &'static [PathPattern],
        built: Result<H, ConfigError>,
    ) {
        self.table.push(Route {
            name,
            paths,
            handler: built
                .map(shared)
                .map_err(|err| format!("route disabled: {err}")),
        });
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The token that `GET /metrics` requires, if one is configured.
    pub fn api_token(&self) -> Option<&hub_core::config::Secret> {
        self.api_token.as_ref()
    }

    /// Each route and whether it is enabled (or why not).
    pub fn status(&self) -> Vec<(&'static str, Result<(), &str>)> {
        self.table
            .iter()
            .map(|route| {
                let status = route.handler.as_ref().map(|_| ()).map_err(String::as_str);
                (route.name, status)
            })
            .collect()
    }

    /// Routes by path exactly as API Gateway does, then hands the request to the function's
    /// handler.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path();
        if path == "/healthz" {
            return self.health();
        }
        let route = self
            .table
            .iter()
            .find(|route| route.paths.iter().any(|p| p.matches(path)));
        match route.map(|route| &route.handler) {
            Some(Ok(handler)) => handler(request).await,
            Some(Err(reason)) => ApiError::Unavailable(reason.clone()).into_response(),
            None => ApiError::NotFound("no such route".into()).into_response(),
        }
    }

    fn health(&self) -> Response<Body> {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .status()
            .into_iter()
            .map(|(route, status)| {
                let state = match status {
                    Ok(()) => "enabled".to_owned(),
                    Err(reason) => reason.to_owned(),
                };
                (route.to_owned(), state.into())
            })
            .collect();
        json_response(StatusCode::OK, &json!({"status": "ok", "routes": routes}))
    }
}

#[cfg(test)]
mod tests {
    use super::PathPattern::{Exact, Tree, WithParameter};

    #[test]
    fn paths_match_as_api_gateway_routes_them() {
        assert!(Exact("/s3").matches("/s3"));
        assert!(!Exact("/s3").matches("/s3/"));
        assert!(WithParameter("/stacks").matches("/stacks/web"));
        assert!(!WithParameter("/stacks").matches("/stacks/"));
        assert!(!WithParameter("/stacks").matches("/stacks"));
        assert!(!WithParameter("/stacks").matches("/stacks/a/b"));
        assert!(!WithParameter("/stacks").matches("/stacksweb"));
        assert!(Tree("/webhooks").matches("/webhooks"));
        assert!(Tree("/webhooks").matches("/webhooks/a/deliveries"));
        assert!(!Tree("/webhooks").matches("/webhooksx"));
    }
}
