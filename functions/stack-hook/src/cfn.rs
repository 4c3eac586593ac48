//! AWS CloudFormation stack events, as SNS delivers them (`NotificationARNs`): newline-separated
//! `Key='Value'` lines (`docs/protocols.md` §3.2).
//!
//! A value may hold quotes, JSON (`ResourceProperties`) and even newlines, so a field starts only
//! at a line matching `^[A-Za-z]+='`; any other line continues the current value. Exactly one
//! closing quote is stripped from each value, and the literal `'null'` means null. Keys may be
//! missing in older messages.

use chrono::{DateTime, Utc};
use hub_core::event::parse_time;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfnError {
    #[error("not a CloudFormation stack event: {0}")]
    Malformed(&'static str),
    #[error("CloudFormation event lacks {0}")]
    Missing(&'static str),
    #[error("CloudFormation Timestamp is not RFC 3339")]
    BadTimestamp,
    /// A key given twice: which value counts would be a guess (and a value spanning lines could
    /// carry a second `ResourceType=` or `StackName=` line), so the message is refused.
    #[error("CloudFormation message has {0} twice")]
    DuplicateKey(String),
    #[error("CloudFormation StackId must not contain '@' or control characters")]
    BadStackId,
}

/// The fields of one stack event; `None` where the message said `'null'`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CfnEvent {
    pub fields: BTreeMap<String, Option<String>>,
}

/// `^[A-Za-z]+='`: the key of a line that starts a field.
fn field_start(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.split_once("='")?;
    (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphabetic())).then_some((key, rest))
}

pub fn parse(message: &str) -> Result<CfnEvent, CfnError> {
    let mut fields = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let finish = |(key, raw): (String, String), fields: &mut BTreeMap<String, Option<String>>| {
        let value = raw
            .strip_suffix('\'')
            .ok_or(CfnError::Malformed("a value lacks its closing quote"))?;
        if fields.contains_key(&key) {
            return Err(CfnError::DuplicateKey(key));
        }
        fields.insert(key, (value != "null").then(|| value.to_owned()));
        Ok::<_, CfnError>(())
    };
    let body = message.strip_suffix('\n').unwrap_or(message);
    for line in body.split('\n') {
        match field_start(line) {
            Some((key, rest)) => {
                if let Some(done) = current.take() {
                    finish(done, &mut fields)?;
                }
                current = Some((key.to_owned(), rest.to_owned()));
            }
            None => match current.as_mut() {
                Some((_, value)) => {
                    value.push('\n');
                    value.push_str(line);
                }
                None => return Err(CfnError::Malformed("text before the first field")),
            },
        }
    }
    match current {
        Some(done) => finish(done, &mut fields)?,
        None => return Err(CfnError::Malformed("no fields")),
    }
    Ok(CfnEvent { fields })
}

impl CfnEvent {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(|v| v.as_deref())
    }

    fn required(&self, key: &'static str) -> Result<&str, CfnError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or(CfnError::Missing(key))
    }

    pub fn event_id(&self) -> Result<&str, CfnError> {
        self.required("EventId")
    }

    pub fn stack_id(&self) -> Result<&str, CfnError> {
        let id = self.required("StackId")?;
        if id.contains('@') || id.chars().any(char::is_control) {
            return Err(CfnError::BadStackId);
        }
        Ok(id)
    }

    /// The idempotency key: `EventId@StackId`. A resource event's id
    /// (`<Logical>-<STATUS>-<timestamp>`, §3.2) is only unique within its stack, and two stacks
    /// (StackSet instances, say) can produce the same one, so the stack id scopes it. The
    /// `EventId` stays in front, and a stack id never holds `@`, so the pair is recoverable.
    pub fn scoped_event_id(&self) -> Result<String, CfnError> {
        Ok(format!("{}@{}", self.event_id()?, self.stack_id()?))
    }

    pub fn stack_name(&self) -> Result<&str, CfnError> {
        self.required("StackName")
    }

    pub fn resource_status(&self) -> Result<&str, CfnError> {
        self.required("ResourceStatus")
    }

    pub fn timestamp(&self) -> Result<DateTime<Utc>, CfnError> {
        parse_time(self.required("Timestamp")?).ok_or(CfnError::BadTimestamp)
    }

    /// A stack-level event (`AWS::CloudFormation::Stack` about the stack itself), as opposed to
    /// one of its resources; only these set the stack's status. The physical id decides: a
    /// nested stack is an `AWS::CloudFormation::Stack` resource of its parent whose logical id
    /// may well equal the parent's name, but whose physical id is the child's stack id. A message
    /// without `PhysicalResourceId` (some older ones lack it, §3.2) is history only.
    pub fn is_stack_level(&self) -> bool {
        self.get("ResourceType") == Some("AWS::CloudFormation::Stack")
            && self.get("StackId").is_some_and(|id| !id.is_empty())
            && self.get("PhysicalResourceId") == self.get("StackId")
    }

    /// The event as the stored JSON payload: every field, nulls as null.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone().map(Value::String).unwrap_or(Value::Null),
                )
            })
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// awslabs/aws-saas-boost CloudFormationEventDeserializerTest, first case.
    const STACK_EVENT: &str = "StackId='arn:aws:cloudformation:us-east-1:444455556666:stack/sb-env-core-D8CPRXEBJBCV/a80dacc0-7263-11ec-8a77-026f030e7a17'\nTimestamp='2022-01-10T22:23:41.278Z'\nEventId='f700b430-7263-11ec-b90e-0adccbefb08b'\nLogicalResourceId='sb-env-core-D8CPRXEBJBCV'\nNamespace='444455556666'\nPhysicalResourceId='arn:aws:cloudformation:us-east-1:444455556666:stack/sb-env-core-D8CPRXEBJBCV/a80dacc0-7263-11ec-8a77-026f030e7a17'\nPrincipalId='abcdef01234567890'\nResourceProperties='null'\nResourceStatus='CREATE_COMPLETE'\nResourceStatusReason=''\nResourceType='AWS::CloudFormation::Stack'\nStackName='sb-env-core-D8CPRXEBJBCV'\nClientRequestToken='null'\n";

    #[test]
    fn parses_a_stack_level_event() {
        let event = parse(STACK_EVENT).unwrap();
        assert_eq!(
            event.event_id().unwrap(),
            "f700b430-7263-11ec-b90e-0adccbefb08b"
        );
        assert_eq!(event.stack_name().unwrap(), "sb-env-core-D8CPRXEBJBCV");
        assert_eq!(event.resource_status().unwrap(), "CREATE_COMPLETE");
        assert_eq!(
            event.timestamp().unwrap().timestamp_millis(),
            1_641_853_421_278
        );
        assert_eq!(event.get("ResourceStatusReason"), Some(""));
        assert_eq!(event.fields["ClientRequestToken"], None);
        assert_eq!(event.fields["ResourceProperties"], None);
        assert!(event.is_stack_level());
        assert_eq!(event.fields.len(), 13);
    }

    #[test]
    fn nested_json_with_quotes_stays_one_value() {
        let message = "StackId='arn:aws:cloudformation:us-east-1:1:stack/web/u'\nTimestamp='2024-03-01T12:00:00.000Z'\nEventId='Bucket-CREATE_IN_PROGRESS-2024-03-01T12:00:00.000Z'\nLogicalResourceId='Bucket'\nResourceProperties='{\"BucketName\":\"it's-mine\",\"Tags\":[{\"Key\":\"a='b'\",\"Value\":\"x\\ny\"}]}'\nResourceStatus='CREATE_IN_PROGRESS'\nResourceType='AWS::S3::Bucket'\nStackName='web'\n";
        let event = parse(message).unwrap();
        let properties = event.get("ResourceProperties").unwrap();
        assert_eq!(
            properties,
            "{\"BucketName\":\"it's-mine\",\"Tags\":[{\"Key\":\"a='b'\",\"Value\":\"x\\ny\"}]}"
        );
        let json: Value = serde_json::from_str(properties).unwrap();
        assert_eq!(json["Tags"][0]["Key"], "a='b'");
        assert!(!event.is_stack_level());
        assert_eq!(event.get("ResourceType"), Some("AWS::S3::Bucket"));
    }

    #[test]
    fn a_value_may_span_lines() {
        let message = "Timestamp='2024-03-01T12:00:00Z'\nEventId='e1'\nResourceStatusReason='Resource creation failed:\nthe bucket name 'x' is taken\n\nsee details'\nResourceStatus='CREATE_FAILED'\nStackName='web'\n";
        let event = parse(message).unwrap();
        assert_eq!(
            event.get("ResourceStatusReason"),
            Some("Resource creation failed:\nthe bucket name 'x' is taken\n\nsee details")
        );
        assert_eq!(event.resource_status().unwrap(), "CREATE_FAILED");
    }

    #[test]
    fn older_messages_lack_some_keys() {
        // Second saas-boost case and the 2014 example: no PhysicalResourceId, PrincipalId,
        // ClientRequestToken or Namespace.
        let message = "StackId='arn:aws:cloudformation:us-east-1:1:stack/old/u'\nTimestamp='2014-04-23T19:36:43.296Z'\nEventId='5b1b8a70-cb1c-11e3-8d2b-50fa5262a838'\nLogicalResourceId='old'\nResourceProperties='null'\nResourceStatus='DELETE_COMPLETE'\nResourceStatusReason=''\nResourceType='AWS::CloudFormation::Stack'\nStackName='old'\n";
        let event = parse(message).unwrap();
        for absent in [
            "PhysicalResourceId",
            "PrincipalId",
            "ClientRequestToken",
            "Namespace",
        ] {
            assert!(!event.fields.contains_key(absent), "{absent}");
        }
        // Without a physical id, stack-level cannot be told from a nested stack's event.
        assert!(!event.is_stack_level());
        assert_eq!(
            event.event_id().unwrap(),
            "5b1b8a70-cb1c-11e3-8d2b-50fa5262a838"
        );
    }

    // S14: a later copy of a key must not override the first (a value spanning lines could
    // otherwise smuggle in `ResourceType='AWS::CloudFormation::Stack'`).
    #[test]
    fn duplicate_keys_are_refused() {
        assert_eq!(
            parse("StackName='web'\nResourceStatus='X'\nStackName='other'\n"),
            Err(CfnError::DuplicateKey("StackName".into()))
        );
        let smuggled = STACK_EVENT.replace(
            "ResourceStatusReason=''",
            "ResourceStatusReason='x'\nResourceStatus='DELETE_COMPLETE'",
        );
        assert_eq!(
            parse(&smuggled),
            Err(CfnError::DuplicateKey("ResourceStatus".into()))
        );
    }

    // S14: a nested stack is an `AWS::CloudFormation::Stack` resource of its parent; its logical
    // id may equal the parent's name, but its physical id is the child's stack id.
    #[test]
    fn stack_level_means_the_physical_id_is_the_stack_id() {
        let nested = STACK_EVENT
            .replace(
                "PhysicalResourceId='arn:aws:cloudformation:us-east-1:444455556666:stack/sb-env-core-D8CPRXEBJBCV/a80dacc0-7263-11ec-8a77-026f030e7a17'",
                "PhysicalResourceId='arn:aws:cloudformation:us-east-1:444455556666:stack/sb-env-core-D8CPRXEBJBCV-child-1/0f0f0f0f-7263-11ec-8a77-026f030e7a17'",
            );
        let nested = parse(&nested).unwrap();
        assert_eq!(nested.get("LogicalResourceId"), nested.get("StackName"));
        assert!(!nested.is_stack_level());
        let no_physical_id = parse(
            &STACK_EVENT.replace(
                "PhysicalResourceId='arn:aws:cloudformation:us-east-1:444455556666:stack/sb-env-core-D8CPRXEBJBCV/a80dacc0-7263-11ec-8a77-026f030e7a17'\n",
                "",
            ),
        )
        .unwrap();
        assert!(!no_physical_id.is_stack_level());
        let renamed_logical = parse(&STACK_EVENT.replace(
            "LogicalResourceId='sb-env-core-D8CPRXEBJBCV'",
            "LogicalResourceId='Other'",
        ))
        .unwrap();
        assert!(renamed_logical.is_stack_level());
    }

    // S14: resource event ids (`<Logical>-<STATUS>-<timestamp>`) repeat across stacks.
    #[test]
    fn event_ids_are_scoped_by_stack_id() {
        let resource = "StackId='arn:aws:cloudformation:us-east-1:1:stack/a/u1'\nTimestamp='2024-03-01T12:00:00.000Z'\nEventId='Bucket-CREATE_COMPLETE-2024-03-01T12:00:00.000Z'\nLogicalResourceId='Bucket'\nResourceStatus='CREATE_COMPLETE'\nResourceType='AWS::S3::Bucket'\nStackName='a'\n";
        let other = resource
            .replace("stack/a/u1", "stack/b/u2")
            .replace("StackName='a'", "StackName='b'");
        let first = parse(resource).unwrap().scoped_event_id().unwrap();
        assert_eq!(
            first,
            "Bucket-CREATE_COMPLETE-2024-03-01T12:00:00.000Z@arn:aws:cloudformation:us-east-1:1:stack/a/u1"
        );
        assert_ne!(first, parse(&other).unwrap().scoped_event_id().unwrap());
        let no_stack_id = parse("EventId='e'\nStackName='a'\n").unwrap();
        assert_eq!(
            no_stack_id.scoped_event_id(),
            Err(CfnError::Missing("StackId"))
        );
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(
            parse(""),
            Err(CfnError::Malformed("text before the first field"))
        );
        assert_eq!(
            parse("Hello world"),
            Err(CfnError::Malformed("text before the first field"))
        );
        assert_eq!(
            parse("EventId='open\n"),
            Err(CfnError::Malformed("a value lacks its closing quote"))
        );
        let no_id = parse("StackName='web'\nResourceStatus='X'\n").unwrap();
        assert_eq!(no_id.event_id(), Err(CfnError::Missing("EventId")));
        let bad_time = parse("Timestamp='yesterday'\n").unwrap();
        assert_eq!(bad_time.timestamp(), Err(CfnError::BadTimestamp));
    }
}
