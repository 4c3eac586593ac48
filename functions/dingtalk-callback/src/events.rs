//! What a decrypted DingTalk event is about, and when it happened (`docs/protocols.md` §1.6).

use chrono::{DateTime, Utc};
use hub_core::event::time_from_millis;
use serde_json::{Map, Value};

/// URL checks: answered with the encrypted success, never stored as business events.
pub fn is_url_check(event_type: &str) -> bool {
    matches!(event_type, "check_url" | "check_create_suite_url")
}

/// A field that DingTalk sends as a number or as a string of digits.
fn millis(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A list of ids, or a single id.
fn ids(value: Option<&Value>) -> Vec<String> {
    let id = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match value {
        Some(Value::Array(list)) => list.iter().filter_map(id).collect(),
        Some(other) => id(other).into_iter().collect(),
        None => Vec::new(),
    }
}

fn text<'a>(event: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    event
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The subject that makes history queries useful:
/// - approval (`bpms_*`) events: the `processInstanceId`, so task and instance events of one
///   approval are one history;
/// - contact and org events: `user:<ids>` or `dept:<ids>` (comma-joined when several);
/// - suite tickets: `suite:<SuiteKey>`;
/// - anything else: `corp:<CorpId>`, or `owner:<owner key>` when the event names no corp.
pub fn subject(event_type: &str, event: &Map<String, Value>, owner_key: &str) -> String {
    if event_type.starts_with("bpms_") {
        if let Some(instance) = text(event, "processInstanceId") {
            return instance.to_owned();
        }
    }
    let users = ids(event.get("UserId").or_else(|| event.get("userId")));
    if !users.is_empty() {
        return format!("user:{}", users.join(","));
    }
    let depts = ids(event.get("DeptId").or_else(|| event.get("deptId")));
    if !depts.is_empty() {
        return format!("dept:{}", depts.join(","));
    }
    if let Some(suite) = text(event, "SuiteKey") {
        return format!("suite:{suite}");
    }
    match text(event, "CorpId").or_else(|| text(event, "corpId")) {
        Some(corp) => format!("corp:{corp}"),
        None => format!("owner:{owner_key}"),
    }
}

/// When it happened: `TimeStamp` (ms) where given; for approvals, `finishTime` or `createTime`.
pub fn occurred_at(event: &Map<String, Value>) -> Option<DateTime<Utc>> {
    millis(event.get("TimeStamp"))
        .or_else(|| millis(event.get("finishTime")))
        .or_else(|| millis(event.get("createTime")))
        .and_then(time_from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn subjects_per_event_family() {
        let task = obj(
            json!({"EventType":"bpms_task_change","processInstanceId":"pi-1","corpId":"ding1","taskId":42}),
        );
        assert_eq!(subject("bpms_task_change", &task, "k"), "pi-1");
        let user = obj(
            json!({"EventType":"user_add_org","UserId":["u1","u2"],"CorpId":"ding1","TimeStamp":"1545536053900"}),
        );
        assert_eq!(subject("user_add_org", &user, "k"), "user:u1,u2");
        let dept = obj(json!({"EventType":"org_dept_create","DeptId":[7],"CorpId":"ding1"}));
        assert_eq!(subject("org_dept_create", &dept, "k"), "dept:7");
        let org = obj(json!({"EventType":"org_change","CorpId":"ding1"}));
        assert_eq!(subject("org_change", &org, "k"), "corp:ding1");
        let ticket = obj(json!({"EventType":"suite_ticket","SuiteKey":"suite9","SuiteTicket":"x"}));
        assert_eq!(subject("suite_ticket", &ticket, "k"), "suite:suite9");
        let unknown = obj(json!({"EventType":"brand_new_thing"}));
        assert_eq!(
            subject("brand_new_thing", &unknown, "dingowner"),
            "owner:dingowner"
        );
    }

    #[test]
    fn timestamps_as_numbers_or_strings() {
        let at = occurred_at(&obj(json!({"TimeStamp":"1545536053900"}))).unwrap();
        assert_eq!(at.timestamp_millis(), 1_545_536_053_900);
        let at = occurred_at(&obj(json!({"TimeStamp":1545536053900_i64}))).unwrap();
        assert_eq!(at.timestamp_millis(), 1_545_536_053_900);
        let finished = occurred_at(&obj(json!({"createTime":1, "finishTime":2000}))).unwrap();
        assert_eq!(finished.timestamp_millis(), 2000);
        assert_eq!(occurred_at(&obj(json!({"TimeStamp":"soon"}))), None);
        // Past year 9999 a time cannot be written as RFC 3339, and a stored one would break every
        // later read of the item: it is dropped (the event orders by its arrival instead).
        assert_eq!(
            occurred_at(&obj(json!({"TimeStamp": 253_402_300_800_000_i64}))),
            None
        );
        assert_eq!(occurred_at(&obj(json!({"TimeStamp": i64::MAX}))), None);
    }

    #[test]
    fn url_checks() {
        assert!(is_url_check("check_url"));
        assert!(is_url_check("check_create_suite_url"));
        assert!(!is_url_check("user_add_org"));
    }
}
