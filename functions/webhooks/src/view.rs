//! The event view: every stored event, whatever its source, as one JSON object with Tsuru's
//! field names (`docs/protocols.md` §5.4), so that filters and Go templates written for Tsuru
//! work on every source. Without a subscription `body`, the view is what is sent, as JSON.
//!
//! | Source | `Kind.Type` | `Kind.Name` | `Target` (`Type` / `Value`) | `ExtraTargets` | `Error` (non-empty = failed) |
//! |---|---|---|---|---|---|
//! | `tsuru` | Tsuru's `Kind.Type` (`permission`, `internal`) | Tsuru's `Kind.Name` (`app.update.env.set`) | Tsuru's `Target` | Tsuru's `ExtraTargets` | Tsuru's `Error` |
//! | `stack` (stack-level event) | `stack` | `stack.<STATUS>` (`stack.UPDATE_COMPLETE`) | `stack` / stack name | `stack-id` / stack id, when the sender gives one | for `*_FAILED` and rollback statuses (`ROLLBACK_*`, `*_ROLLBACK_*`): `ResourceStatusReason` or `StatusReason` from the payload, else the status |
//! | `stack` (CloudFormation resource event) | `stack-resource` | `stack.<STATUS>` | `stack` / stack name | `stack-id` / stack id; `stack-resource` / `LogicalResourceId` | as for stack-level events |
//! | `s3` (object record) | `s3` | `s3.<eventName>` with `:` as `.` and no leading `s3:` (`s3.ObjectCreated.Put`) | `s3-object` / `bucket/key` (key decoded) | `s3-bucket` / bucket | the event name, for names containing `Failed` (`s3.Replication.OperationFailedReplication`) |
//! | `s3` (test event) | `s3` | `s3.TestEvent` | `s3-bucket` / bucket | none | never |
//! | `dingtalk` | `dingtalk` | `dingtalk.<EventType>` (`dingtalk.bpms_task_change`) | `dingtalk-subject` / subject (instance, task or corp id) | none | never |
//! | `mns` | `mns` | `mns.<tag, or topic without a tag>` | `mns-topic` / topic name | none | never |
//! | any other | the source | `<source>.<event type>` | `<source>-subject` / subject | none | never |
//!
//! Every view also has `ID` (the stored event id), `Source`, `StartTime` and `EndTime` (the
//! sender's time of the event, else the time received; Tsuru's own times for `tsuru`),
//! `ReceivedAt` (RFC 3339, UTC) and `Payload`: the stored payload decoded as JSON (a payload that
//! is not JSON is given as a JSON string). A `tsuru` payload that lacks `Kind`, `Target` or times
//! falls back to the generic mapping for the missing part.
//!
//! Sources are matched by their stored string (`event.source.as_str()`), so sources added to
//! `hub_core::Source` later get the generic mapping until they are given a row here.

use chrono::{DateTime, Utc};
use hub_core::event::{format_time, parse_time};
use hub_core::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kind {
    #[serde(rename = "Type")]
    pub kind_type: String,
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "Type")]
    pub target_type: String,
    #[serde(rename = "Value")]
    pub value: String,
}

impl Target {
    pub fn new(target_type: impl Into<String>, value: impl Into<String>) -> Self {
        Target {
            target_type: target_type.into(),
            value: value.into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraTarget {
    #[serde(rename = "Target")]
    pub target: Target,
    #[serde(rename = "Lock")]
    pub lock: bool,
}

/// One event as filters and templates see it. Field names are Tsuru's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventView {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Kind")]
    pub kind: Kind,
    #[serde(rename = "Target")]
    pub target: Target,
    #[serde(rename = "ExtraTargets")]
    pub extra_targets: Vec<ExtraTarget>,
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "StartTime")]
    pub start_time: String,
    #[serde(rename = "EndTime")]
    pub end_time: String,
    #[serde(rename = "ReceivedAt")]
    pub received_at: String,
    #[serde(rename = "Payload")]
    pub payload: Value,
}

impl EventView {
    pub fn from_event(event: &Event) -> EventView {
        EventView::with_source(event.source.as_str(), event)
    }

    /// The view under a source's stored name, which `from_event` takes from the event. Sources
    /// are matched as strings so that this crate maps `tsuru` before `hub_core::Source` has it.
    fn with_source(source: &str, event: &Event) -> EventView {
        let payload = serde_json::from_str::<Value>(&event.payload)
            .unwrap_or_else(|_| Value::String(event.payload.clone()));
        let time = format_time(event.event_time());
        let mut view = EventView {
            id: event.event_id.clone(),
            source: source.to_owned(),
            kind: Kind::default(),
            target: Target::default(),
            extra_targets: Vec::new(),
            error: String::new(),
            start_time: time.clone(),
            end_time: time,
            received_at: format_time(event.received_at),
            payload,
        };
        match source {
            "tsuru" => map_tsuru(&mut view, event),
            "stack" => map_stack(&mut view, event),
            "s3" => map_s3(&mut view, event),
            "dingtalk" => map_generic(&mut view, event, "dingtalk-subject"),
            "mns" => map_generic(&mut view, event, "mns-topic"),
            other => {
                let target_type = format!("{other}-subject");
                map_generic(&mut view, event, &target_type)
            }
        }
        view
    }

    /// Whether the event is a failure (Tsuru: `Error` is not empty).
    pub fn failed(&self) -> bool {
        !self.error.is_empty()
    }

    /// The event `POST /webhooks/{name}/test` delivers: a successful internal event about the
    /// subscription itself, with every field a template may use filled in.
    pub fn sample(subscription_name: &str, now: DateTime<Utc>) -> EventView {
        let time = format_time(now);
        EventView {
            id: format!("test-{}", now.timestamp_millis()),
            source: "callback-hub".to_owned(),
            kind: Kind {
                kind_type: "internal".to_owned(),
                name: "webhook.test".to_owned(),
            },
            target: Target::new("webhook", subscription_name),
            extra_targets: Vec::new(),
            error: String::new(),
            start_time: time.clone(),
            end_time: time.clone(),
            received_at: time,
            payload: serde_json::json!({"message": "callback-hub test delivery"}),
        }
    }
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |value, name| value.get(name))
        .and_then(Value::as_str)
}

fn map_generic(view: &mut EventView, event: &Event, target_type: &str) {
    view.kind = Kind {
        kind_type: view.source.clone(),
        name: format!("{}.{}", view.source, event.event_type),
    };
    view.target = Target::new(target_type, event.subject.clone());
}

fn map_tsuru(view: &mut EventView, event: &Event) {
    let payload = &view.payload;
    let kind = Kind {
        kind_type: text(payload, &["Kind", "Type"])
            .unwrap_or("tsuru")
            .to_owned(),
        name: text(payload, &["Kind", "Name"])
            .filter(|n| !n.is_empty())
            .unwrap_or(&event.event_type)
            .to_owned(),
    };
    let target = match (
        text(payload, &["Target", "Type"]),
        text(payload, &["Target", "Value"]),
    ) {
        (Some(target_type), Some(value)) => Target::new(target_type, value),
        _ => Target::new("tsuru-subject", event.subject.clone()),
    };
    let extra_targets = payload
        .get("ExtraTargets")
        .and_then(Value::as_array)
        .map(|extras| {
            extras
                .iter()
                .filter_map(|extra| {
                    Some(ExtraTarget {
                        target: Target::new(
                            text(extra, &["Target", "Type"])?,
                            text(extra, &["Target", "Value"])?,
                        ),
                        lock: extra.get("Lock").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let error = text(payload, &["Error"]).unwrap_or_default().to_owned();
    // Tsuru's own times are kept as sent when they are times at all.
    let time = |name: &str| text(payload, &[name]).filter(|t| parse_time(t).is_some());
    let start_time = time("StartTime").map(str::to_owned);
    let end_time = time("EndTime").map(str::to_owned);
    view.kind = kind;
    view.target = target;
    view.extra_targets = extra_targets;
    view.error = error;
    if let Some(start) = start_time {
        view.start_time = start;
    }
    if let Some(end) = end_time {
        view.end_time = end;
    }
}

/// `*_FAILED`, and any rollback: a rollback is how a failed create or update ends, even when
/// the rollback itself completes (`UPDATE_ROLLBACK_COMPLETE`).
pub fn stack_status_failed(status: &str) -> bool {
    status.ends_with("_FAILED") || status.split('_').any(|word| word == "ROLLBACK")
}

fn map_stack(view: &mut EventView, event: &Event) {
    let status = event.event_type.as_str();
    // Resource events are stored as history only: they never set the stack's state.
    let resource_event = !event.sets_state;
    view.kind = Kind {
        kind_type: if resource_event {
            "stack-resource"
        } else {
            "stack"
        }
        .to_owned(),
        name: format!("stack.{status}"),
    };
    view.target = Target::new("stack", event.subject.clone());
    if let Some(id) = &event.subject_alias {
        view.extra_targets.push(ExtraTarget {
            target: Target::new("stack-id", id.clone()),
            lock: false,
        });
    }
    if resource_event {
        if let Some(logical) = text(&view.payload, &["LogicalResourceId"]).filter(|l| !l.is_empty())
        {
            view.extra_targets.push(ExtraTarget {
                target: Target::new("stack-resource", logical),
                lock: false,
            });
        }
    }
    if stack_status_failed(status) {
        view.error = ["ResourceStatusReason", "StatusReason"]
            .iter()
            .filter_map(|name| text(&view.payload, &[name]))
            .map(str::trim)
            .find(|reason| !reason.is_empty())
            .unwrap_or(status)
            .to_owned();
    }
}

fn map_s3(view: &mut EventView, event: &Event) {
    let name = event
        .event_type
        .strip_prefix("s3:")
        .unwrap_or(&event.event_type);
    view.kind = Kind {
        kind_type: "s3".to_owned(),
        name: format!("s3.{}", name.replace(':', ".")),
    };
    // Bucket names cannot hold a '/', so the subject's first segment is the bucket.
    match event.subject.split_once('/') {
        Some((bucket, _key)) => {
            view.target = Target::new("s3-object", event.subject.clone());
            view.extra_targets.push(ExtraTarget {
                target: Target::new("s3-bucket", bucket),
                lock: false,
            });
        }
        None => view.target = Target::new("s3-bucket", event.subject.clone()),
    }
    if name.contains("Failed") {
        view.error = name.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use hub_core::Source;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
    }

    #[test]
    fn stack_event_maps_to_tsuru_fields() {
        let occurred = Utc.with_ymd_and_hms(2024, 5, 6, 7, 0, 0).unwrap();
        let event = Event::new(
            Source::Stack,
            "e-1",
            "UPDATE_COMPLETE",
            "web",
            r#"{"StackName":"web","Status":"UPDATE_COMPLETE"}"#,
            at(),
        )
        .occurred_at(Some(occurred))
        .alias(Some("stack-id-123".into()));
        let view = EventView::from_event(&event);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json,
            json!({
                "ID": "e-1",
                "Source": "stack",
                "Kind": {"Type": "stack", "Name": "stack.UPDATE_COMPLETE"},
                "Target": {"Type": "stack", "Value": "web"},
                "ExtraTargets": [{"Target": {"Type": "stack-id", "Value": "stack-id-123"}, "Lock": false}],
                "Error": "",
                "StartTime": "2024-05-06T07:00:00.000Z",
                "EndTime": "2024-05-06T07:00:00.000Z",
                "ReceivedAt": "2024-05-06T07:08:09.000Z",
                "Payload": {"StackName": "web", "Status": "UPDATE_COMPLETE"}
            })
        );
        assert!(!view.failed());
    }

    #[test]
    fn stack_failures_carry_the_reason_or_the_status() {
        let with_reason = Event::new(
            Source::Stack,
            "e",
            "UPDATE_FAILED",
            "web",
            r#"{"ResourceStatusReason":"Resource creation cancelled"}"#,
            at(),
        );
        assert_eq!(
            EventView::from_event(&with_reason).error,
            "Resource creation cancelled"
        );
        let ros = Event::new(
            Source::Stack,
            "e",
            "CREATE_FAILED",
            "web",
            r#"{"StatusReason":"quota exceeded"}"#,
            at(),
        );
        assert_eq!(EventView::from_event(&ros).error, "quota exceeded");
        let blank_reason = Event::new(
            Source::Stack,
            "e",
            "ROLLBACK_COMPLETE",
            "web",
            r#"{"ResourceStatusReason":"  "}"#,
            at(),
        );
        assert_eq!(
            EventView::from_event(&blank_reason).error,
            "ROLLBACK_COMPLETE"
        );
        for (status, failed) in [
            ("CREATE_COMPLETE", false),
            ("DELETE_IN_PROGRESS", false),
            ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", false),
            ("DELETE_FAILED", true),
            ("ROLLBACK_IN_PROGRESS", true),
            ("UPDATE_ROLLBACK_COMPLETE", true),
            ("IMPORT_ROLLBACK_FAILED", true),
        ] {
            assert_eq!(stack_status_failed(status), failed, "{status}");
            let e = Event::new(Source::Stack, "e", status, "s", "{}", at());
            assert_eq!(EventView::from_event(&e).failed(), failed, "{status}");
        }
    }

    #[test]
    fn cloudformation_resource_events_are_told_apart() {
        let event = Event::new(
            Source::Stack,
            "e",
            "CREATE_FAILED",
            "web",
            r#"{"LogicalResourceId":"Bucket","ResourceStatusReason":"already exists"}"#,
            at(),
        )
        .alias(Some("arn:stack/web/1".into()))
        .history_only();
        let view = EventView::from_event(&event);
        assert_eq!(view.kind.kind_type, "stack-resource");
        assert_eq!(view.kind.name, "stack.CREATE_FAILED");
        assert_eq!(view.target, Target::new("stack", "web"));
        let extras: Vec<_> = view.extra_targets.iter().map(|e| &e.target).collect();
        assert_eq!(
            extras,
            [
                &Target::new("stack-id", "arn:stack/web/1"),
                &Target::new("stack-resource", "Bucket")
            ]
        );
        assert_eq!(view.error, "already exists");
    }

    #[test]
    fn s3_records_and_test_events() {
        for name in ["ObjectCreated:Put", "s3:ObjectCreated:Put"] {
            let e = Event::new(Source::S3, "e", name, "photos/a/b c.jpg", "{}", at());
            let view = EventView::from_event(&e);
            assert_eq!(view.kind.name, "s3.ObjectCreated.Put");
            assert_eq!(view.kind.kind_type, "s3");
            assert_eq!(view.target, Target::new("s3-object", "photos/a/b c.jpg"));
            assert_eq!(
                view.extra_targets,
                [ExtraTarget {
                    target: Target::new("s3-bucket", "photos"),
                    lock: false
                }]
            );
            assert!(!view.failed());
        }
        let test = Event::new(Source::S3, "t", "s3:TestEvent", "photos", "{}", at());
        let view = EventView::from_event(&test);
        assert_eq!(view.kind.name, "s3.TestEvent");
        assert_eq!(view.target, Target::new("s3-bucket", "photos"));
        assert!(view.extra_targets.is_empty());
        let failed = Event::new(
            Source::S3,
            "f",
            "Replication:OperationFailedReplication",
            "photos/x",
            "{}",
            at(),
        );
        assert_eq!(
            EventView::from_event(&failed).error,
            "Replication:OperationFailedReplication"
        );
    }

    #[test]
    fn dingtalk_and_mns() {
        let d = Event::new(
            Source::Dingtalk,
            "d",
            "bpms_task_change",
            "proc-1",
            r#"{"EventType":"bpms_task_change"}"#,
            at(),
        );
        let view = EventView::from_event(&d);
        assert_eq!(
            (view.kind.kind_type.as_str(), view.kind.name.as_str()),
            ("dingtalk", "dingtalk.bpms_task_change")
        );
        assert_eq!(view.target, Target::new("dingtalk-subject", "proc-1"));
        assert_eq!(view.payload["EventType"], "bpms_task_change");

        let m = Event::new(Source::Mns, "m", "orders.created", "orders", "{}", at());
        let view = EventView::from_event(&m);
        assert_eq!(view.kind.name, "mns.orders.created");
        assert_eq!(view.target, Target::new("mns-topic", "orders"));
    }

    #[test]
    fn times_fall_back_to_receipt_and_bad_payloads_stay_text() {
        let e = Event::new(Source::Mns, "m", "t", "orders", "not json", at());
        let view = EventView::from_event(&e);
        assert_eq!(view.start_time, "2024-05-06T07:08:09.000Z");
        assert_eq!(view.end_time, view.start_time);
        assert_eq!(view.received_at, view.start_time);
        assert_eq!(view.payload, Value::String("not json".into()));
    }

    #[test]
    fn sample_view_is_a_successful_internal_event() {
        let view = EventView::sample("slack", at());
        assert_eq!(view.kind.name, "webhook.test");
        assert_eq!(view.target, Target::new("webhook", "slack"));
        assert!(!view.failed());
        assert_eq!(view.id, format!("test-{}", at().timestamp_millis()));
    }

    #[test]
    fn tsuru_events_keep_tsuru_fields() {
        let payload = json!({
            "UniqueID": "65f0c0ffee",
            "Kind": {"Type": "permission", "Name": "app.update.env.set"},
            "Target": {"Type": "app", "Value": "myapp"},
            "ExtraTargets": [
                {"Target": {"Type": "pool", "Value": "prod"}, "Lock": true},
                {"Target": {"Type": "bad"}, "Lock": false}
            ],
            "Error": "",
            "StartTime": "2024-05-06T07:00:00.123456789Z",
            "EndTime": "2024-05-06T07:00:05Z",
            "Owner": {"Type": "user", "Name": "a@b.c"}
        });
        let e = Event::new(
            Source::Mns,
            "65f0c0ffee",
            "app.update.env.set",
            "app/myapp",
            payload.to_string(),
            at(),
        );
        let view = EventView::with_source("tsuru", &e);
        assert_eq!(view.source, "tsuru");
        assert_eq!(
            view.kind,
            Kind {
                kind_type: "permission".into(),
                name: "app.update.env.set".into()
            }
        );
        assert_eq!(view.target, Target::new("app", "myapp"));
        assert_eq!(
            view.extra_targets,
            [ExtraTarget {
                target: Target::new("pool", "prod"),
                lock: true
            }],
            "an extra target without a value is dropped"
        );
        assert_eq!(view.start_time, "2024-05-06T07:00:00.123456789Z");
        assert_eq!(view.end_time, "2024-05-06T07:00:05Z");
        assert!(!view.failed());
        assert_eq!(view.payload["Owner"]["Name"], "a@b.c");

        let failed = json!({"Kind": {"Type": "internal", "Name": "healer"},
            "Target": {"Type": "node", "Value": "n1"}, "Error": "node unreachable",
            "StartTime": "yesterday"});
        let e = Event::new(
            Source::Mns,
            "x",
            "healer",
            "node/n1",
            failed.to_string(),
            at(),
        );
        let view = EventView::with_source("tsuru", &e);
        assert_eq!(view.error, "node unreachable");
        assert!(view.failed());
        assert_eq!(
            view.start_time, "2024-05-06T07:08:09.000Z",
            "not a time: ours instead"
        );
    }

    #[test]
    fn tsuru_payload_without_tsuru_fields_falls_back() {
        let e = Event::new(Source::Mns, "x", "app.deploy", "myapp", "{}", at());
        let view = EventView::with_source("tsuru", &e);
        assert_eq!(view.kind.name, "app.deploy");
        assert_eq!(view.kind.kind_type, "tsuru");
        assert_eq!(view.target, Target::new("tsuru-subject", "myapp"));
    }

    #[test]
    fn unknown_sources_get_the_generic_mapping() {
        let e = Event::new(Source::Mns, "x", "push", "repo", "{}", at());
        let view = EventView::with_source("github", &e);
        assert_eq!(view.kind.kind_type, "github");
        assert_eq!(view.kind.name, "github.push");
        assert_eq!(view.target, Target::new("github-subject", "repo"));
    }

    #[test]
    fn view_round_trips_through_json() {
        let e = Event::new(
            Source::S3,
            "e",
            "ObjectRemoved:Delete",
            "b/k",
            r#"{"a":1}"#,
            at(),
        );
        let view = EventView::from_event(&e);
        let text = serde_json::to_string(&view).unwrap();
        let back: EventView = serde_json::from_str(&text).unwrap();
        assert_eq!(back, view);
    }
}
