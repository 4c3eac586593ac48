//! S3 object notifications in both dialects: AWS (`eventVersion` 2.x, form-encoded keys, hex
//! sequencers, no `s3:` prefix) and VK Cloud (`eventVersion` 1.0, raw keys, numeric sequencers,
//! `s3:` prefix), plus the `s3:TestEvent` that S3 sends when a notification is configured.

use chrono::{DateTime, Utc};
use hub_core::event::{content_id, parse_time};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("neither Records nor an s3:TestEvent")]
    UnknownKind,
    #[error("Records is empty")]
    NoRecords,
    #[error("record {index}: {reason}")]
    BadRecord { index: usize, reason: String },
}

/// A sequencer, normalized so that comparing the strings compares the events. AWS gives hex
/// strings of varying length (compare after right-padding with `0`); VK gives a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequencer(String);

impl Sequencer {
    /// Wider than any sequencer S3 has used (16 to 18 digits), so padding never truncates.
    const HEX_WIDTH: usize = 64;

    pub fn from_json(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .map(|n| Some(Sequencer(format!("{n:020}"))))
                .ok_or_else(|| "sequencer is not a non-negative integer".into()),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => {
                if s.len() > Self::HEX_WIDTH || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("sequencer is not a hex string".into());
                }
                let mut padded = s.to_ascii_uppercase();
                padded.extend(std::iter::repeat_n('0', Self::HEX_WIDTH - s.len()));
                Ok(Some(Sequencer(padded)))
            }
            _ => Err("sequencer is neither a number nor a string".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a record does to the object, as far as a mirror is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Removed,
    /// Restores, replication, lifecycle transitions, tagging, ACLs: stored, not mirrored.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    /// `eventName` as the sender spelled it (`s3:ObjectCreated:Put` or `ObjectCreated:Put`).
    pub event_name: String,
    pub bucket: String,
    /// The object key, decoded.
    pub key: String,
    pub sequencer: Option<Sequencer>,
    pub event_time: Option<DateTime<Utc>>,
    pub size: Option<u64>,
    /// The record as received, for the stored payload.
    pub raw: Value,
}

impl ObjectRecord {
    /// The event name without the `s3:` prefix that VK keeps and AWS drops.
    pub fn normalized_name(&self) -> &str {
        self.event_name
            .strip_prefix("s3:")
            .unwrap_or(&self.event_name)
    }

    pub fn change(&self) -> Change {
        let name = self.normalized_name();
        if name.starts_with("ObjectCreated:") {
            Change::Created
        } else if name.starts_with("ObjectRemoved:") {
            Change::Removed
        } else {
            Change::Other
        }
    }

    /// `bucket/key`: the subject of the stored event and the mirror ledger's object.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.bucket, self.key)
    }

    /// Bucket, key, event name and sequencer identify a change. Without a sequencer (S3 omits it
    /// for some event kinds) the whole record is the identity: a retry carries it unchanged.
    pub fn event_id(&self) -> String {
        let name = self.normalized_name().as_bytes();
        match &self.sequencer {
            Some(sequencer) => content_id(&[
                self.bucket.as_bytes(),
                self.key.as_bytes(),
                name,
                sequencer.as_str().as_bytes(),
            ]),
            None => content_id(&[
                self.bucket.as_bytes(),
                self.key.as_bytes(),
                name,
                self.raw.to_string().as_bytes(),
            ]),
        }
    }
}

/// `{"Service":"Amazon S3","Event":"s3:TestEvent",...}`: no records, but a receiver must take it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestEvent {
    pub bucket: String,
    pub time: Option<DateTime<Utc>>,
    pub raw: Value,
}

impl TestEvent {
    pub const EVENT_TYPE: &'static str = "s3:TestEvent";

    pub fn event_id(&self) -> String {
        let field = |name: &str| self.raw.get(name).map(Value::to_string).unwrap_or_default();
        content_id(&[
            Self::EVENT_TYPE.as_bytes(),
            self.bucket.as_bytes(),
            field("RequestId").as_bytes(),
            field("Time").as_bytes(),
        ])
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum S3Notification {
    Records(Vec<ObjectRecord>),
    Test(TestEvent),
}

pub fn parse(bytes: &[u8]) -> Result<S3Notification, RecordError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => parse_object(object),
        _ => Err(RecordError::NotAnObject),
    }
}

pub fn parse_object(mut object: Map<String, Value>) -> Result<S3Notification, RecordError> {
    if object.get("Event").and_then(Value::as_str) == Some(TestEvent::EVENT_TYPE) {
        let bucket = object
            .get("Bucket")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let time = object
            .get("Time")
            .and_then(Value::as_str)
            .and_then(parse_time);
        return Ok(S3Notification::Test(TestEvent {
            bucket,
            time,
            raw: Value::Object(object),
        }));
    }
    let Some(Value::Array(records)) = object.remove("Records") else {
        return Err(RecordError::UnknownKind);
    };
    if records.is_empty() {
        return Err(RecordError::NoRecords);
    }
    records
        .into_iter()
        .enumerate()
        .map(|(index, raw)| {
            parse_record(raw).map_err(|reason| RecordError::BadRecord { index, reason })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(S3Notification::Records)
}

fn parse_record(raw: Value) -> Result<ObjectRecord, String> {
    let text = |path: &[&str]| -> Option<&str> {
        path.iter()
            .try_fold(&raw, |value, name| value.get(name))
            .and_then(Value::as_str)
    };
    let event_name = text(&["eventName"])
        .filter(|s| !s.is_empty())
        .ok_or("eventName is missing")?
        .to_owned();
    let bucket = text(&["s3", "bucket", "name"])
        .filter(|s| !s.is_empty())
        .ok_or("s3.bucket.name is missing")?
        .to_owned();
    let encoded_key = text(&["s3", "object", "key"])
        .filter(|s| !s.is_empty())
        .ok_or("s3.object.key is missing")?;
    let key = if is_aws_dialect(&raw) {
        decode_form_key(encoded_key)
    } else {
        encoded_key.to_owned()
    };
    let object = &raw["s3"]["object"];
    let sequencer = Sequencer::from_json(object.get("sequencer").unwrap_or(&Value::Null))?;
    let event_time = match text(&["eventTime"]) {
        Some(t) => Some(parse_time(t).ok_or("eventTime is not RFC 3339")?),
        None => None,
    };
    Ok(ObjectRecord {
        size: object.get("size").and_then(Value::as_u64),
        event_name,
        bucket,
        key,
        sequencer,
        event_time,
        raw,
    })
}

/// AWS records are `eventVersion` 2.x and carry form-encoded keys; VK's are 1.0 and raw.
fn is_aws_dialect(record: &Value) -> bool {
    let version = record
        .get("eventVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    matches!(major, Some(m) if m >= 2)
}

/// `application/x-www-form-urlencoded`: `+` is a space, then percent-decoding (as UTF-8).
pub fn decode_form_key(encoded: &str) -> String {
    form_urlencoded::parse(format!("k={encoded}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aws_record(key: &str, name: &str, sequencer: &str) -> Value {
        json!({
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2024-05-01T10:00:00.000Z", "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "photos", "arn": "arn:aws:s3:::photos"},
                   "object": {"key": key, "size": 1024, "sequencer": sequencer}}
        })
    }

    fn vk_body() -> Value {
        json!({"Records": [{"s3": {"object": {"eTag": "aed563ecafb4bcc5654c597a421547b2",
            "sequencer": 1577453615u64, "key": "some-file-to-bucket", "size": 100},
            "configurationId": "1", "bucket": {"name": "bucketA",
            "ownerIdentity": {"principalId": "mcs2883541269"}}, "s3SchemaVersion": "1.0"},
            "eventVersion": "1.0", "requestParameters": {"sourceIPAddress": "185.6.245.156"},
            "userIdentity": {"principalId": "2407013e-cbc1-415f-9102-16fb9bd6946b"},
            "eventName": "s3:ObjectCreated:Put", "awsRegion": "ru-msk", "eventSource": "aws:s3",
            "responseElements": {"x-amz-request-id": "VGJR5rtJ"}}]})
    }

    fn records(body: Value) -> Vec<ObjectRecord> {
        match parse(body.to_string().as_bytes()).unwrap() {
            S3Notification::Records(records) => records,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn vk_records_keep_raw_keys_and_numeric_sequencers() {
        let record = &records(vk_body())[0];
        assert_eq!(record.subject(), "bucketA/some-file-to-bucket");
        assert_eq!(record.normalized_name(), "ObjectCreated:Put");
        assert_eq!(record.change(), Change::Created);
        assert_eq!(
            record.sequencer.as_ref().unwrap().as_str(),
            "00000000001577453615"
        );
        assert_eq!(record.event_time, None);
        assert_eq!(record.size, Some(100));
    }

    #[test]
    fn aws_keys_are_form_decoded() {
        let body = json!({"Records": [aws_record("red+flower%C3%A9+%2B1.jpg", "ObjectCreated:Put", "0055AED6DCD90281E5")]});
        let record = &records(body)[0];
        assert_eq!(record.key, "red flower\u{e9} +1.jpg");
        assert_eq!(record.subject(), "photos/red flower\u{e9} +1.jpg");
        assert_eq!(
            record.event_time,
            Some(parse_time("2024-05-01T10:00:00Z").unwrap())
        );
    }

    #[test]
    fn both_event_name_forms_mean_the_same_change() {
        let aws = aws_record("k", "ObjectRemoved:Delete", "01");
        let mut vk = aws.clone();
        vk["eventName"] = json!("s3:ObjectRemoved:Delete");
        let (a, v) = (
            &records(json!({"Records": [aws]}))[0],
            &records(json!({"Records": [vk]}))[0],
        );
        assert_eq!(a.change(), Change::Removed);
        assert_eq!(v.change(), Change::Removed);
        assert_eq!(a.event_id(), v.event_id());
        for (name, change) in [
            ("ObjectRemoved:DeleteMarkerCreated", Change::Removed),
            ("s3:ObjectCreated:CompleteMultipartUpload", Change::Created),
            ("ObjectRestore:Completed", Change::Other),
            ("LifecycleTransition", Change::Other),
        ] {
            let record = &records(json!({"Records": [aws_record("k", name, "01")]}))[0];
            assert_eq!(record.change(), change, "{name}");
        }
    }

    #[test]
    fn hex_sequencers_compare_after_right_padding() {
        let seq = |s: &str| Sequencer::from_json(&json!(s)).unwrap().unwrap();
        // "0055AED6DCD90281E5" < "0055AED6DCD90281E6", and the shorter "0055AED6DCD90281F"
        // pads to "...F0", later than both.
        assert!(seq("0055AED6DCD90281E5").as_str() < seq("0055AED6DCD90281E6").as_str());
        assert!(seq("0055AED6DCD90281E6").as_str() < seq("0055AED6DCD90281F").as_str());
        assert_eq!(seq("0055aed6dc"), seq("0055AED6DC"));
        let num = |n: u64| Sequencer::from_json(&json!(n)).unwrap().unwrap();
        assert!(num(9).as_str() < num(10).as_str());
        assert!(num(1577453615).as_str() < num(u64::MAX).as_str());
        assert_eq!(Sequencer::from_json(&Value::Null), Ok(None));
        for bad in [
            json!("xyz"),
            json!(-1),
            json!(1.5),
            json!([1]),
            json!("A".repeat(65)),
        ] {
            assert!(Sequencer::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identity_follows_bucket_key_name_and_sequencer() {
        let id = |key: &str, name: &str, seq: &str| {
            records(json!({"Records": [aws_record(key, name, seq)]}))[0].event_id()
        };
        let base = id("a", "ObjectCreated:Put", "01");
        assert_eq!(base, id("a", "ObjectCreated:Put", "01"));
        assert_ne!(base, id("b", "ObjectCreated:Put", "01"));
        assert_ne!(base, id("a", "ObjectCreated:Copy", "01"));
        assert_ne!(base, id("a", "ObjectCreated:Put", "02"));
    }

    #[test]
    fn the_test_event_is_accepted() {
        let body = json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
            "Time": "2024-05-01T10:00:00.000Z", "Bucket": "photos",
            "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"});
        let S3Notification::Test(test) = parse(body.to_string().as_bytes()).unwrap() else {
            panic!("not a test event")
        };
        assert_eq!(test.bucket, "photos");
        assert!(test.time.is_some());
        let mut other = body.clone();
        other["RequestId"] = json!("other");
        let S3Notification::Test(other) = parse(other.to_string().as_bytes()).unwrap() else {
            panic!()
        };
        assert_ne!(test.event_id(), other.event_id());
    }

    #[test]
    fn malformed_bodies_are_refused_with_the_reason() {
        assert_eq!(parse(b"[]"), Err(RecordError::NotAnObject));
        assert_eq!(parse(b"{}"), Err(RecordError::UnknownKind));
        assert_eq!(parse(br#"{"Records": []}"#), Err(RecordError::NoRecords));
        let no_key = json!({"Records": [vk_body()["Records"][0].clone(), {"eventName": "x", "s3": {"bucket": {"name": "b"}, "object": {}}}]});
        let err = parse(no_key.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "record 1: s3.object.key is missing");
        let mut bad_time = aws_record("k", "ObjectCreated:Put", "01");
        bad_time["eventTime"] = json!("yesterday");
        assert!(parse(json!({"Records": [bad_time]}).to_string().as_bytes()).is_err());
    }
}
