//! What each bootstrap is fed: a fresh, correctly signed request per invocation, so that every
//! invocation takes the store path of a new event (a conditional put that succeeds), never the
//! cheaper duplicate path.

use hub_tests::fixtures::{self, DINGTALK_OWNER_KEY};
use serde_json::{json, Value};

pub struct Scenario {
    /// The name in the report.
    pub name: &'static str,
    /// The binary (the package name; `sam build` renames it `bootstrap`).
    pub binary: &'static str,
    /// The function's entry in `events/env.json`, for its test secrets.
    pub env_entry: Option<&'static str>,
    /// The status every invocation must answer.
    pub status: u16,
    /// The request for invocation `n` (unique per `n`).
    pub request: fn(usize) -> Value,
}

impl Scenario {
    pub fn is_baseline(&self) -> bool {
        self.env_entry.is_none()
    }
}

pub const BASELINE: Scenario = Scenario {
    name: "hello-world",
    binary: "hello-world",
    env_entry: None,
    status: 200,
    request: ros_hook,
};

pub const FUNCTIONS: [Scenario; 6] = [
    Scenario {
        name: "stack-hook (ROS webhook)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        request: ros_hook,
    },
    Scenario {
        name: "stack-hook (CloudFormation via SNS)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        request: cloudformation_event,
    },
    Scenario {
        name: "dingtalk-callback",
        binary: "dingtalk-callback",
        env_entry: Some("DingTalkFunction"),
        status: 200,
        request: dingtalk_event,
    },
    Scenario {
        name: "mns-endpoint",
        binary: "mns-endpoint",
        env_entry: Some("MnsFunction"),
        status: 204,
        request: mns_notification,
    },
    Scenario {
        name: "s3-notification (VK records)",
        binary: "s3-notification",
        env_entry: Some("S3NotificationFunction"),
        status: 200,
        request: vk_records,
    },
    Scenario {
        name: "tsuru-hook",
        binary: "tsuru-hook",
        env_entry: Some("TsuruHookFunction"),
        status: 200,
        request: tsuru_event,
    },
];

/// The ROS sample with a stack of its own: a new status to store.
fn ros_hook(n: usize) -> Value {
    let mut request = hub_tests::fixture_json("stack-hook-ros-create-complete.json");
    let mut body: Value =
        serde_json::from_str(request["body"].as_str().expect("a text body")).expect("ROS JSON");
    body["StackName"] = json!(format!("bench-{n}"));
    body["StackId"] = json!(format!("00000000-0000-4000-8000-{n:012}"));
    request["body"] = json!(body.to_string());
    request["requestContext"]["requestId"] = json!(format!("ros-{n}"));
    request
}

fn cloudformation_event(n: usize) -> Value {
    let message = fixtures::cfn_message(
        &format!("bench-event-{n}"),
        "OrdersTable",
        "AWS::DynamoDB::Table",
        "CREATE_COMPLETE",
        "2024-03-01T12:05:00.000Z",
        None,
    );
    let message_id = format!("5b1a4c2e-0000-4000-8000-{n:012}");
    fixtures::stack_event_request(&message_id, &message, &format!("cfn-{n}"))
}

fn dingtalk_event(n: usize) -> Value {
    let plaintext = json!({"EventType": "bpms_task_change", "processInstanceId": format!("bench-{n}"),
        "corpId": DINGTALK_OWNER_KEY, "createTime": 1709294000000_i64, "finishTime": 1709294399000_i64,
        "title": "出差 request", "type": "finish", "result": "agree", "staffId": "manager7140",
        "taskId": n, "processCode": "PROC-FF6Y4BE1N2-0V4C7A8Q3M"});
    let mut prefix = *b"benchprefix00000";
    prefix[11..].copy_from_slice(format!("{:05}", n % 100_000).as_bytes());
    fixtures::dingtalk_sample(
        &plaintext,
        "1709294400077",
        "Hc5LrP2m",
        false,
        &format!("dt-{n}"),
        prefix,
    )
}

fn mns_notification(n: usize) -> Value {
    let message = format!(r#"{{"order_id":"B-{n}","status":"paid","amount":"42.00"}}"#);
    let body = fixtures::mns_xml_body(&fixtures::mns_fields(
        &format!("5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-{n:09}"),
        &message,
        Some("paid"),
    ));
    fixtures::signed_mns(
        "/mns",
        "text/xml;charset=utf-8",
        &body,
        &[],
        &format!("{n:08}"),
    )
}

fn vk_records(n: usize) -> Value {
    let record = fixtures::vk_record(
        &format!("bench/{n}.csv"),
        "s3:ObjectCreated:Put",
        1_700_000_000 + n as u64,
    );
    fixtures::vk_request(&json!({ "Records": [record] }), &format!("vk-{n}"))
}

/// A finished `app.deploy` with a Tsuru event id of its own.
fn tsuru_event(n: usize) -> Value {
    let id = format!("{n:024x}");
    let body = fixtures::TsuruEventSample {
        unique_id: &id,
        ..fixtures::tsuru_deploy_event()
    }
    .to_json();
    fixtures::tsuru_request(
        "POST",
        fixtures::TsuruAuth::Bearer(fixtures::TSURU_WEBHOOK_TOKEN),
        &body,
        &format!("tsuru-{n}"),
    )
}
