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
/// strings of varying length (compare after right-padding with `0`); VK gives a number
/// (`docs/protocols.md` §2.1–2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequencer {
    normalized: String,
    form: SequencerForm,
}

/// What a sequencer is, as far as anyone can check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequencerForm {
    /// VK: whole seconds since the epoch (§2.1), so it can be compared with a clock.
    Seconds(u64),
    /// AWS: opaque hex (§2.2), meaningful only against other sequencers of the same key.
    Hex,
}

impl Sequencer {
    /// The normalized width. Wider than any hex sequencer accepted, so padding never truncates,
    /// and unchanged since ledgers were first written (their entries compare with new claims).
    const HEX_WIDTH: usize = 64;
    /// The longest hex sequencer accepted. S3's have 16 to 18 digits; twice that leaves room
    /// for growth, and anything longer is a sender trying to get ahead of every later change.
    pub const MAX_HEX_DIGITS: usize = 32;
    /// How far ahead of our clock a VK sequencer may be: clocks differ a little, but a
    /// sequencer far in the future would make every real change until then `superseded`.
    pub const MAX_LEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

    pub fn from_json(value: &Value) -> Result<Option<Self>, String> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => n
                .as_u64()
                .map(|n| {
                    Some(Sequencer {
                        normalized: format!("{n:020}"),
                        form: SequencerForm::Seconds(n),
                    })
                })
                .ok_or_else(|| "sequencer is not a non-negative integer".into()),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => {
                if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err("sequencer is not a hex string".into());
                }
                if s.len() > Self::MAX_HEX_DIGITS {
                    return Err(format!(
                        "sequencer is longer than {} hex digits",
                        Self::MAX_HEX_DIGITS
                    ));
                }
                let mut padded = s.to_ascii_uppercase();
                padded.extend(std::iter::repeat_n('0', Self::HEX_WIDTH - s.len()));
                Ok(Some(Sequencer {
                    normalized: padded,
                    form: SequencerForm::Hex,
                }))
            }
            _ => Err("sequencer is neither a number nor a string".into()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    pub fn form(&self) -> SequencerForm {
        self.form
    }

    /// A sequencer in seconds must not be further ahead of `now` than [`Self::MAX_LEAD`].
    pub fn check_plausible(&self, now: DateTime<Utc>) -> Result<(), String> {
        match self.form {
            SequencerForm::Hex => Ok(()),
            SequencerForm::Seconds(seconds) => {
                let latest = (now + Self::MAX_LEAD).timestamp();
                if i64::try_from(seconds).is_ok_and(|s| s <= latest) {
                    Ok(())
                } else {
                    Err("sequencer is in the future".into())
                }
            }
        }
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
    /// `s3.object.eTag`: which content this change wrote.
    pub etag: Option<String>,
    /// `s3.object.versionId`, in versioned buckets.
    pub version_id: Option<String>,
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

    /// Bucket, key, event name and sequencer identify a change, together with the version it
    /// wrote (`versionId`, `eTag`, `size`): VK's sequencers are whole seconds, so two writes of
    /// one key within a second share one (§2.1) and only the version tells them apart. A retry
    /// carries every field unchanged. Without a sequencer (S3 omits it for some event kinds) the
    /// whole record is the identity.
    pub fn event_id(&self) -> String {
        let name = self.normalized_name().as_bytes();
        match &self.sequencer {
            Some(sequencer) => {
                let size = self.size.map(|s| s.to_string()).unwrap_or_default();
                content_id(&[
                    self.bucket.as_bytes(),
                    self.key.as_bytes(),
                    name,
                    sequencer.as_str().as_bytes(),
                    self.version_id.as_deref().unwrap_or_default().as_bytes(),
                    self.etag.as_deref().unwrap_or_default().as_bytes(),
                    size.as_bytes(),
                ])
            }
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
    let object_text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    Ok(ObjectRecord {
        size: object.get("size").and_then(Value::as_u64),
        etag: object_text("eTag"),
        version_id: object_text("versionId"),
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
            json!("F".repeat(64)),
            json!("0".repeat(33)),
        ] {
            assert!(Sequencer::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sequencers_in_seconds_may_not_run_ahead_of_the_clock() {
        let now = parse_time("2024-05-01T10:00:00Z").unwrap();
        let num = |n: u64| Sequencer::from_json(&json!(n)).unwrap().unwrap();
        let at = now.timestamp() as u64;
        assert_eq!(num(at).form(), SequencerForm::Seconds(at));
        assert!(num(at).check_plausible(now).is_ok());
        assert!(num(at + 300).check_plausible(now).is_ok());
        assert!(num(1).check_plausible(now).is_ok());
        for ahead in [at + 301, at + 86_400, u64::MAX, i64::MAX as u64 + 1] {
            assert!(num(ahead).check_plausible(now).is_err(), "{ahead}");
        }
        let hex = Sequencer::from_json(&json!("F".repeat(32)))
            .unwrap()
            .unwrap();
        assert_eq!(hex.form(), SequencerForm::Hex);
        assert!(hex.check_plausible(now).is_ok());
    }

    #[test]
    fn another_version_in_the_same_second_is_another_event() {
        let mut a = vk_body()["Records"][0].clone();
        let id = |record: &Value| records(json!({"Records": [record]}))[0].event_id();
        let base = id(&a);
        assert_eq!(base, id(&a.clone()));
        for (field, value) in [
            ("eTag", json!("0cc175b9c0f1b6a831c399e269772661")),
            ("size", json!(101)),
            ("versionId", json!("3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")),
        ] {
            let mut other = a.clone();
            other["s3"]["object"][field] = value;
            assert_ne!(id(&other), base, "{field}");
        }
        a["s3"]["object"]["versionId"] = json!("v1");
        assert_eq!(
            records(json!({"Records": [a]}))[0].version_id.as_deref(),
            Some("v1")
        );
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
