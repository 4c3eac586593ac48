//! `POST /mns`: verify the push signature, check the body, store once, answer 204.

use crate::body::{self, BodyError};
use crate::signature::{self, SignatureError};
use crate::MnsConfig;
use http::{Method, StatusCode};
use hub_core::certs::{CertError, CertificateCache, Fetcher};
use hub_core::clock::Clock;
use hub_core::event::{time_from_millis, Event, Source};
use hub_core::http::{empty_response, header_str, raw_body, require_method, respond, ApiError};
use hub_core::store::{EventWriter, PutOutcome};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;

pub struct MnsHandler<S, C, F> {
    store: S,
    clock: C,
    certificates: Arc<CertificateCache<F>>,
    config: MnsConfig,
}

fn forbidden(e: SignatureError) -> ApiError {
    ApiError::forbidden(e.to_string())
}

impl<S: EventWriter, C: Clock, F: Fetcher> MnsHandler<S, C, F> {
    pub fn new(
        store: S,
        clock: C,
        certificates: impl Into<Arc<CertificateCache<F>>>,
        config: MnsConfig,
    ) -> Self {
        MnsHandler {
            store,
            clock,
            certificates: certificates.into(),
            config,
        }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        respond(self.receive(&request).await)
    }

    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_method(request, &[Method::POST], "POST")?;
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        let authorization = header_str(request, "authorization")
            .ok_or_else(|| forbidden(SignatureError::MissingHeader("Authorization")))?;
        // The URL is checked before anything is fetched.
        let cert_url = signature::cert_url(request.headers(), &self.config.cert_url_prefixes)
            .map_err(forbidden)?;
        signature::check_age(
            request.headers(),
            self.clock.now(),
            self.config.max_age_secs,
        )
        .map_err(forbidden)?;
        let resource = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let text =
            signature::string_to_sign(request.method().as_str(), request.headers(), resource)
                .map_err(forbidden)?;
        let key = self.certificates.public_key(&cert_url).await.map_err(|e| match e {
            CertError::Unreachable(detail) => {
                tracing::warn!(error = %detail, cert_url, "MNS signing certificate unavailable");
                ApiError::Unavailable("signing certificate unavailable, retry later".into())
            }
            CertError::Invalid => ApiError::forbidden("signing certificate is invalid"),
        })?;
        signature::verify(&key, &text, authorization).map_err(forbidden)?;

        let notification = body::parse(request.headers(), body)
            .map_err(|e: BodyError| ApiError::bad_request(e.to_string()))?;
        let event = Event::new(
            Source::Mns,
            notification.message_id.clone(),
            notification
                .message_tag
                .clone()
                .unwrap_or_else(|| notification.topic_name.clone()),
            notification.topic_name.clone(),
            notification.to_json().to_string(),
            self.clock.now(),
        )
        .occurred_at(notification.publish_time.and_then(time_from_millis));
        let outcome = self.store.put_event(&event).await?;
        tracing::info!(
            message_id = %event.event_id,
            topic = %event.subject,
            format = notification.format.as_str(),
            duplicate = outcome == PutOutcome::Duplicate,
            "mns message accepted"
        );
        Ok(empty_response(StatusCode::NO_CONTENT))
    }
}

impl<S, C, F> hub_core::http::Handler for MnsHandler<S, C, F>
where
    S: EventWriter + 'static,
    C: Clock + 'static,
    F: Fetcher + 'static,
{
    async fn handle(&self, request: Request) -> Response<Body> {
        MnsHandler::handle(self, request).await
    }
}
