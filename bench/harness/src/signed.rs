//! The n-th event of each sender as a correctly signed API Gateway v2 request, for every part of
//! the harness that feeds functions (`bench`, `bench-faults`, `bench-load`): the same bytes for
//! the same inputs, different ones for every `n`, and a caller's marker in a field the receiving
//! handler stores, so a stored item can be traced to its request whatever id the handler derives.
//!
//! The signing is the fixtures' (`hub_tests::fixtures`), which is written from the protocol
//! text and never imports receiver code.

use hub_tests::fixtures::{self, DINGTALK_OWNER_KEY};
use serde_json::{json, Value};

/// Every sender callback-hub receives from, one request format each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
// `bench` measures no S3-via-SNS path; the other binaries that include this file do.
#[allow(dead_code)]
pub enum Sender {
    /// Alibaba ROS stack webhook, `POST /stacks`, token in the query.
    Ros,
    /// CloudFormation stack event through SNS, `POST /stacks`, signed envelope.
    Cloudformation,
    /// AWS S3 event through SNS, `POST /s3`, signed envelope.
    S3Sns,
    /// VK Cloud S3 records, `POST /s3`, token in the query.
    Vk,
    /// DingTalk encrypted push, `POST /dingtalk`, signature over the ciphertext.
    Dingtalk,
    /// Alibaba MNS push, `POST /mns`, RSA signature over headers, Content-MD5 over the body.
    Mns,
    /// Tsuru event, `POST /tsuru`, bearer token.
    Tsuru,
}

/// Who sends: it keeps the ids of one part of the harness apart from another's (`space` is a
/// group of the UUID-shaped ids, `name` a prefix of keys, buckets and nonces).
pub struct Family {
    pub name: &'static str,
    pub space: u16,
}

/// The request of event `n` from `sender`, carrying `mark` in a stored field: the stack name
/// (ROS), the logical resource (CloudFormation), the object key (S3, VK), the approval
/// instance (DingTalk), the message (MNS), the app (Tsuru).
pub fn event_request(sender: Sender, n: u64, mark: &str, family: &Family) -> Value {
    let (name, space) = (family.name, family.space);
    match sender {
        Sender::Ros => {
            let mut request = hub_tests::fixture_json("stack-hook-ros-create-complete.json");
            let mut body: Value =
                serde_json::from_str(request["body"].as_str().expect("a text body"))
                    .expect("ROS JSON");
            body["StackName"] = json!(mark);
            body["StackId"] = json!(format!("00000000-0000-4000-{space:04x}-{n:012}"));
            request["body"] = json!(body.to_string());
            request["requestContext"]["requestId"] = json!(format!("ros-{n}"));
            request
        }
        Sender::Cloudformation => {
            let message = fixtures::cfn_message(
                mark,
                "OrdersTable",
                "AWS::DynamoDB::Table",
                "CREATE_COMPLETE",
                "2024-03-01T12:05:00.000Z",
                None,
            );
            let message_id = format!("5b1a4c2e-0000-4000-{space:04x}-{n:012}");
            fixtures::stack_event_request(&message_id, &message, &format!("cfn-{n}"))
        }
        Sender::S3Sns => {
            let record = fixtures::aws_s3_record(
                &format!("callback-hub-{name}"),
                &format!("{name}/{mark}.csv"),
                "ObjectCreated:Put",
                &format!("{:018X}", n + 1),
                "2024-03-01T12:09:58.120Z",
            );
            fixtures::s3_sns_request(
                &json!({ "Records": [record] }),
                &format!("7c2b5d3f-0000-4000-{space:04x}-{n:012}"),
                &format!("s3-{n}"),
            )
        }
        Sender::Vk => {
            let record = fixtures::vk_record(
                &format!("{name}/{mark}.csv"),
                "s3:ObjectCreated:Put",
                1_700_000_000 + n,
            );
            fixtures::vk_request(&json!({ "Records": [record] }), &format!("vk-{n}"))
        }
        Sender::Dingtalk => {
            let plaintext = json!({"EventType": "bpms_task_change", "processInstanceId": mark,
                "corpId": DINGTALK_OWNER_KEY, "createTime": 1709294000000_i64,
                "finishTime": 1709294399000_i64, "title": "出差 request", "type": "finish",
                "result": "agree", "staffId": "manager7140", "taskId": n,
                "processCode": "PROC-FF6Y4BE1N2-0V4C7A8Q3M"});
            // The 16 random bytes before the plaintext: unique per event, so is the ciphertext.
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(format!("{name:0<10.10}{:06}", n % 1_000_000).as_bytes());
            fixtures::dingtalk_sample(
                &plaintext,
                "1709294400077",
                "Hc5LrP2m",
                false,
                &format!("dt-{n}"),
                prefix,
            )
        }
        Sender::Mns => {
            let message = format!(r#"{{"order_id":"{mark}","status":"paid","amount":"42.00"}}"#);
            let body = fixtures::mns_xml_body(&fixtures::mns_fields(
                &format!("5DA5A9A1D1B1C1D1-1-18E1B2C{space:04X}-{n:09}"),
                &message,
                Some("paid"),
            ));
            fixtures::signed_mns(
                "/mns",
                "text/xml;charset=utf-8",
                &body,
                &[],
                &format!("mns-{n}"),
            )
        }
        Sender::Tsuru => {
            let id = format!("{space:04x}{n:020x}");
            let body = fixtures::TsuruEventSample {
                unique_id: &id,
                target: ("app", mark),
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
    }
}
