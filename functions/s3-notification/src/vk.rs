//! The VK Cloud (Mail.ru) S3 webhook handshake: a `SubscriptionConfirmation` without a
//! `Signature`, answered with an HMAC chain over the webhook URL as registered.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// `hex(HMAC(HMAC(HMAC(Token, Timestamp), TopicArn), url))`: each step's output keys the next.
pub fn handshake_signature(token: &str, timestamp: &str, topic_arn: &str, url: &str) -> String {
    let k1 = hmac(token.as_bytes(), timestamp.as_bytes());
    let k2 = hmac(&k1, topic_arn.as_bytes());
    hex::encode(hmac(&k2, url.as_bytes()))
}

/// The fields of a VK handshake that the signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VkHandshake {
    pub token: String,
    pub timestamp: String,
    pub topic_arn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VkError {
    #[error("VK handshake lacks {0}")]
    Missing(&'static str),
}

impl VkHandshake {
    /// The VK form: `Type` is `SubscriptionConfirmation` and there is no `Signature` (an AWS SNS
    /// confirmation always has one). `SignatureVersion` is a number here, and is not needed.
    pub fn detect(body: &Map<String, Value>) -> bool {
        body.get("Type").and_then(Value::as_str) == Some("SubscriptionConfirmation")
            && !body.contains_key("Signature")
    }

    pub fn parse(body: &Map<String, Value>) -> Result<Self, VkError> {
        let text = |name: &'static str| {
            body.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or(VkError::Missing(name))
        };
        Ok(VkHandshake {
            token: text("Token")?,
            timestamp: text("Timestamp")?,
            topic_arn: text("TopicArn")?,
        })
    }

    pub fn signature(&self, url: &str) -> String {
        handshake_signature(&self.token, &self.timestamp, &self.topic_arn, url)
    }

    /// `<owner>|<bucket>|<event>`: the bucket, for logs.
    pub fn bucket(&self) -> Option<&str> {
        self.topic_arn.split('|').nth(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const VECTOR: &str = include_str!("../tests/fixtures/vk-s3.json");

    fn vector() -> Value {
        serde_json::from_str(VECTOR).unwrap()
    }

    #[test]
    fn reproduces_the_published_chain() {
        let v = vector();
        let body = v["request_body"].as_object().unwrap();
        let url = v["url"].as_str().unwrap();
        let (token, timestamp, topic) = (
            body["Token"].as_str().unwrap(),
            body["Timestamp"].as_str().unwrap(),
            body["TopicArn"].as_str().unwrap(),
        );
        let k1 = hmac(token.as_bytes(), timestamp.as_bytes());
        assert_eq!(hex::encode(k1), v["expected_k1_hex"]);
        let k2 = hmac(&k1, topic.as_bytes());
        assert_eq!(hex::encode(k2), v["expected_k2_hex"]);
        assert!(VkHandshake::detect(body));
        let handshake = VkHandshake::parse(body).unwrap();
        assert_eq!(handshake.signature(url), v["expected_signature"]);
        assert_eq!(
            json!({"signature": handshake.signature(url)}),
            v["expected_response_body"]
        );
        assert_eq!(handshake.bucket(), Some("bucketA"));
    }

    #[test]
    fn every_input_changes_the_signature() {
        let v = vector();
        let expected = v["expected_signature"].as_str().unwrap();
        let base = VkHandshake::parse(v["request_body"].as_object().unwrap()).unwrap();
        // The URL exactly as registered: scheme, trailing slash and case all matter.
        for url in ["https://test.com", "http://test.com/", "http://Test.com"] {
            assert_ne!(base.signature(url), expected, "{url}");
        }
        let mut token = base.clone();
        token.token.push('x');
        let mut timestamp = base.clone();
        timestamp.timestamp = timestamp.timestamp.replace("+03:00", "+00:00");
        let mut topic = base.clone();
        topic.topic_arn = topic.topic_arn.replace("bucketA", "bucketB");
        for changed in [token, timestamp, topic] {
            assert_ne!(changed.signature("http://test.com"), expected);
        }
    }

    #[test]
    fn aws_confirmations_and_incomplete_bodies_are_not_vk_handshakes() {
        let aws = json!({"Type": "SubscriptionConfirmation", "Signature": "x", "Token": "t"});
        assert!(!VkHandshake::detect(aws.as_object().unwrap()));
        let notification = json!({"Type": "Notification"});
        assert!(!VkHandshake::detect(notification.as_object().unwrap()));
        let no_token =
            json!({"Type": "SubscriptionConfirmation", "Timestamp": "t", "TopicArn": "a"});
        assert_eq!(
            VkHandshake::parse(no_token.as_object().unwrap()),
            Err(VkError::Missing("Token"))
        );
    }
}
