//! What each bootstrap is fed: a fresh, correctly signed request per invocation, so that every
//! invocation takes the store path of a new event (a conditional put that succeeds), never the
//! cheaper duplicate path.

use crate::signed::{self, Family, Sender};
use serde_json::Value;

/// The ids of the emulator runs, apart from the other harness parts'.
const BENCH: Family = Family {
    name: "bench",
    space: 0x8000,
};

pub struct Scenario {
    /// The name in the report.
    pub name: &'static str,
    /// The binary (the package name; `sam build` renames it `bootstrap`).
    pub binary: &'static str,
    /// The function's entry in `events/env.json`, for its test secrets.
    pub env_entry: Option<&'static str>,
    /// The status every invocation must answer.
    pub status: u16,
    /// The format of its requests (the baseline ignores what it is sent).
    pub sender: Sender,
    /// What the requests are about.
    pub subjects: Subjects,
}

/// Whether each invocation is about something new (a new stack, object, app) or about one
/// stack already stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Subjects {
    New,
    /// ROS only: every invocation is a new status of one stack, which the first one creates.
    /// Statuses alternate, so that each is a change (docs/protocols.md §3.1), never a retry.
    OneKnownStack,
}

impl Scenario {
    /// The request of invocation `n` (unique per `n`), marked `bench-{n}`.
    pub fn request(&self, n: usize) -> Value {
        match self.subjects {
            Subjects::New => {
                signed::event_request(self.sender, n as u64, &format!("bench-{n}"), &BENCH)
            }
            Subjects::OneKnownStack => known_stack_request(n),
        }
    }

    pub fn is_baseline(&self) -> bool {
        self.env_entry.is_none()
    }
}

pub const BASELINE: Scenario = Scenario {
    name: "hello-world",
    binary: "hello-world",
    env_entry: None,
    status: 200,
    sender: Sender::Ros,
    subjects: Subjects::New,
};

pub const FUNCTIONS: [Scenario; 7] = [
    Scenario {
        name: "stack-hook (ROS webhook)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        sender: Sender::Ros,
        subjects: Subjects::New,
    },
    Scenario {
        name: "stack-hook (ROS webhook, known stack)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        sender: Sender::Ros,
        subjects: Subjects::OneKnownStack,
    },
    Scenario {
        name: "stack-hook (CloudFormation via SNS)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        sender: Sender::Cloudformation,
        subjects: Subjects::New,
    },
    Scenario {
        name: "dingtalk-callback",
        binary: "dingtalk-callback",
        env_entry: Some("DingTalkFunction"),
        status: 200,
        sender: Sender::Dingtalk,
        subjects: Subjects::New,
    },
    Scenario {
        name: "mns-endpoint",
        binary: "mns-endpoint",
        env_entry: Some("MnsFunction"),
        status: 204,
        sender: Sender::Mns,
        subjects: Subjects::New,
    },
    Scenario {
        name: "s3-notification (VK records)",
        binary: "s3-notification",
        env_entry: Some("S3NotificationFunction"),
        status: 200,
        sender: Sender::Vk,
        subjects: Subjects::New,
    },
    Scenario {
        name: "tsuru-hook",
        binary: "tsuru-hook",
        env_entry: Some("TsuruHookFunction"),
        status: 200,
        sender: Sender::Tsuru,
        subjects: Subjects::New,
    },
];

/// Invocation `n` of [`Subjects::OneKnownStack`]: the first creates the stack; after it,
/// `UPDATE_COMPLETE` and `ROLLBACK_COMPLETE` take turns.
fn known_stack_request(n: usize) -> Value {
    let mut request = signed::event_request(Sender::Ros, 0, "bench-known-stack", &BENCH);
    let mut body: Value =
        serde_json::from_str(request["body"].as_str().expect("a text body")).expect("ROS JSON");
    body["StackId"] = serde_json::json!("00000000-0000-4000-8001-000000000000");
    body["Status"] = serde_json::json!(match n {
        0 => "CREATE_COMPLETE",
        n if n % 2 == 1 => "UPDATE_COMPLETE",
        _ => "ROLLBACK_COMPLETE",
    });
    request["body"] = serde_json::json!(body.to_string());
    request["requestContext"]["requestId"] = serde_json::json!(format!("ros-known-{n}"));
    request
}
