//! MNS push bodies (`docs/protocols.md` §4.3): XML `<Notification>`, the same fields as JSON, or
//! SIMPLIFIED (the raw message, with its metadata in `x-mns-*` headers); and the MD5 checks.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderMap;
use md5::{Digest, Md5};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
    Simplified,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Xml => "XML",
            Format::Json => "JSON",
            Format::Simplified => "SIMPLIFIED",
        }
    }
}

/// One pushed message, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub format: Format,
    /// Absent only in SIMPLIFIED pushes without `x-mns-topic-owner`; such a push cannot match
    /// `MNS_TOPICS` (§4.5).
    pub topic_owner: Option<String>,
    /// Absent only in SIMPLIFIED pushes without `x-mns-topic-name`, which cannot match either.
    pub topic_name: Option<String>,
    pub subscriber: Option<String>,
    pub subscription_name: Option<String>,
    pub message_id: String,
    pub message: String,
    pub message_tag: Option<String>,
    /// Epoch milliseconds, within years 0000 to 9999 (a time the store can write and read back).
    pub publish_time: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("Content-MD5 does not match the body")]
    ContentMd5,
    #[error("a body without Content-MD5")]
    MissingContentMd5,
    #[error("MessageMD5 does not match Message")]
    MessageMd5,
    #[error("malformed XML notification")]
    Xml,
    #[error("malformed JSON notification")]
    Json,
    #[error("notification lacks {0}")]
    Missing(&'static str),
    #[error("PublishTime is not epoch milliseconds within years 0000 to 9999")]
    PublishTime,
    #[error("message is not UTF-8")]
    NotUtf8,
}

/// The forms seen on the wire: upper- or lowercase hex of the MD5, or base64 of the lowercase hex.
pub fn content_md5_matches(header: &str, body: &[u8]) -> bool {
    let hex_digest = hex::encode(Md5::digest(body));
    let header = header.trim();
    header.eq_ignore_ascii_case(&hex_digest) || header == STANDARD.encode(hex_digest.as_bytes())
}

const REQUIRED: [&str; 8] = [
    "TopicOwner",
    "TopicName",
    "Subscriber",
    "SubscriptionName",
    "MessageId",
    "Message",
    "MessageMD5",
    "PublishTime",
];

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Epoch milliseconds. A time past year 9999 (or before year 0) is refused, not stored without
/// its time: RFC 3339 cannot write it, and an item holding it could not be read back (S12).
fn millis(text: &str) -> Result<i64, BodyError> {
    let millis: i64 = text.trim().parse().map_err(|_| BodyError::PublishTime)?;
    hub_core::event::time_from_millis(millis).ok_or(BodyError::PublishTime)?;
    Ok(millis)
}

/// Builds a notification from named fields, checking that all required ones are there and that
/// `MessageMD5` is the MD5 of `Message`.
fn from_fields(
    format: Format,
    get: impl Fn(&str) -> Option<String>,
) -> Result<Notification, BodyError> {
    for name in REQUIRED {
        if get(name).is_none() {
            return Err(BodyError::Missing(name));
        }
    }
    let field = |name: &str| get(name).expect("checked above");
    let message = field("Message");
    let expected = hex::encode(Md5::digest(message.as_bytes()));
    if !field("MessageMD5").trim().eq_ignore_ascii_case(&expected) {
        return Err(BodyError::MessageMd5);
    }
    Ok(Notification {
        format,
        topic_owner: Some(field("TopicOwner")),
        topic_name: Some(field("TopicName")),
        subscriber: Some(field("Subscriber")),
        subscription_name: Some(field("SubscriptionName")),
        message_id: field("MessageId"),
        message,
        message_tag: get("MessageTag").filter(|t| !t.is_empty()),
        publish_time: Some(millis(&field("PublishTime"))?),
    })
}

fn parse_xml(body: &str) -> Result<Notification, BodyError> {
    let document = roxmltree::Document::parse(body).map_err(|_| BodyError::Xml)?;
    let root = document.root_element();
    if root.tag_name().name() != "Notification" {
        return Err(BodyError::Xml);
    }
    from_fields(Format::Xml, |name| {
        root.children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .map(|n| n.text().unwrap_or_default().to_owned())
    })
}

fn parse_json(body: &str) -> Result<Notification, BodyError> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
        return Err(BodyError::Json);
    };
    from_fields(Format::Json, |name| match object.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn parse_simplified(headers: &HeaderMap, body: &str) -> Result<Notification, BodyError> {
    let message_id =
        header(headers, "x-mns-message-id").ok_or(BodyError::Missing("x-mns-message-id"))?;
    // Older pushes name no topic; they cannot match `MNS_TOPICS` and are refused by the handler
    // (403, §4.5) rather than stored under the subscription's name.
    Ok(Notification {
        format: Format::Simplified,
        topic_owner: header(headers, "x-mns-topic-owner"),
        topic_name: header(headers, "x-mns-topic-name"),
        subscriber: header(headers, "x-mns-subscriber"),
        subscription_name: header(headers, "x-mns-subscription-name"),
        message_id,
        message: body.to_owned(),
        message_tag: header(headers, "x-mns-message-tag"),
        publish_time: header(headers, "x-mns-publish-time")
            .map(|t| millis(&t))
            .transpose()?,
    })
}

/// Checks `Content-MD5` against the raw body, then parses it in the format the push uses:
/// SIMPLIFIED pushes carry `x-mns-message-id`; the others are XML (`<…`) or JSON.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Notification, BodyError> {
    // A signed Content-MD5 binds the body (§4.2), an empty one included: skipping the check for
    // an empty body let a captured SIMPLIFIED push be replayed with its message removed.
    match header(headers, "content-md5") {
        Some(md5) if !content_md5_matches(&md5, body) => return Err(BodyError::ContentMd5),
        Some(_) => {}
        None if body.is_empty() => {}
        None => return Err(BodyError::MissingContentMd5),
    }
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    if headers.contains_key("x-mns-message-id") {
        parse_simplified(headers, text)
    } else if text.trim_start().starts_with('<') {
        parse_xml(text)
    } else {
        parse_json(text)
    }
}

impl Notification {
    /// `(TopicOwner, TopicName)`, as signed: body fields covered by `Content-MD5`, or `x-mns-*`
    /// headers. `None` when either is missing.
    pub fn topic(&self) -> Option<(&str, &str)> {
        Some((self.topic_owner.as_deref()?, self.topic_name.as_deref()?))
    }

    /// The stored payload.
    pub fn to_json(&self) -> Value {
        json!({
            "Format": self.format.as_str(),
            "TopicOwner": self.topic_owner,
            "TopicName": self.topic_name,
            "Subscriber": self.subscriber,
            "SubscriptionName": self.subscription_name,
            "MessageId": self.message_id,
            "Message": self.message,
            "MessageTag": self.message_tag,
            "PublishTime": self.publish_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MESSAGE: &str = "hello, 世界 <&>";

    fn md5_upper(text: &str) -> String {
        hex::encode_upper(Md5::digest(text.as_bytes()))
    }

    fn xml() -> String {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><Notification xmlns="http://mns.aliyuncs.com/doc/v1/"><TopicOwner>1321669497458181</TopicOwner><TopicName>orders</TopicName><Subscriber>1321669497458181</Subscriber><SubscriptionName>callback-hub</SubscriptionName><MessageId>5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000001</MessageId><Message>hello, 世界 &lt;&amp;&gt;</Message><MessageMD5>{}</MessageMD5><MessageTag>important</MessageTag><PublishTime>1709294400000</PublishTime></Notification>"#,
            md5_upper(MESSAGE)
        )
    }

    fn with_md5(body: &str, form: &str) -> HeaderMap {
        let digest = hex::encode(Md5::digest(body.as_bytes()));
        let value = match form {
            "upper" => digest.to_uppercase(),
            "lower" => digest,
            _ => STANDARD.encode(digest),
        };
        let mut h = HeaderMap::new();
        h.insert("content-md5", HeaderValue::from_str(&value).unwrap());
        h
    }

    #[test]
    fn xml_in_every_content_md5_form() {
        let body = xml();
        for form in ["upper", "lower", "base64"] {
            let n = parse(&with_md5(&body, form), body.as_bytes()).unwrap();
            assert_eq!(n.format, Format::Xml);
            assert_eq!(n.message, MESSAGE);
            assert_eq!(n.topic(), Some(("1321669497458181", "orders")));
            assert_eq!(n.message_tag.as_deref(), Some("important"));
            assert_eq!(n.publish_time, Some(1_709_294_400_000));
        }
    }

    #[test]
    fn json_with_string_values() {
        let body = json!({"TopicOwner":"1","TopicName":"orders","Subscriber":"1","SubscriptionName":"s","MessageId":"m-1","Message":MESSAGE,"MessageMD5":md5_upper(MESSAGE),"PublishTime":"1449556920975"}).to_string();
        let n = parse(&with_md5(&body, "upper"), body.as_bytes()).unwrap();
        assert_eq!(n.format, Format::Json);
        assert_eq!(n.message_id, "m-1");
        assert_eq!(n.message_tag, None);
    }

    #[test]
    fn simplified_from_headers() {
        let mut h = with_md5(MESSAGE, "upper");
        h.insert(
            "x-mns-message-id",
            HeaderValue::from_static("250EB49D5F8D737A391C93C6ED165396"),
        );
        h.insert("x-mns-topic-name", HeaderValue::from_static("orders"));
        h.insert(
            "x-mns-publish-time",
            HeaderValue::from_static("1680079287576"),
        );
        let n = parse(&h, MESSAGE.as_bytes()).unwrap();
        assert_eq!(n.format, Format::Simplified);
        assert_eq!(n.message, MESSAGE);
        assert_eq!(n.publish_time, Some(1_680_079_287_576));
    }

    #[test]
    fn simplified_without_owner_or_topic_names_no_topic() {
        let mut h = with_md5(MESSAGE, "upper");
        h.insert("x-mns-message-id", HeaderValue::from_static("m-1"));
        h.insert("x-mns-subscription-name", HeaderValue::from_static("sub"));
        h.insert("x-mns-topic-name", HeaderValue::from_static("orders"));
        let n = parse(&h, MESSAGE.as_bytes()).unwrap();
        assert_eq!(n.topic(), None, "no owner");
        h.remove("x-mns-topic-name");
        h.insert("x-mns-topic-owner", HeaderValue::from_static("1"));
        let n = parse(&h, MESSAGE.as_bytes()).unwrap();
        assert_eq!(n.topic(), None, "the subscription is not the topic");
    }

    #[test]
    fn publish_times_past_year_9999_are_refused() {
        let last = "253402300799999"; // 9999-12-31T23:59:59.999Z
        for (time, ok) in [
            (last, true),
            ("253402300800000", false),
            ("9223372036854775807", false),
            ("-62167219200001", false),
            ("-1", true),
        ] {
            let body = xml().replace("1709294400000", time);
            let result = parse(&with_md5(&body, "upper"), body.as_bytes());
            assert_eq!(result.is_ok(), ok, "{time}: {result:?}");
            if !ok {
                assert_eq!(result, Err(BodyError::PublishTime));
            }
            let mut h = with_md5(MESSAGE, "upper");
            h.insert("x-mns-message-id", HeaderValue::from_static("m-1"));
            h.insert("x-mns-publish-time", HeaderValue::from_str(time).unwrap());
            assert_eq!(parse(&h, MESSAGE.as_bytes()).is_ok(), ok, "{time}");
        }
    }

    #[test]
    fn an_emptied_body_fails_its_content_md5() {
        let mut headers = with_md5("restock 42", "upper");
        headers.insert("x-mns-message-id", HeaderValue::from_static("m-1"));
        headers.insert(
            "x-mns-publish-time",
            HeaderValue::from_static("1709294399500"),
        );
        assert_eq!(parse(&headers, b""), Err(BodyError::ContentMd5));
        let mut empty = with_md5("", "upper");
        empty.insert("x-mns-message-id", HeaderValue::from_static("m-1"));
        empty.insert(
            "x-mns-publish-time",
            HeaderValue::from_static("1709294399500"),
        );
        assert!(parse(&empty, b"").is_ok());
    }

    #[test]
    fn refusals() {
        let body = xml();
        let mut tampered = body.clone().into_bytes();
        let at = body.find("orders").unwrap();
        tampered[at] = b'O';
        assert_eq!(
            parse(&with_md5(&body, "upper"), &tampered),
            Err(BodyError::ContentMd5)
        );
        assert_eq!(
            parse(&HeaderMap::new(), body.as_bytes()),
            Err(BodyError::MissingContentMd5)
        );
        let wrong_md5 = body.replace(&md5_upper(MESSAGE), &md5_upper("other"));
        assert_eq!(
            parse(&with_md5(&wrong_md5, "upper"), wrong_md5.as_bytes()),
            Err(BodyError::MessageMd5)
        );
        let no_id = body.replace(
            "<MessageId>5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000001</MessageId>",
            "",
        );
        assert_eq!(
            parse(&with_md5(&no_id, "upper"), no_id.as_bytes()),
            Err(BodyError::Missing("MessageId"))
        );
        // The documented example is malformed (xlmns=, a stray closing tag): refused, not guessed.
        let doc_example = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Notification xlmns=\"http://mns.aliyuncs.com/doc/v1/\"><TopicOwner>1</TopicOwner></MessagePublishTime></Notification>";
        assert_eq!(
            parse(&with_md5(doc_example, "upper"), doc_example.as_bytes()),
            Err(BodyError::Xml)
        );
        let json = "{\"TopicName\":\"t\"}";
        assert_eq!(
            parse(&with_md5(json, "upper"), json.as_bytes()),
            Err(BodyError::Missing("TopicOwner"))
        );
    }
}
