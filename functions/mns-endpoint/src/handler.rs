//! `POST /mns`: check the endpoint token and topic (§4.5), verify the push signature (§4.2), check
//! the body (§4.3), store once, answer 204 (§4.4).

use crate::access::{self, AccessError};
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

    /// The order is the point (§4.5, S8): everything that costs nothing and needs no outbound
    /// request (endpoint token, certificate URL, `Date`, body, topic) comes before the signing
    /// certificate is fetched. The token comes first of all: without it nothing of the request
    /// is read. The body is parsed before the signature is verified because the topic of XML and
    /// JSON pushes is in it; only token holders get that far, and the signature (over
    /// `Content-MD5`, checked against the raw body) is verified before anything is stored.
    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        require_method(request, &[Method::POST], "POST")?;
        access::require_endpoint_token(request, &self.config.endpoint_token).map_err(|e| {
            tracing::warn!(reason = %e, "mns push refused: endpoint token");
            ApiError::forbidden(e.to_string())
        })?;
        let body = raw_body(request, self.config.edge.max_body_bytes)?;
        let authorization = header_str(request, "authorization")
            .ok_or_else(|| forbidden(SignatureError::MissingHeader("Authorization")))?;
        let cert_url =
            signature::cert_url(request.headers(), &self.config.cert_urls).map_err(forbidden)?;
        signature::check_age(
            request.headers(),
            self.clock.now(),
            self.config.max_age_secs,
        )
        .map_err(forbidden)?;
        let notification = body::parse(request.headers(), body)
            .map_err(|e: BodyError| ApiError::bad_request(e.to_string()))?;
        let topic = match notification.topic() {
            Some((owner, topic)) if self.config.topics.allows(owner, topic) => topic.to_owned(),
            named => {
                tracing::warn!(topic = ?named, "mns push refused: topic not in MNS_TOPICS");
                return Err(ApiError::forbidden(
                    AccessError::TopicNotAllowed.to_string(),
                ));
            }
        };
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

        let event = Event::new(
            Source::Mns,
            notification.message_id.clone(),
            notification
                .message_tag
                .clone()
                .unwrap_or_else(|| topic.clone()),
            topic,
            notification.to_json().to_string(),
            self.clock.now(),
        )
        // In range: `body::parse` refuses times that `time_from_millis` cannot represent.
        .occurred_at(notification.publish_time.and_then(time_from_millis));
        let outcome = hub_core::metrics::time_store(self.store.put_event(&event)).await?;
        tracing::info!(
            source = "mns",
            event_id = %event.event_id,
            topic = %event.subject,
            format = notification.format.as_str(),
            duplicate = outcome == PutOutcome::Duplicate,
            "mns message accepted"
        );
        let response = empty_response(StatusCode::NO_CONTENT);
        Ok(match outcome {
            PutOutcome::Stored => response,
            PutOutcome::Duplicate => hub_core::metrics::Outcome::Duplicate.mark(response),
        })
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
    fn source(&self) -> Option<hub_core::Source> {
        Some(Source::Mns)
    }
}

#[cfg(test)]
mod tests {
    //! Through the handler with the generated samples of `events/` (signed by the test key, whose
    //! certificate the fake fetcher serves and counts), the memory store and a fixed clock.
    use super::*;
    use hub_core::certs::testing::FakeFetcher;
    use hub_core::clock::FixedClock;
    use hub_core::config::{EdgeConfig, Secret};
    use hub_core::store::memory::MemoryStore;
    use serde_json::Value;
    use std::collections::HashMap;

    const TOKEN: &str = "MnsEndpointT0kenForTests";
    const CERT_URL: &str =
        "https://mnstest.oss-cn-hangzhou.aliyuncs.com/callback-hub-test-certificate.pem";
    const SAMPLES: [&str; 3] = ["mns-xml.json", "mns-json.json", "mns-simplified.json"];

    fn events_file(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/");
        std::fs::read_to_string(format!("{path}{name}")).unwrap()
    }

    fn sample(name: &str) -> Value {
        serde_json::from_str(&events_file(name)).unwrap()
    }

    fn request(json: &Value) -> Request {
        lambda_http::request::from_str(&json.to_string()).unwrap()
    }

    struct Rig {
        store: Arc<MemoryStore>,
        fetcher: Arc<FakeFetcher>,
        handler: MnsHandler<Arc<MemoryStore>, FixedClock, Arc<FakeFetcher>>,
    }

    fn rig(topics: &str) -> Rig {
        let store = Arc::new(MemoryStore::new());
        let fetcher = Arc::new(FakeFetcher::new());
        fetcher.respond(CERT_URL, 200, &events_file("keys/mns-test-cert.pem"));
        let vars: HashMap<String, String> = [
            ("MNS_TOPICS", topics),
            ("MNS_CERT_URL_PREFIXES", CERT_URL),
            ("MNS_MAX_AGE_SECS", "900"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config =
            MnsConfig::from_vars(&vars, EdgeConfig::default(), Secret::new(TOKEN)).unwrap();
        let clock = FixedClock::at(
            chrono::DateTime::parse_from_rfc2822("Fri, 01 Mar 2024 12:00:05 GMT")
                .unwrap()
                .to_utc(),
        );
        let certificates = CertificateCache::new(fetcher.clone(), HashMap::new());
        Rig {
            store: store.clone(),
            fetcher: fetcher.clone(),
            handler: MnsHandler::new(store, clock, certificates, config),
        }
    }

    fn message(response: &Response<Body>) -> String {
        let Body::Text(text) = response.body() else {
            panic!("an error body")
        };
        serde_json::from_str::<Value>(text).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn a_push_with_our_token_from_our_topic_is_stored_after_one_fetch() {
        let rig = rig("1321669497458181/orders");
        for name in SAMPLES {
            let response = rig.handler.handle(request(&sample(name))).await;
            assert_eq!(response.status(), 204, "{name}");
        }
        assert_eq!(rig.store.len(), 3);
        assert!(rig.store.all().iter().all(|e| e.subject == "orders"));
        assert_eq!(
            rig.fetcher.requests(),
            [CERT_URL],
            "fetched once, then cached"
        );
    }

    #[tokio::test]
    async fn a_push_without_our_token_is_403_before_any_fetch_or_parse() {
        let rig = rig("1321669497458181/orders");
        for name in SAMPLES {
            let signed = sample(name);
            assert!(
                signed["rawQueryString"]
                    .as_str()
                    .unwrap()
                    .contains("token="),
                "{name}: the samples carry the token"
            );
            let mut cases = Vec::new();
            let mut tokenless = signed.clone();
            tokenless["rawQueryString"] = "".into();
            tokenless
                .as_object_mut()
                .unwrap()
                .remove("queryStringParameters");
            cases.push(("missing", tokenless.clone()));
            // A header is not the signed URL.
            let mut in_header = tokenless.clone();
            in_header["headers"]["x-callback-token"] = TOKEN.into();
            cases.push(("missing", in_header));
            for wrong in ["MnsEndpointT0kenForTest", "MnsEndpointT0kenForTestsX", "x"] {
                let mut json = signed.clone();
                json["rawQueryString"] = format!("token={wrong}").into();
                cases.push(("invalid", json));
            }
            // Not even parsed: a broken body is still 403, not 400.
            let mut garbage = tokenless;
            garbage["body"] = "<Notification><".into();
            cases.push(("missing", garbage));
            for (reason, json) in cases {
                let response = rig.handler.handle(request(&json)).await;
                assert_eq!(response.status(), 403, "{name}: {json}");
                assert_eq!(message(&response), format!("{reason} endpoint token"));
            }
        }
        assert!(rig.fetcher.requests().is_empty(), "no outbound fetch");
        assert!(rig.store.is_empty());
    }

    #[tokio::test]
    async fn a_push_from_a_topic_off_the_allow_list_is_403_not_stored_and_fetches_nothing() {
        // Same topic name under another account; another topic of our account.
        for topics in ["9999999999999999/orders", "1321669497458181/invoices"] {
            let rig = rig(topics);
            for name in SAMPLES {
                let response = rig.handler.handle(request(&sample(name))).await;
                assert_eq!(response.status(), 403, "{topics}: {name}");
                assert_eq!(message(&response), "topic is not allowed");
            }
            assert!(rig.fetcher.requests().is_empty(), "{topics}: no fetch");
            assert!(rig.store.is_empty(), "{topics}: nothing stored");
        }
        let rig = rig("9999999999999999/*, 1321669497458181/*");
        for name in SAMPLES {
            assert_eq!(
                rig.handler.handle(request(&sample(name))).await.status(),
                204,
                "owner/* allows every topic of the account"
            );
        }
    }

    #[tokio::test]
    async fn a_simplified_push_naming_no_owner_is_403_before_any_fetch() {
        let rig = rig("1321669497458181/orders");
        let mut json = sample("mns-simplified.json");
        json["headers"]
            .as_object_mut()
            .unwrap()
            .remove("x-mns-topic-owner");
        let response = rig.handler.handle(request(&json)).await;
        assert_eq!(response.status(), 403);
        assert_eq!(message(&response), "topic is not allowed");
        assert!(rig.fetcher.requests().is_empty());
        assert!(rig.store.is_empty());
    }

    #[tokio::test]
    async fn a_certificate_url_off_the_list_or_a_stale_date_fetches_nothing() {
        use base64::Engine;
        let rig = rig("1321669497458181/orders");
        let mut off_list = sample("mns-xml.json");
        off_list["headers"]["x-mns-signing-cert-url"] = base64::engine::general_purpose::STANDARD
            .encode("https://mnstest.oss-cn-hangzhou.aliyuncs.com/other.pem")
            .into();
        let mut stale = sample("mns-xml.json");
        stale["headers"]["date"] = "Thu, 29 Feb 2024 12:00:00 GMT".into();
        for json in [off_list, stale] {
            assert_eq!(rig.handler.handle(request(&json)).await.status(), 403);
        }
        assert!(rig.fetcher.requests().is_empty());
        assert!(rig.store.is_empty());
    }
}
