//! SNS envelope parse and string to sign (docs/protocols.md SNS). Property: a parsed message
//! re-serialized through its own fields parses to the same message and the same string to sign;
//! the certificate URL policy never accepts a non-SNS host.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = sns::parse(data) else {
        return;
    };
    let signed = sns::string_to_sign(&message);
    assert_eq!(signed, sns::string_to_sign(&message));
    if sns::check_cert_url(&message.signing_cert_url).is_ok() {
        let uri: http::Uri = message
            .signing_cert_url
            .parse()
            .expect("accepted URL parses");
        assert_eq!(uri.scheme_str(), Some("https"));
        assert!(sns::is_sns_host(
            uri.host().expect("accepted URL has a host")
        ));
    }
    let mut object = serde_json::Map::new();
    let mut put = |k: &str, v: &str| {
        object.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
    };
    put("Type", message.kind.as_str());
    put("MessageId", &message.message_id);
    put("TopicArn", &message.topic_arn);
    put("Message", &message.message);
    put("Timestamp", &message.timestamp);
    put("SignatureVersion", &message.signature_version);
    put("Signature", &message.signature);
    put("SigningCertURL", &message.signing_cert_url);
    if let Some(s) = &message.subject {
        put("Subject", s);
    }
    if let Some(s) = &message.subscribe_url {
        put("SubscribeURL", s);
    }
    if let Some(s) = &message.token {
        put("Token", s);
    }
    let again = sns::parse_object(&object).expect("a parsed message re-parses");
    assert_eq!(sns::string_to_sign(&again), signed);
});
