//! The sample requests in `events/`, generated: signed samples are signed here with the test
//! secrets of `events/env.json`, so changing a test key regenerates them
//! (`cargo run -p hub-tests --bin gen-events`). A test keeps the files in step with this code.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use dingtalk_callback::DingTalkCrypto;
use hub_core::config::Secret;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Map, Value};
use sha2::Digest;
use sns::{string_to_sign, SnsKind, SnsMessage};

pub const STACK_HOOK_TOKEN: &str = "local-stack-hook-token-0001";
pub const DINGTALK_TOKEN: &str = "callback-hub-local-token";
pub const DINGTALK_AES_KEY: &str = "n2ZHgYiqEvUqpZaHOAUZHJc8fJ7xH0fNTs4Mfr62yZU";
pub const DINGTALK_OWNER_KEY: &str = "dingcallbackhublocal";

/// An API Gateway HTTP API (payload format 2.0) request.
struct ApiRequest<'a> {
    method: &'a str,
    path: &'a str,
    route: &'a str,
    query: Vec<(&'a str, String)>,
    headers: Vec<(&'a str, String)>,
    path_parameters: Vec<(&'a str, &'a str)>,
    body: Option<String>,
    base64: bool,
    request_id: &'a str,
}

impl<'a> ApiRequest<'a> {
    fn new(method: &'a str, path: &'a str, route: &'a str, request_id: &'a str) -> Self {
        ApiRequest {
            method,
            path,
            route,
            query: Vec::new(),
            headers: Vec::new(),
            path_parameters: Vec::new(),
            body: None,
            base64: false,
            request_id,
        }
    }

    fn to_json(&self) -> Value {
        let mut headers = Map::new();
        headers.insert(
            "host".into(),
            "abc123.execute-api.us-east-1.amazonaws.com".into(),
        );
        headers.insert("x-forwarded-proto".into(), "https".into());
        headers.insert("x-forwarded-for".into(), "203.0.113.10".into());
        for (name, value) in &self.headers {
            headers.insert((*name).into(), value.clone().into());
        }
        let user_agent = headers
            .get("user-agent")
            .cloned()
            .unwrap_or_else(|| "".into());
        let raw_query = self
            .query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut event = json!({
            "version": "2.0",
            "routeKey": self.route,
            "rawPath": self.path,
            "rawQueryString": raw_query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abc123",
                "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": user_agent},
                "requestId": self.request_id,
                "routeKey": self.route,
                "stage": "$default",
                "time": "01/Mar/2024:12:00:00 +0000",
                "timeEpoch": 1709294400000_i64
            },
            "isBase64Encoded": self.base64
        });
        if !self.query.is_empty() {
            let query: Map<String, Value> = self
                .query
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone().into()))
                .collect();
            event["queryStringParameters"] = Value::Object(query);
        }
        if !self.path_parameters.is_empty() {
            let params: Map<String, Value> = self
                .path_parameters
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            event["pathParameters"] = Value::Object(params);
        }
        if let Some(body) = &self.body {
            event["body"] = if self.base64 {
                STANDARD.encode(body).into()
            } else {
                body.clone().into()
            };
        }
        event
    }
}

fn ros_body(status: &str, outputs: Value) -> String {
    json!({"Outputs": outputs, "StackId": "80bd6b6c-e888-4573-ae3b-93d29113a1b2", "StackName": "test-notification-url", "Status": status}).to_string()
}

fn stack_hook_samples() -> Vec<(String, Value)> {
    let first_output = json!({"Description": "No description given", "OutputKey": "InstanceId", "OutputValue": "i-bp1a2b3c4d5e6f7g8h9i"});
    let second_output = json!({"Description": "Public endpoint", "OutputKey": "Endpoint", "OutputValue": "http://198.51.100.7"});
    let ros_headers = || {
        vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", "Alibaba Cloud ROS".to_owned()),
        ]
    };

    let mut create = ApiRequest::new("POST", "/stacks", "ANY /stacks", "ros-create-0001");
    create.query.push(("token", STACK_HOOK_TOKEN.into()));
    create.headers = ros_headers();
    create.body = Some(ros_body("CREATE_COMPLETE", json!([first_output])));

    // Base64-encoded by API Gateway, with the token in a header instead of the query.
    let mut update = ApiRequest::new("POST", "/stacks", "ANY /stacks", "ros-update-0001");
    update.headers = ros_headers();
    update
        .headers
        .push(("x-callback-token", STACK_HOOK_TOKEN.into()));
    update.body = Some(ros_body(
        "UPDATE_COMPLETE",
        json!([first_output, second_output]),
    ));
    update.base64 = true;

    let mut status = ApiRequest::new(
        "GET",
        "/stacks/test-notification-url",
        "ANY /stacks/{stack}",
        "get-status-0001",
    );
    status.headers.push(("accept", "application/json".into()));
    status
        .path_parameters
        .push(("stack", "test-notification-url"));

    vec![
        (
            "stack-hook-ros-create-complete.json".into(),
            create.to_json(),
        ),
        (
            "stack-hook-ros-update-complete.json".into(),
            update.to_json(),
        ),
        ("stack-hook-get-status.json".into(), status.to_json()),
    ]
}

pub fn dingtalk_crypto() -> DingTalkCrypto {
    DingTalkCrypto::new(
        Secret::new(DINGTALK_TOKEN),
        DINGTALK_AES_KEY,
        DINGTALK_OWNER_KEY,
    )
    .expect("valid test key")
}

/// A signed, encrypted DingTalk push. `legacy` uses the `signature`/`timestamp` spelling of
/// 注册回调, else the `msg_signature`/`timeStamp` spelling of 事件订阅. The random prefix is fixed
/// so that the files are reproducible.
pub fn dingtalk_sample(
    plaintext: &Value,
    timestamp: &str,
    nonce: &str,
    legacy: bool,
    request_id: &str,
    prefix: [u8; 16],
) -> Value {
    let crypto = dingtalk_crypto();
    let encrypt = crypto.encrypt_with_prefix(plaintext.to_string().as_bytes(), prefix);
    let signature = crypto.signature(timestamp, nonce, &encrypt);
    let mut request = ApiRequest::new("POST", "/dingtalk", "ANY /dingtalk", request_id);
    let (sig_name, ts_name) = if legacy {
        ("signature", "timestamp")
    } else {
        ("msg_signature", "timeStamp")
    };
    request.query = vec![
        (sig_name, signature),
        (ts_name, timestamp.into()),
        ("nonce", nonce.into()),
    ];
    request
        .headers
        .push(("content-type", "application/json".into()));
    request.body = Some(json!({"encrypt": encrypt}).to_string());
    request.to_json()
}

pub const APPROVAL_ID: &str = "a171de6c-8bf8-4e0d-9e1a-2f4c6d8e0b13";

fn dingtalk_samples() -> Vec<(String, Value)> {
    let title = "出差 request: Q3 offsite in Hangzhou, three nights ok!!!";
    vec![
        (
            "dingtalk-check-url.json".into(),
            dingtalk_sample(
                &json!({"EventType": "check_url"}),
                "1709294400000",
                "nEXhMP4r",
                true,
                "dt-check-0001",
                *b"checkurlprefix01",
            ),
        ),
        (
            "dingtalk-bpms-instance-change.json".into(),
            dingtalk_sample(
                &json!({"EventType": "bpms_instance_change", "processInstanceId": APPROVAL_ID, "corpId": DINGTALK_OWNER_KEY,
                        "createTime": 1709294000000_i64, "finishTime": 1709294400000_i64, "bizCategoryId": "", "title": title,
                        "type": "finish", "result": "agree", "staffId": "manager7140", "url": "https://aflow.dingtalk.com/dingtalk/mobile/homepage.htm"}),
                "1709294400123",
                "Wq3b9ZkT",
                false,
                "dt-instance-0001",
                *b"instanceprefix01",
            ),
        ),
        (
            "dingtalk-bpms-task-change.json".into(),
            dingtalk_sample(
                &json!({"EventType": "bpms_task_change", "processInstanceId": APPROVAL_ID, "corpId": DINGTALK_OWNER_KEY,
                        "createTime": 1709294000000_i64, "finishTime": 1709294399000_i64, "bizCategoryId": "", "title": title,
                        "type": "finish", "result": "agree", "staffId": "manager7140", "taskId": 64370213507_i64,
                        "processCode": "PROC-FF6Y4BE1N2-0V4C7A8Q3M"}),
                "1709294400077",
                "Hc5LrP2m",
                false,
                "dt-task-0001",
                *b"taskchangeprefix",
            ),
        ),
        (
            "dingtalk-user-add-org.json".into(),
            dingtalk_sample(
                &json!({"EventType": "user_add_org", "TimeStamp": "1709294400500", "UserId": ["manager7140"], "CorpId": DINGTALK_OWNER_KEY}),
                "1709294400501",
                "Yt7aKd0s",
                true,
                "dt-user-0001",
                *b"useraddorgprefix",
            ),
        ),
    ]
}

/// The pinned URL of the test SNS certificate: an SNS host, so it passes the URL check, but
/// served only from `events/pinned-certs.json`, never fetched.
pub const SNS_TEST_CERT_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0c4b1c0a1b2c3d4e5f60718293a4b5c6.pem";
pub const STACK_EVENTS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:callback-hub-stack-events";
pub const CFN_STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/orders-api/5e2a4f10-d7a9-11ee-9c3f-0a1b2c3d4e5f";

fn read_repo_file(path: &str) -> String {
    let full = crate::repo_root().join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

pub fn sns_signing_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(&read_repo_file("events/keys/sns-test-key.pem"))
        .expect("PKCS#8 PEM test key")
}

/// A signed SNS envelope (SignatureVersion 2, SHA-256; PKCS#1 v1.5 is deterministic).
pub fn signed_sns(
    kind: SnsKind,
    topic: &str,
    message_id: &str,
    message: &str,
    subject: Option<&str>,
    timestamp: &str,
) -> Value {
    let subscribe_url = (kind != SnsKind::Notification).then(|| {
        format!("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={topic}&Token=2336412f37fb687f5d51e6e2425c464de12884")
    });
    let mut unsigned = SnsMessage {
        kind,
        message_id: message_id.into(),
        topic_arn: topic.into(),
        message: message.into(),
        timestamp: timestamp.into(),
        subject: subject.map(str::to_owned),
        signature_version: "2".into(),
        signature: String::new(),
        signing_cert_url: SNS_TEST_CERT_URL.into(),
        token: subscribe_url
            .as_ref()
            .map(|_| "2336412f37fb687f5d51e6e2425c464de12884".to_owned()),
        subscribe_url,
    };
    let digest = sha2::Sha256::digest(string_to_sign(&unsigned).as_bytes());
    let signature = sns_signing_key()
        .sign(Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
        .expect("RSA signing");
    unsigned.signature = STANDARD.encode(signature);
    sns_envelope(&unsigned)
}

/// The HTTPS-subscription JSON of a message.
pub fn sns_envelope(m: &SnsMessage) -> Value {
    let mut object = json!({
        "Type": m.kind.as_str(),
        "MessageId": m.message_id,
        "TopicArn": m.topic_arn,
        "Message": m.message,
        "Timestamp": m.timestamp,
        "SignatureVersion": m.signature_version,
        "Signature": m.signature,
        "SigningCertURL": m.signing_cert_url,
    });
    if let Some(subject) = &m.subject {
        object["Subject"] = subject.clone().into();
    }
    if let (Some(url), Some(token)) = (&m.subscribe_url, &m.token) {
        object["SubscribeURL"] = url.clone().into();
        object["Token"] = token.clone().into();
    } else {
        object["UnsubscribeURL"] = format!(
            "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={}:0b3bd6a0",
            m.topic_arn
        )
        .into();
    }
    object
}

/// A CloudFormation stack event message, in the `Key='Value'` lines SNS carries.
pub fn cfn_message(
    event_id: &str,
    logical_id: &str,
    resource_type: &str,
    status: &str,
    timestamp: &str,
    properties: Option<&str>,
) -> String {
    let physical = if resource_type == "AWS::CloudFormation::Stack" {
        CFN_STACK_ID.to_owned()
    } else {
        format!("{logical_id}-physical")
    };
    format!(
        "StackId='{CFN_STACK_ID}'\nTimestamp='{timestamp}'\nEventId='{event_id}'\nLogicalResourceId='{logical_id}'\nNamespace='123456789012'\nPhysicalResourceId='{physical}'\nPrincipalId='AIDAEXAMPLE'\nResourceProperties='{}'\nResourceStatus='{status}'\nResourceStatusReason=''\nResourceType='{resource_type}'\nStackName='orders-api'\nClientRequestToken='null'\n",
        properties.unwrap_or("null")
    )
}

/// An SNS notification from the stack events topic, as a request to `POST /stacks`.
pub fn stack_event_request(message_id: &str, cfn: &str, request_id: &str) -> Value {
    let envelope = signed_sns(
        SnsKind::Notification,
        STACK_EVENTS_TOPIC,
        message_id,
        cfn,
        Some("AWS CloudFormation Notification"),
        "2024-03-01T12:05:00.000Z",
    );
    sns_request(&envelope, request_id)
}

pub fn sns_request(envelope: &Value, request_id: &str) -> Value {
    sns_request_to("/stacks", envelope, request_id)
}

/// An SNS HTTPS delivery of `envelope` to `path` (`/stacks` or `/s3`).
pub fn sns_request_to(path: &str, envelope: &Value, request_id: &str) -> Value {
    let route = format!("ANY {path}");
    let mut request = ApiRequest::new("POST", path, &route, request_id);
    let kind = envelope["Type"].as_str().unwrap_or_default().to_owned();
    request.headers = vec![
        ("content-type", "text/plain; charset=UTF-8".into()),
        (
            "user-agent",
            "Amazon Simple Notification Service Agent".into(),
        ),
        ("x-amz-sns-message-type", kind),
        (
            "x-amz-sns-message-id",
            envelope["MessageId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        (
            "x-amz-sns-topic-arn",
            envelope["TopicArn"].as_str().unwrap_or_default().to_owned(),
        ),
    ];
    request.body = Some(envelope.to_string());
    request.to_json()
}

fn cfn_samples() -> Vec<(String, Value)> {
    let stack = cfn_message(
        "5e2a4f10-d7aa-11ee-9c3f-0a1b2c3d4e5f",
        "orders-api",
        "AWS::CloudFormation::Stack",
        "CREATE_COMPLETE",
        "2024-03-01T12:05:00.000Z",
        None,
    );
    let properties = r#"{"BucketName":"orders-api-artifacts","Tags":[{"Key":"owner","Value":"team 'payments'"}]}"#;
    let resource = cfn_message(
        "ArtifactsBucket-CREATE_COMPLETE-2024-03-01T12:04:30.000Z",
        "ArtifactsBucket",
        "AWS::S3::Bucket",
        "CREATE_COMPLETE",
        "2024-03-01T12:04:30.000Z",
        Some(properties),
    );
    vec![
        (
            "stack-hook-sns-stack-event.json".into(),
            stack_event_request(
                "9c1f7a2e-0d4b-5c6e-8f9a-1b2c3d4e5f60",
                &stack,
                "sns-stack-0001",
            ),
        ),
        (
            "stack-hook-sns-resource-event.json".into(),
            stack_event_request(
                "7d3e9b4c-1a2f-5e6d-9c8b-0a1b2c3d4e5f",
                &resource,
                "sns-resource-0001",
            ),
        ),
    ]
}

pub const S3_WEBHOOK_TOKEN: &str = "local-s3-webhook-token-0001";
pub const S3_EVENTS_TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:callback-hub-s3-events";

/// The URL a user registers with VK Cloud: the API's `/s3` route with the token in the query.
pub fn s3_webhook_url() -> String {
    format!("https://abc123.execute-api.us-east-1.amazonaws.com/s3?token={S3_WEBHOOK_TOKEN}")
}

/// An AWS S3 event record (`eventVersion` 2.1); `encoded_key` is form-encoded as S3 sends it.
pub fn aws_s3_record(
    bucket: &str,
    encoded_key: &str,
    event_name: &str,
    sequencer: &str,
    event_time: &str,
) -> Value {
    let mut object = json!({"key": encoded_key, "sequencer": sequencer});
    if event_name.starts_with("ObjectCreated") {
        object["size"] = json!(11);
        object["eTag"] = json!("5eb63bbbe01eeed093cb22bb8f5acdc3");
    }
    json!({
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": event_time, "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.20"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "callback-hub",
               "bucket": {"name": bucket, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": object}
    })
}

/// An S3 event (or test event) as SNS delivers it to `POST /s3`.
pub fn s3_sns_request(message: &Value, message_id: &str, request_id: &str) -> Value {
    let envelope = signed_sns(
        SnsKind::Notification,
        S3_EVENTS_TOPIC,
        message_id,
        &message.to_string(),
        Some("Amazon S3 Notification"),
        "2024-03-01T12:10:00.000Z",
    );
    sns_request_to("/s3", &envelope, request_id)
}

/// A VK Cloud delivery: the token in the query (part of the registered URL), and VK's
/// `X-Amz-Sns-Message-Type: Notification` on everything, the handshake included.
pub fn vk_request(body: &Value, request_id: &str) -> Value {
    let mut request = ApiRequest::new("POST", "/s3", "ANY /s3", request_id);
    request.query.push(("token", S3_WEBHOOK_TOKEN.into()));
    request.headers = vec![
        ("content-type", "application/json".into()),
        ("x-amz-sns-message-type", "Notification".into()),
    ];
    request.body = Some(body.to_string());
    request.to_json()
}

/// The VK handshake body of the published vector (`vk-s3.json`).
pub fn vk_handshake_body() -> Value {
    json!({
        "Timestamp": "2019-12-26T19:29:12+03:00",
        "Type": "SubscriptionConfirmation",
        "Message": "You have chosen to subscribe to the topic $topic. To confirm the subscription you need to response with calculated signature",
        "TopicArn": "mcs2883541269|bucketA|s3:ObjectCreated:Put",
        "SignatureVersion": 1,
        "Token": "RPE5UuG94rGgBH6kHXN9FUPugFxj1hs2aUQc99btJp3E49tA"
    })
}

/// VK records: `eventVersion` 1.0, `s3:` prefixes, numeric sequencers, raw keys.
pub fn vk_record(key: &str, event_name: &str, sequencer: u64) -> Value {
    json!({"s3": {"object": {"eTag": "aed563ecafb4bcc5654c597a421547b2", "sequencer": sequencer, "key": key, "size": 100},
        "configurationId": "1", "bucket": {"name": "bucketA", "ownerIdentity": {"principalId": "mcs2883541269"}},
        "s3SchemaVersion": "1.0"},
      "eventVersion": "1.0", "requestParameters": {"sourceIPAddress": "185.6.245.156"},
      "userIdentity": {"principalId": "2407013e-cbc1-415f-9102-16fb9bd6946b"},
      "eventName": event_name, "awsRegion": "ru-msk", "eventSource": "aws:s3",
      "responseElements": {"x-amz-request-id": "VGJR5rtJ"}})
}

fn s3_samples() -> Vec<(String, Value)> {
    let created = json!({"Records": [aws_s3_record(
        "photos-2024", "holiday/red+flower+%C3%A9t%C3%A9.jpg", "ObjectCreated:Put",
        "0055AED6DCD90281E5", "2024-03-01T12:09:58.120Z")]});
    let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent",
        "Time": "2024-03-01T12:00:00.000Z", "Bucket": "photos-2024",
        "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"});
    vec![
        (
            "s3-vk-handshake.json".into(),
            vk_request(&vk_handshake_body(), "vk-handshake-0001"),
        ),
        (
            "s3-vk-records.json".into(),
            vk_request(
                &json!({"Records": [
                    vk_record("reports/2024 q1.csv", "s3:ObjectCreated:Put", 1577453615),
                    vk_record("reports/old.csv", "s3:ObjectRemoved:Delete", 1577453616)
                ]}),
                "vk-records-0001",
            ),
        ),
        (
            "s3-sns-object-created.json".into(),
            s3_sns_request(
                &created,
                "b3c1e0f2-7a4d-5e6f-8a9b-0c1d2e3f4a5b",
                "s3-sns-0001",
            ),
        ),
        (
            "s3-sns-test-event.json".into(),
            s3_sns_request(
                &test_event,
                "a2b0d9e1-6c3b-5d4e-9f8a-1b2c3d4e5f6a",
                "s3-test-0001",
            ),
        ),
    ]
}

/// On the default MNS allow-list, so it passes the URL check; pinned, so never fetched.
pub const MNS_TEST_CERT_URL: &str =
    "https://mnstest.oss-cn-hangzhou.aliyuncs.com/callback-hub-test-certificate.pem";
pub const MNS_TOPIC: &str = "orders";
/// The `Date` of the MNS samples; tests run their clock at this instant.
pub const MNS_DATE: &str = "Fri, 01 Mar 2024 12:00:00 GMT";

pub fn mns_signing_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(&read_repo_file("events/keys/mns-test-key.pem"))
        .expect("PKCS#8 PEM test key")
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode_upper(md5::Md5::digest(bytes))
}

/// Signs an MNS push the way MNS does, over the headers given plus the standard ones.
pub fn signed_mns(
    path: &str,
    content_type: &str,
    body: &str,
    extra_headers: &[(&'static str, &str)],
    request_id: &str,
) -> Value {
    let cert_url = STANDARD.encode(MNS_TEST_CERT_URL);
    let mut headers: Vec<(&'static str, String)> = vec![
        ("content-md5", md5_hex(body.as_bytes())),
        ("content-type", content_type.into()),
        ("date", MNS_DATE.into()),
        ("x-mns-request-id", format!("65E1C2D3{request_id}")),
        ("x-mns-signing-cert-url", cert_url),
        ("x-mns-version", "2015-06-06".into()),
    ];
    headers.extend(extra_headers.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let map: http::HeaderMap = headers
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect();
    let text = mns_endpoint::signature::string_to_sign("POST", &map, path).expect("a Date header");
    let digest = sha1::Sha1::digest(text.as_bytes());
    let signature = mns_signing_key()
        .sign(Pkcs1v15Sign::new::<sha1::Sha1>(), &digest)
        .expect("RSA signing");
    let mut request = ApiRequest::new("POST", path, "ANY /mns", request_id);
    request.headers = headers;
    request
        .headers
        .push(("authorization", STANDARD.encode(signature)));
    request
        .headers
        .push(("user-agent", "Aliyun Notification Service Agent".into()));
    request.body = Some(body.into());
    request.to_json()
}

pub fn mns_fields(
    message_id: &str,
    message: &str,
    tag: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("TopicOwner", "1321669497458181".to_owned()),
        ("TopicName", MNS_TOPIC.to_owned()),
        ("Subscriber", "1321669497458181".to_owned()),
        ("SubscriptionName", "callback-hub".to_owned()),
        ("MessageId", message_id.to_owned()),
        ("Message", message.to_owned()),
        ("MessageMD5", md5_hex(message.as_bytes())),
    ];
    if let Some(tag) = tag {
        fields.push(("MessageTag", tag.to_owned()));
    }
    fields.push(("PublishTime", "1709294399000".to_owned()));
    fields
}

pub fn mns_xml_body(fields: &[(&str, String)]) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let children: String = fields
        .iter()
        .map(|(k, v)| format!("<{k}>{}</{k}>", escape(v)))
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><Notification xmlns="http://mns.aliyuncs.com/doc/v1/">{children}</Notification>"#
    )
}

pub fn mns_json_body(fields: &[(&str, String)]) -> String {
    let map: Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    Value::Object(map).to_string()
}

fn mns_samples() -> Vec<(String, Value)> {
    let order = r#"{"order_id":"A-1001","status":"paid","amount":"42.00"}"#;
    let xml = mns_xml_body(&mns_fields(
        "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000001",
        order,
        Some("paid"),
    ));
    let json = mns_json_body(&mns_fields(
        "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000002",
        "库存已更新 <sku 77>",
        None,
    ));
    let simplified_message = "plain text message from MNS";
    let simplified_headers = [
        (
            "x-mns-message-id",
            "5DA5A9A1D1B1C1D1-1-18E1B2C3D4E-200000003",
        ),
        ("x-mns-message-tag", "restock"),
        ("x-mns-publish-time", "1709294399500"),
        ("x-mns-subscriber", "1321669497458181"),
        ("x-mns-subscription-name", "callback-hub"),
        ("x-mns-topic-name", MNS_TOPIC),
        ("x-mns-topic-owner", "1321669497458181"),
    ];
    vec![
        (
            "mns-xml.json".into(),
            signed_mns("/mns", "text/xml;charset=utf-8", &xml, &[], "mns-xml-0001"),
        ),
        (
            "mns-json.json".into(),
            signed_mns(
                "/mns",
                "application/json;charset=utf-8",
                &json,
                &[],
                "mns-json-0001",
            ),
        ),
        (
            "mns-simplified.json".into(),
            signed_mns(
                "/mns",
                "text/plain;charset=utf-8",
                simplified_message,
                &simplified_headers,
                "mns-simple-0001",
            ),
        ),
    ]
}

/// `events/pinned-certs.json`: the test certificates by their pinned URLs (`PINNED_CERTS_FILE`).
fn pinned_certs() -> Value {
    json!({
        SNS_TEST_CERT_URL: read_repo_file("events/keys/sns-test-cert.pem"),
        MNS_TEST_CERT_URL: read_repo_file("events/keys/mns-test-cert.pem"),
    })
}

/// `events/env.json`: the test secrets, per function logical id, for `sam local invoke -n`.
fn env_json() -> Value {
    json!({
        "StackHookFunction": {
            "EVENTS_TABLE": "callback-hub-local",
            "AWS_ENDPOINT_URL": "http://host.docker.internal:5000",
            "STACK_HOOK_TOKEN": STACK_HOOK_TOKEN,
            "SNS_TOPIC_ARNS": STACK_EVENTS_TOPIC,
            "PINNED_CERTS_FILE": "events/pinned-certs.json"
        },
        "DingTalkFunction": {
            "EVENTS_TABLE": "callback-hub-local",
            "AWS_ENDPOINT_URL": "http://host.docker.internal:5000",
            "DINGTALK_TOKEN": DINGTALK_TOKEN,
            "DINGTALK_AES_KEY": DINGTALK_AES_KEY,
            "DINGTALK_OWNER_KEY": DINGTALK_OWNER_KEY
        },
        "S3NotificationFunction": {
            "EVENTS_TABLE": "callback-hub-local",
            "AWS_ENDPOINT_URL": "http://host.docker.internal:5000",
            "S3_WEBHOOK_TOKEN": S3_WEBHOOK_TOKEN,
            "S3_WEBHOOK_URL": s3_webhook_url(),
            "SNS_TOPIC_ARNS": S3_EVENTS_TOPIC,
            "PINNED_CERTS_FILE": "events/pinned-certs.json"
        },
        "MnsFunction": {
            "EVENTS_TABLE": "callback-hub-local",
            "AWS_ENDPOINT_URL": "http://host.docker.internal:5000",
            "PINNED_CERTS_FILE": "events/pinned-certs.json",
            "MNS_MAX_AGE_SECS": "0"
        }
    })
}

/// Every file of `events/`, by name, as it should be on disk.
pub fn all() -> Vec<(String, String)> {
    let mut files: Vec<(String, Value)> = stack_hook_samples();
    files.extend(cfn_samples());
    files.extend(dingtalk_samples());
    files.extend(mns_samples());
    files.extend(s3_samples());
    files.push(("env.json".into(), env_json()));
    files.push(("pinned-certs.json".into(), pinned_certs()));
    let mut files: Vec<(String, String)> = files
        .into_iter()
        .map(|(name, value)| {
            (
                name,
                serde_json::to_string_pretty(&value).expect("JSON") + "\n",
            )
        })
        .collect();
    files.push(("local.env".into(), local_env()));
    files
}

/// `events/local.env`: the test secrets of every route for `callback-hub serve --env-file`.
fn local_env() -> String {
    let mut text = String::from(
        "# Test secrets of events/*.json for `callback-hub serve --env-file events/local.env`.\n\
         # Generated by `cargo run -p hub-tests --bin gen-events`; never use them for real.\n",
    );
    let mut seen = std::collections::BTreeMap::new();
    for function in env_json()
        .as_object()
        .expect("env.json is an object")
        .values()
    {
        for (name, value) in function.as_object().expect("per-function variables") {
            if matches!(name.as_str(), "EVENTS_TABLE" | "AWS_ENDPOINT_URL") {
                continue;
            }
            let value = value.as_str().expect("string values");
            let entry = seen.entry(name.clone()).or_insert_with(String::new);
            if name == "SNS_TOPIC_ARNS" && !entry.is_empty() {
                entry.push(',');
                entry.push_str(value);
            } else {
                *entry = value.to_owned();
            }
        }
    }
    for (name, value) in seen {
        text.push_str(&format!("{name}={value}\n"));
    }
    text
}
