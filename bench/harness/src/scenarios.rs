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
}

impl Scenario {
    /// The request of invocation `n` (unique per `n`), marked `bench-{n}`.
    pub fn request(&self, n: usize) -> Value {
        signed::event_request(self.sender, n as u64, &format!("bench-{n}"), &BENCH)
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
};

pub const FUNCTIONS: [Scenario; 6] = [
    Scenario {
        name: "stack-hook (ROS webhook)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        sender: Sender::Ros,
    },
    Scenario {
        name: "stack-hook (CloudFormation via SNS)",
        binary: "stack-hook",
        env_entry: Some("StackHookFunction"),
        status: 200,
        sender: Sender::Cloudformation,
    },
    Scenario {
        name: "dingtalk-callback",
        binary: "dingtalk-callback",
        env_entry: Some("DingTalkFunction"),
        status: 200,
        sender: Sender::Dingtalk,
    },
    Scenario {
        name: "mns-endpoint",
        binary: "mns-endpoint",
        env_entry: Some("MnsFunction"),
        status: 204,
        sender: Sender::Mns,
    },
    Scenario {
        name: "s3-notification (VK records)",
        binary: "s3-notification",
        env_entry: Some("S3NotificationFunction"),
        status: 200,
        sender: Sender::Vk,
    },
    Scenario {
        name: "tsuru-hook",
        binary: "tsuru-hook",
        env_entry: Some("TsuruHookFunction"),
        status: 200,
        sender: Sender::Tsuru,
    },
];
