//! The body Tsuru sends without a template: `json.Marshal` of the finished event
//! (`docs/protocols.md` §5.3, §5.4). Only what the hub keys and files the event by is required;
//! every other field, known or not, is kept as sent.
//!
//! Rules, where Tsuru's code leaves a choice to the receiver:
//! - The body must be one JSON object, and no object in it may repeat a key: a repeated key is
//!   read differently by different parsers (first or last wins), so the stored payload could say
//!   something else than what was filed. 400.
//! - `UniqueID` is a Mongo ObjectID in hex (§5.4): exactly 24 hex digits. The idempotency key is
//!   its lowercase form, which is what `ObjectID.Hex()` writes; an uppercase copy of an event is
//!   the same event.
//! - `Kind.Name` must be a non-empty string; `Target` an object with a non-empty string `Type` and
//!   a string `Value` (empty for `global` targets).
//! - The event time is `EndTime`, or `StartTime` when `EndTime` is Go's zero time
//!   (`0001-01-01T00:00:00Z`). A time that is absent, not RFC 3339, or past year 9999 (which Go
//!   cannot marshal anyway) is treated as absent, never refused: Tsuru does not retry (§5.3), so a
//!   refusal would lose the event for a field that only orders it.
//! - The outcome is Tsuru's own rule (§5.2): failed when `Error` is a non-empty string.
//! - Key attributes stay small: `Kind.Name` and the subject may each be at most
//!   [`MAX_KEY_TEXT_BYTES`]. DynamoDB refuses index keys over 2048 bytes, and that refusal is not a
//!   store outage; no Tsuru name comes close.

use chrono::{DateTime, Datelike, Timelike, Utc};
use hub_core::event::parse_time;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The most bytes `Kind.Name` and `Target.Type/Target.Value` may each have.
pub const MAX_KEY_TEXT_BYTES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is not a JSON object")]
    NotObject,
    #[error("UniqueID must be a string of 24 hexadecimal digits")]
    UniqueId,
    #[error("Kind.Name must be a non-empty string")]
    KindName,
    #[error("Target must be an object with a non-empty string Type and a string Value")]
    Target,
    #[error("Kind.Name and Target may be at most {MAX_KEY_TEXT_BYTES} bytes each")]
    TooLong,
}

/// One Tsuru event, as the hub files it.
#[derive(Debug, Clone, PartialEq)]
pub struct TsuruEvent {
    /// `UniqueID`, lowercase: the idempotency key.
    pub unique_id: String,
    /// `Kind.Name`: the stored `event_type`.
    pub kind_name: String,
    /// `Target.Type` and `Target.Value`.
    pub target_type: String,
    pub target_value: String,
    /// `EndTime`, else `StartTime`; see the module rules.
    pub occurred_at: Option<DateTime<Utc>>,
    /// `Error` when the event failed; `None` when it succeeded.
    pub error: Option<String>,
    /// The body exactly as received: every field, in Tsuru's order, numbers untouched.
    pub payload: String,
}

impl TsuruEvent {
    /// The stored `subject`: `Target.Type/Target.Value`, e.g. `app/myapp`.
    pub fn subject(&self) -> String {
        format!("{}/{}", self.target_type, self.target_value)
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// Reads an authenticated body. Nothing is read before the token has been checked.
pub fn parse(body: &[u8]) -> Result<TsuruEvent, BodyError> {
    let value = strict_json(body)?;
    let object = value.as_object().ok_or(BodyError::NotObject)?;
    let unique_id = object
        .get("UniqueID")
        .and_then(Value::as_str)
        .filter(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(BodyError::UniqueId)?
        .to_ascii_lowercase();
    let kind_name = text_at(&value, &["Kind", "Name"])
        .filter(|name| !name.is_empty())
        .ok_or(BodyError::KindName)?
        .to_owned();
    let target_type = text_at(&value, &["Target", "Type"])
        .filter(|t| !t.is_empty())
        .ok_or(BodyError::Target)?
        .to_owned();
    let target_value = text_at(&value, &["Target", "Value"])
        .ok_or(BodyError::Target)?
        .to_owned();
    let event = TsuruEvent {
        unique_id,
        kind_name,
        target_type,
        target_value,
        occurred_at: event_time(&value),
        error: text_at(&value, &["Error"])
            .filter(|e| !e.is_empty())
            .map(str::to_owned),
        // Valid UTF-8: serde_json has just read all of it as JSON text.
        payload: std::str::from_utf8(body)
            .map_err(|e| BodyError::NotJson(e.to_string()))?
            .to_owned(),
    };
    if event.kind_name.len() > MAX_KEY_TEXT_BYTES || event.subject().len() > MAX_KEY_TEXT_BYTES {
        return Err(BodyError::TooLong);
    }
    Ok(event)
}

fn text_at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

/// `EndTime`, or `StartTime` when `EndTime` is Go's zero time (§5.4); unusable times are absent.
fn event_time(value: &Value) -> Option<DateTime<Utc>> {
    let time = |name: &str| text_at(value, &[name]).and_then(parse_time);
    match time("EndTime") {
        Some(end) if !is_go_zero_time(&end) => Some(end),
        _ => time("StartTime").filter(|start| !is_go_zero_time(start)),
    }
}

/// `time.Time{}`, which Go marshals as `0001-01-01T00:00:00Z`.
fn is_go_zero_time(at: &DateTime<Utc>) -> bool {
    (
        at.year(),
        at.month(),
        at.day(),
        at.num_seconds_from_midnight(),
        at.nanosecond(),
    ) == (1, 1, 1, 0, 0)
}

/// Parses JSON like `serde_json::from_slice::<Value>`, but refuses an object that repeats a key,
/// at any depth (serde_json would silently keep the last one).
fn strict_json(body: &[u8]) -> Result<Value, BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = StrictValue
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|e| BodyError::NotJson(e.to_string()))?;
    Ok(value)
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Only validated, never stored: the payload is the body itself.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom("an object repeats a key"));
            }
            let value = map.next_value_seed(StrictValue)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "65e1c2d3a4b5c6d7e8f90123";

    fn body(value: &Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    fn minimal() -> Value {
        json!({"UniqueID": ID, "Kind": {"Name": "app.deploy"}, "Target": {"Type": "app", "Value": "myapp"}})
    }

    #[test]
    fn the_minimal_event_is_filed_by_id_kind_and_target() {
        let event = parse(&body(&minimal())).unwrap();
        assert_eq!(event.unique_id, ID);
        assert_eq!(event.kind_name, "app.deploy");
        assert_eq!(event.subject(), "app/myapp");
        assert_eq!(event.occurred_at, None);
        assert!(!event.failed());
    }

    #[test]
    fn the_payload_is_the_body_as_sent_unknown_fields_order_and_escapes_included() {
        // Go's encoder escapes `>` and keeps declaration order; serde_json would do neither.
        let text = format!(
            r#"{{"UniqueID":"{ID}","Target":{{"Type":"app","Value":"myapp"}},"Kind":{{"Type":"permission","Name":"app.deploy"}},"Log":" \u003e done","Future":{{"Big":123456789012345678901234567890}}}}"#
        );
        let event = parse(text.as_bytes()).unwrap();
        assert_eq!(event.payload, text);
    }

    #[test]
    fn the_id_is_24_hex_digits_and_keyed_in_lowercase() {
        let mut upper = minimal();
        upper["UniqueID"] = ID.to_uppercase().into();
        assert_eq!(parse(&body(&upper)).unwrap().unique_id, ID);
        for bad in [
            json!("65e1c2d3a4b5c6d7e8f9012"),
            json!("65e1c2d3a4b5c6d7e8f901234"),
            json!("65e1c2d3a4b5c6d7e8f9012g"),
            json!(" 65e1c2d3a4b5c6d7e8f9012"),
            json!(""),
            json!(12345),
            json!({"$oid": ID}),
            Value::Null,
        ] {
            let mut event = minimal();
            event["UniqueID"] = bad.clone();
            assert_eq!(parse(&body(&event)), Err(BodyError::UniqueId), "{bad}");
        }
        let mut without = minimal();
        without.as_object_mut().unwrap().remove("UniqueID");
        assert_eq!(parse(&body(&without)), Err(BodyError::UniqueId));
    }

    #[test]
    fn kind_name_and_target_are_required() {
        let cases: [(&str, Value, BodyError); 8] = [
            ("/Kind", Value::Null, BodyError::KindName),
            ("/Kind/Name", json!(""), BodyError::KindName),
            ("/Kind/Name", json!(["app"]), BodyError::KindName),
            ("/Target", Value::Null, BodyError::Target),
            ("/Target", json!("app/myapp"), BodyError::Target),
            ("/Target/Type", json!(""), BodyError::Target),
            ("/Target/Value", Value::Null, BodyError::Target),
            ("/Target/Value", json!(7), BodyError::Target),
        ];
        for (pointer, replacement, expected) in cases {
            let mut event = minimal();
            *event.pointer_mut(pointer).unwrap() = replacement.clone();
            assert_eq!(
                parse(&body(&event)),
                Err(expected),
                "{pointer} = {replacement}"
            );
        }
        let mut global = minimal();
        global["Target"] = json!({"Type": "global", "Value": ""});
        assert_eq!(parse(&body(&global)).unwrap().subject(), "global/");
    }

    #[test]
    fn only_a_json_object_is_an_event() {
        for text in [
            "", "   ", "not json", "[]", "[{}]", "null", "\"x\"", "42", "{} {}",
        ] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(
                matches!(err, BodyError::NotJson(_) | BodyError::NotObject),
                "{text:?}: {err:?}"
            );
        }
        let array = format!("[{}]", minimal());
        assert_eq!(parse(array.as_bytes()), Err(BodyError::NotObject));
        assert!(matches!(parse(b"\xff{}"), Err(BodyError::NotJson(_))));
    }

    #[test]
    fn a_repeated_key_at_any_depth_is_refused() {
        let top = format!(
            r#"{{"UniqueID":"{ID}","Kind":{{"Name":"app.deploy"}},"Target":{{"Type":"app","Value":"myapp"}},"Error":"","Error":"boom"}}"#
        );
        let nested = format!(
            r#"{{"UniqueID":"{ID}","Kind":{{"Name":"app.deploy"}},"Target":{{"Type":"app","Value":"a","Value":"b"}}}}"#
        );
        let deep = format!(
            r#"{{"UniqueID":"{ID}","Kind":{{"Name":"healer"}},"Target":{{"Type":"node","Value":"n"}},"X":[{{"a":1,"a":2}}]}}"#
        );
        for text in [top, nested, deep] {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, BodyError::NotJson(m) if m.contains("repeats a key")),
                "{text}: {err:?}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(matches!(parse(deep.as_bytes()), Err(BodyError::NotJson(_))));
    }

    #[test]
    fn the_time_is_end_time_else_start_time_and_bad_times_are_absent() {
        let at = |text: &str| Some(parse_time(text).unwrap());
        let zero = "0001-01-01T00:00:00Z";
        let cases: [(Value, Value, Option<DateTime<Utc>>); 8] = [
            (
                json!("2024-03-01T11:58:02.481516Z"),
                json!("2024-03-01T12:00:00.913274Z"),
                at("2024-03-01T12:00:00.913274Z"),
            ),
            (
                json!("2024-03-01T11:58:02.481516Z"),
                json!(zero),
                at("2024-03-01T11:58:02.481516Z"),
            ),
            (json!(zero), json!(zero), None),
            (
                json!("2024-03-01T11:58:02Z"),
                Value::Null,
                at("2024-03-01T11:58:02Z"),
            ),
            (
                json!("2024-03-01T11:58:02Z"),
                json!("yesterday"),
                at("2024-03-01T11:58:02Z"),
            ),
            (
                json!("2024-03-01T11:58:02Z"),
                json!("+10000-01-01T00:00:00Z"),
                at("2024-03-01T11:58:02Z"),
            ),
            (json!("yesterday"), json!(zero), None),
            (
                json!(1709294400),
                json!("2024-03-01T14:00:00+02:00"),
                at("2024-03-01T12:00:00Z"),
            ),
        ];
        for (start, end, expected) in cases {
            let mut event = minimal();
            event["StartTime"] = start.clone();
            event["EndTime"] = end.clone();
            assert_eq!(
                parse(&body(&event)).unwrap().occurred_at,
                expected,
                "{start} {end}"
            );
        }
    }

    #[test]
    fn failed_means_a_non_empty_error() {
        for (error, failed) in [
            (json!(""), None),
            (Value::Null, None),
            (json!("exit status 1"), Some("exit status 1")),
        ] {
            let mut event = minimal();
            event["Error"] = error;
            assert_eq!(parse(&body(&event)).unwrap().error.as_deref(), failed);
        }
    }

    #[test]
    fn key_texts_are_bounded() {
        let long = "a".repeat(MAX_KEY_TEXT_BYTES);
        let mut event = minimal();
        event["Target"]["Value"] = long.clone().into();
        assert_eq!(parse(&body(&event)), Err(BodyError::TooLong));
        let mut event = minimal();
        event["Kind"]["Name"] = long[..MAX_KEY_TEXT_BYTES - 1].into();
        assert!(parse(&body(&event)).is_ok());
        event["Kind"]["Name"] = (long + "a").into();
        assert_eq!(parse(&body(&event)), Err(BodyError::TooLong));
    }
}
