//! Alibaba ROS stack webhooks (`NotificationURLs`): the body, its checks, and its idempotency key.

use chrono::{DateTime, Utc};
use hub_core::event::content_id;
use serde_json::{Map, Value};

/// One ROS notification: `{"StackId","StackName","Status","Outputs"?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RosNotification {
    pub stack_id: String,
    pub stack_name: String,
    pub status: String,
    /// The body as received, parsed: the stored payload.
    pub body: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosError {
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("{0} is required and must be a non-empty string")]
    Missing(&'static str),
    #[error("Status is not a stack status")]
    BadStatus,
    #[error("StackName is not a valid stack name")]
    BadStackName,
    #[error("Outputs must be an array")]
    BadOutputs,
}

pub fn parse(body: &[u8]) -> Result<RosNotification, RosError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(body)) => parse_object(body),
        _ => Err(RosError::NotAnObject),
    }
}

/// The checks of [`parse`] on a body already parsed as a JSON object.
pub fn parse_object(body: Map<String, Value>) -> Result<RosNotification, RosError> {
    let text = |name: &'static str| -> Result<String, RosError> {
        match body.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
            _ => Err(RosError::Missing(name)),
        }
    };
    let stack_id = text("StackId")?;
    let stack_name = text("StackName")?;
    let status = text("Status")?;
    if !is_stack_status(&status) {
        return Err(RosError::BadStatus);
    }
    // The name is a path segment of `GET /stacks/{stack}`; ROS names are letters, digits, `-`, `_`.
    if stack_name.len() > 255
        || stack_name.contains('/')
        || stack_name.chars().any(char::is_control)
    {
        return Err(RosError::BadStackName);
    }
    match body.get("Outputs") {
        None | Some(Value::Null) | Some(Value::Array(_)) => {}
        Some(_) => return Err(RosError::BadOutputs),
    }
    Ok(RosNotification {
        stack_id,
        stack_name,
        status,
        body,
    })
}

/// `CREATE_COMPLETE`, `ROLLBACK_IN_PROGRESS`, ...: upper-case words joined by underscores.
pub fn is_stack_status(status: &str) -> bool {
    !status.is_empty()
        && status.len() <= 64
        && status.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

/// Whether a stack in this status is done: `*_COMPLETE`, `*_FAILED` and `ROLLBACK_*`, but never
/// `*_IN_PROGRESS` (so `ROLLBACK_IN_PROGRESS` and `UPDATE_COMPLETE_CLEANUP_IN_PROGRESS` are not).
pub fn is_terminal(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
        && (status.ends_with("_COMPLETE")
            || status.ends_with("_FAILED")
            || status.starts_with("ROLLBACK_"))
}

/// The idempotency key of a late ROS notification, one that is kept as history only.
///
/// ROS sends no event id and no time, and it retries a notification it could not deliver, so
/// the key is the hash of the notification's content (canonical JSON: key order and spacing do
/// not matter) plus the dedup window it arrived in; content stored under the window before's key
/// ([`RosKey::previous`]) is a duplicate too, so retries that straddle a window boundary
/// collapse. Notifications that set the status are keyed by their place in the stack's chain
/// instead ([`crate::lifecycle`]): a content key would collapse a status that comes back
/// (`UPDATE_COMPLETE`, `ROLLBACK_COMPLETE`, `UPDATE_COMPLETE`) into its first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosKey {
    pub current: String,
    pub previous: String,
}

pub fn idempotency_key(
    notification: &RosNotification,
    received_at: DateTime<Utc>,
    window_secs: u64,
) -> RosKey {
    // serde_json's map is ordered by key, so this serialization is canonical.
    let canonical = Value::Object(notification.body.clone()).to_string();
    let digest = content_id(&[canonical.as_bytes()]);
    let window = received_at
        .timestamp()
        .div_euclid(window_secs.max(1) as i64);
    RosKey {
        current: format!("ros-{}-{}", &digest[..32], window),
        previous: format!("ros-{}-{}", &digest[..32], window - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DOC_EXAMPLE: &str = r#"{"Outputs":[{"Description":"No description given","OutputKey":"InstanceId","OutputValue":"i-xxx"}],"StackId":"80bd6b6c-e888-4573-ae3b-93d29113****","StackName":"test-notification-url","Status":"CREATE_COMPLETE"}"#;

    #[test]
    fn parses_the_documented_example() {
        let n = parse(DOC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(n.stack_id, "80bd6b6c-e888-4573-ae3b-93d29113****");
        assert_eq!(n.stack_name, "test-notification-url");
        assert_eq!(n.status, "CREATE_COMPLETE");
        assert_eq!(n.body["Outputs"][0]["OutputValue"], "i-xxx");
    }

    #[test]
    fn outputs_may_be_missing_null_or_empty() {
        for body in [
            r#"{"StackId":"a","StackName":"n","Status":"DELETE_COMPLETE"}"#,
            r#"{"StackId":"a","StackName":"n","Status":"DELETE_COMPLETE","Outputs":null}"#,
            r#"{"StackId":"a","StackName":"n","Status":"DELETE_COMPLETE","Outputs":[]}"#,
        ] {
            assert!(parse(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_notification() {
        let cases: &[(&str, RosError)] = &[
            ("not json", RosError::NotAnObject),
            ("[1,2]", RosError::NotAnObject),
            (
                r#"{"StackName":"n","Status":"CREATE_COMPLETE"}"#,
                RosError::Missing("StackId"),
            ),
            (
                r#"{"StackId":"a","Status":"CREATE_COMPLETE"}"#,
                RosError::Missing("StackName"),
            ),
            (
                r#"{"StackId":"a","StackName":"n"}"#,
                RosError::Missing("Status"),
            ),
            (
                r#"{"StackId":"a","StackName":" ","Status":"X"}"#,
                RosError::Missing("StackName"),
            ),
            (
                r#"{"StackId":7,"StackName":"n","Status":"X"}"#,
                RosError::Missing("StackId"),
            ),
            (
                r#"{"StackId":"a","StackName":"n","Status":"done!"}"#,
                RosError::BadStatus,
            ),
            (
                r#"{"StackId":"a","StackName":"a/b","Status":"X"}"#,
                RosError::BadStackName,
            ),
            (
                r#"{"StackId":"a","StackName":"n","Status":"X","Outputs":{}}"#,
                RosError::BadOutputs,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(parse(body.as_bytes()).unwrap_err(), *expected, "{body}");
        }
    }

    #[test]
    fn terminal_statuses() {
        for done in [
            "CREATE_COMPLETE",
            "UPDATE_FAILED",
            "ROLLBACK_COMPLETE",
            "ROLLBACK_FAILED",
            "DELETE_COMPLETE",
            "CHECK_COMPLETE",
            "IMPORT_CREATE_COMPLETE",
            "CREATE_ROLLBACK_COMPLETE",
        ] {
            assert!(is_terminal(done), "{done}");
        }
        for running in [
            "CREATE_IN_PROGRESS",
            "ROLLBACK_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "REVIEW_IN_PROGRESS",
        ] {
            assert!(!is_terminal(running), "{running}");
        }
    }

    #[test]
    fn key_ignores_json_formatting_and_tracks_windows() {
        let a = parse(br#"{"StackId":"a","StackName":"n","Status":"UPDATE_COMPLETE"}"#).unwrap();
        let b = parse(
            b"{ \"Status\": \"UPDATE_COMPLETE\",\n \"StackName\": \"n\", \"StackId\": \"a\" }",
        )
        .unwrap();
        let at = Utc.with_ymd_and_hms(2024, 1, 1, 0, 10, 0).unwrap();
        let ka = idempotency_key(&a, at, 600);
        assert_eq!(ka, idempotency_key(&b, at, 600));
        let next_window = idempotency_key(&a, at + chrono::Duration::seconds(600), 600);
        assert_eq!(next_window.previous, ka.current);
        let other_status =
            parse(br#"{"StackId":"a","StackName":"n","Status":"UPDATE_FAILED"}"#).unwrap();
        assert_ne!(idempotency_key(&other_status, at, 600).current, ka.current);
    }
}
