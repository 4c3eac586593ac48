//! What `bench-load` sends: for event number `n` and a sender, a correctly signed request that
//! is the same bytes every time it is made (so an exact duplicate is the request made again),
//! its tampered and oversize variants, and the read requests. Each event carries the marker
//! `ltm{n}x` in a field the receiving handler stores, so the check can tell from the database
//! alone which request a stored item came from, whatever id the handler derives.
//!
//! The events themselves are `crate::signed`'s, shared with the other harness parts.

use bytes::Bytes;
use http_body_util::Full;
use hub_tests::fixtures::LOCAL_API_TOKEN;
use serde_json::{json, Value};

pub use crate::signed::Sender;
use crate::signed::{self, Family};

/// The ids of the load run, apart from the other harness parts'.
const LOAD: Family = Family {
    name: "load",
    space: 0xa000,
};

impl Sender {
    pub const ALL: [Sender; 7] = [
        Sender::Ros,
        Sender::Cloudformation,
        Sender::S3Sns,
        Sender::Vk,
        Sender::Dingtalk,
        Sender::Mns,
        Sender::Tsuru,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Sender::Ros => "ROS",
            Sender::Cloudformation => "CloudFormation (SNS)",
            Sender::S3Sns => "S3 (SNS)",
            Sender::Vk => "VK S3",
            Sender::Dingtalk => "DingTalk",
            Sender::Mns => "MNS",
            Sender::Tsuru => "Tsuru",
        }
    }

    pub fn route(self) -> &'static str {
        match self {
            Sender::Ros | Sender::Cloudformation => "POST /stacks",
            Sender::S3Sns | Sender::Vk => "POST /s3",
            Sender::Dingtalk => "POST /dingtalk",
            Sender::Mns => "POST /mns",
            Sender::Tsuru => "POST /tsuru",
        }
    }

    /// The stored source name (`hub_core::event::Source`).
    pub fn source(self) -> &'static str {
        match self {
            Sender::Ros | Sender::Cloudformation => "stack",
            Sender::S3Sns | Sender::Vk => "s3",
            Sender::Dingtalk => "dingtalk",
            Sender::Mns => "mns",
            Sender::Tsuru => "tsuru",
        }
    }
}

/// The text that identifies event `n` in whatever the handler stores.
pub fn marker(n: u64) -> String {
    format!("ltm{n}x")
}

/// Every marker in `text`, in order.
pub fn markers_in(text: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("ltm") {
        rest = &rest[at + 3..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest.as_bytes().get(digits) == Some(&b'x') {
            if let Ok(n) = rest[..digits].parse() {
                found.push(n);
            }
        }
    }
    found
}

/// The API Gateway v2 request of event `n` from `sender`: the same value for the same inputs.
pub fn event_request(sender: Sender, n: u64) -> Value {
    signed::event_request(sender, n, &marker(n), &LOAD)
}

/// The request of event `n` with one authenticated byte changed: the callback token or the
/// signature, or for senders that sign their body (DingTalk §1.2, SNS §2.3, MNS §4.2) a body
/// byte outside the marker. `choice` picks among the places.
pub fn tampered_request(sender: Sender, n: u64, choice: u64) -> (Value, &'static str) {
    let mut request = event_request(sender, n);
    let place = match sender {
        Sender::Ros => query_or_header(&mut request, "token", "x-callback-token"),
        Sender::Vk => flip_query(&mut request, "token").then_some("token"),
        Sender::Tsuru => flip_header(&mut request, "authorization").then_some("bearer token"),
        Sender::Cloudformation | Sender::S3Sns => {
            if choice.is_multiple_of(2) {
                flip_body_after(&mut request, "\"Signature\":\"", 20).then_some("SNS Signature")
            } else {
                // The year of the signed Timestamp: still a valid time, no longer the signed one.
                flip_body_after(&mut request, "\"Timestamp\":\"", 3).then_some("SNS Timestamp")
            }
        }
        Sender::Dingtalk => {
            if choice.is_multiple_of(2) {
                flip_query(&mut request, "msg_signature").then_some("msg_signature")
            } else {
                flip_body_after(&mut request, "\"encrypt\":\"", 20).then_some("encrypt")
            }
        }
        Sender::Mns => match choice % 3 {
            0 => flip_header(&mut request, "authorization").then_some("Authorization"),
            1 => flip_query(&mut request, "token").then_some("token"),
            _ => flip_body_after(&mut request, "<MessageTag>", 1).then_some("body"),
        },
    };
    (
        request,
        place.expect("the fixture has the part to tamper with"),
    )
}

fn query_or_header(request: &mut Value, query: &str, header: &str) -> Option<&'static str> {
    if flip_query(request, query) {
        Some("token")
    } else {
        flip_header(request, header).then_some("token")
    }
}

/// Changes one character in the middle to another of its kind, so that the request still
/// parses and only the credential is wrong.
fn flip_at(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let b = bytes[at];
    bytes[at] = match b {
        b'0'..=b'8' | b'a'..=b'y' | b'A'..=b'Y' => b + 1,
        b'9' => b'0',
        b'z' => b'a',
        b'Z' => b'A',
        _ => b'A',
    };
    String::from_utf8(bytes).expect("ASCII replaced by ASCII")
}

fn flip_middle(text: &str) -> String {
    // Past the middle: inside the token or signature of `Bearer …`/`MNS id:signature`.
    let at = (text.len() * 2 / 3).min(text.len().saturating_sub(1));
    let at = (at..text.len())
        .find(|&i| text.as_bytes()[i].is_ascii_alphanumeric())
        .unwrap_or(at);
    flip_at(text, at)
}

fn flip_query(request: &mut Value, name: &str) -> bool {
    let Some(raw) = request["rawQueryString"].as_str() else {
        return false;
    };
    let mut found = false;
    let changed: Vec<String> = raw
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name && !value.is_empty() => {
                found = true;
                format!("{key}={}", flip_middle(value))
            }
            _ => pair.to_owned(),
        })
        .collect();
    if found {
        request["rawQueryString"] = json!(changed.join("&"));
    }
    found
}

fn flip_header(request: &mut Value, name: &str) -> bool {
    let Some(value) = request["headers"][name].as_str() else {
        return false;
    };
    request["headers"][name] = json!(flip_middle(value));
    true
}

fn flip_body_after(request: &mut Value, needle: &str, offset: usize) -> bool {
    let Some(body) = text_body(request) else {
        return false;
    };
    let Some(at) = body.find(needle) else {
        return false;
    };
    request["body"] = json!(flip_at(&body, at + needle.len() + offset));
    request["isBase64Encoded"] = json!(false);
    true
}

fn text_body(request: &Value) -> Option<String> {
    let body = request["body"].as_str()?;
    if request["isBase64Encoded"].as_bool() == Some(true) {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(body)
            .ok()?;
        String::from_utf8(bytes).ok()
    } else {
        Some(body.to_owned())
    }
}

/// A read request of the API: `choice` picks the route; `stack` is a stack to ask about.
pub fn read_request(choice: u64, stack: &str) -> (&'static str, String) {
    match choice % 3 {
        0 => ("GET /events", "/events?limit=20".to_owned()),
        1 => ("GET /events/stats", "/events/stats".to_owned()),
        _ => ("GET /stacks/{stack}", format!("/stacks/{stack}")),
    }
}

pub fn api_token() -> &'static str {
    LOCAL_API_TOKEN
}

/// The plain HTTP request an API Gateway v2 event stands for, to `base`; `pad_to` pads a JSON
/// body with trailing whitespace (still the same JSON, still the same signed fields) to that
/// many bytes.
pub fn http_request(
    event: &Value,
    base: &str,
    pad_to: Option<usize>,
) -> Result<hyper::Request<Full<Bytes>>, String> {
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .ok_or("no method")?;
    let path = event["rawPath"].as_str().ok_or("no rawPath")?;
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    let uri = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if let Some(headers) = event["headers"].as_object() {
        for (name, value) in headers {
            if matches!(name.as_str(), "host" | "content-length") {
                continue;
            }
            builder = builder.header(name, value.as_str().unwrap_or_default());
        }
    }
    let mut body = match event["body"].as_str() {
        None => Vec::new(),
        Some(text) if event["isBase64Encoded"].as_bool() == Some(true) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| e.to_string())?
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    if let Some(size) = pad_to {
        body.resize(size.max(body.len()), b' ');
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_and_do_not_run_into_each_other() {
        assert_eq!(
            markers_in("a ltm12x b ltm123x ltm ltmx ltm7"),
            vec![12, 123]
        );
        assert_eq!(
            markers_in(&format!("{{\"k\":\"{}\"}}", marker(42))),
            vec![42]
        );
    }

    #[test]
    fn requests_are_the_same_bytes_every_time_and_differ_per_event() {
        for sender in Sender::ALL {
            let first = event_request(sender, 7);
            assert_eq!(first, event_request(sender, 7), "{sender:?}");
            assert_ne!(first, event_request(sender, 8), "{sender:?}");
        }
    }

    #[test]
    fn every_tampering_changes_the_request_but_not_the_marker() {
        for sender in Sender::ALL {
            for choice in 0..3 {
                let (tampered, place) = tampered_request(sender, 9, choice);
                assert_ne!(tampered, event_request(sender, 9), "{sender:?} {place}");
                if let Some(body) = text_body(&tampered) {
                    if sender != Sender::Dingtalk {
                        assert!(body.contains(&marker(9)), "{sender:?} {place}");
                    }
                }
            }
        }
    }

    #[test]
    fn padding_keeps_the_body_and_reaches_the_size() {
        let event = event_request(Sender::Tsuru, 3);
        let request = http_request(&event, "http://127.0.0.1:1", Some(4096)).unwrap();
        let bytes = collect(request.into_body());
        assert_eq!(bytes.len(), 4096);
        assert!(serde_json::from_slice::<Value>(&bytes).is_ok());
    }

    fn collect(body: Full<Bytes>) -> Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }
}
