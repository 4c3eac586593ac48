//! `POST /stacks`: ROS webhooks (our token) and CloudFormation stack events through SNS. The
//! credential decides the sender before the body is parsed: a request carrying our token is
//! ROS and is authenticated first; anything else must be a verifiable SNS message.

use crate::cfn::{self, CfnError};
use crate::handler::{StackHook, StackStore};
use crate::ros::{self, RosError};
use http::StatusCode;
use hub_core::auth::{presented_callback_token, require_callback_token};
use hub_core::certs::Fetcher;
use hub_core::clock::Clock;
use hub_core::event::{Event, Source};
use hub_core::http::{json_response, raw_body, ApiError};
use hub_core::store::PutOutcome;
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use sns::Received;

impl<S: StackStore, C: Clock, F: Fetcher> StackHook<S, C, F> {
    /// ROS webhooks, or SNS envelopes carrying CloudFormation stack events.
    pub(crate) async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        if presented_callback_token(request).is_some() {
            self.receive_ros(request, body).await
        } else {
            self.receive_sns(body).await
        }
    }

    /// The signature and the topic allow-list authenticate SNS; no token is involved.
    async fn receive_sns(&self, body: &[u8]) -> Result<Response<Body>, ApiError> {
        if !self.sns.accepts_any() {
            return Err(ApiError::forbidden(
                "missing callback token (and no SNS topic is allowed)",
            ));
        }
        let message = match self.sns.receive(body).await? {
            Received::Handshake => {
                return Ok(json_response(
                    StatusCode::OK,
                    &json!({"status": "confirmed"}),
                ))
            }
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
        .alias(event.get("StackId").map(str::to_owned));
        if !event.is_stack_level() {
            stored = stored.history_only();
        }
        let outcome = self.store.put_event(&stored).await?;
        Ok(accepted(outcome, &stored.event_id, &stored.subject))
    }

    async fn receive_ros(
        &self,
        request: &Request,
        body: &[u8],
    ) -> Result<Response<Body>, ApiError> {
        let Some(token) = &self.config.token else {
            return Err(ApiError::forbidden(
                "ROS webhooks are not enabled (no STACK_HOOK_TOKEN)",
            ));
        };
        require_callback_token(request, token)?;
        let notification =
            ros::parse(body).map_err(|e: RosError| ApiError::bad_request(e.to_string()))?;
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
        .alias(Some(notification.stack_id));
        let outcome = self.store.put_event(&event).await?;
        Ok(accepted(outcome, &event.event_id, &event.subject))
    }
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
