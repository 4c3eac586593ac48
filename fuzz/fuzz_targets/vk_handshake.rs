//! VK Cloud S3 handshake (docs/protocols.md VK). Property: detection never takes an AWS SNS
//! confirmation (one with a Signature); the signature is 64 lowercase hex digits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let detected = s3_notification::vk::VkHandshake::detect(&body);
    if body.contains_key("Signature") {
        assert!(!detected);
    }
    if let Ok(handshake) = s3_notification::vk::VkHandshake::parse(&body) {
        let signature = handshake.signature("https://hub.example/s3");
        assert_eq!(signature.len(), 64);
        assert!(signature
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let _ = handshake.bucket();
    }
});
