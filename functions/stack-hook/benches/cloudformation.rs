//! Parsing a CloudFormation stack event as SNS carries it (`Key='Value'` lines), with and
//! without the JSON of `ResourceProperties`, into the stored event's JSON.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const STACK_EVENT: &str = "StackId='arn:aws:cloudformation:us-east-1:123456789012:stack/orders-api/5e2a4f10-d7a9-11ee-9c3f-0a1b2c3d4e5f'\nTimestamp='2024-03-01T12:05:00.000Z'\nEventId='5e2a4f10-d7a9-11ee-9c3f-0a1b2c3d4e5f'\nLogicalResourceId='orders-api'\nNamespace='123456789012'\nPhysicalResourceId='arn:aws:cloudformation:us-east-1:123456789012:stack/orders-api/5e2a4f10-d7a9-11ee-9c3f-0a1b2c3d4e5f'\nPrincipalId='AIDAEXAMPLE'\nResourceProperties='null'\nResourceStatus='CREATE_COMPLETE'\nResourceStatusReason=''\nResourceType='AWS::CloudFormation::Stack'\nStackName='orders-api'\nClientRequestToken='null'\n";

const RESOURCE_EVENT: &str = "StackId='arn:aws:cloudformation:us-east-1:123456789012:stack/orders-api/5e2a4f10-d7a9-11ee-9c3f-0a1b2c3d4e5f'\nTimestamp='2024-03-01T12:04:41.512Z'\nEventId='OrdersTable-CREATE_COMPLETE-2024-03-01T12:04:41.512Z'\nLogicalResourceId='OrdersTable'\nNamespace='123456789012'\nPhysicalResourceId='orders-api-OrdersTable-1X2Y3Z'\nPrincipalId='AIDAEXAMPLE'\nResourceProperties='{\"TableName\":\"orders\",\"BillingMode\":\"PAY_PER_REQUEST\",\"KeySchema\":[{\"AttributeName\":\"pk\",\"KeyType\":\"HASH\"}],\"AttributeDefinitions\":[{\"AttributeName\":\"pk\",\"AttributeType\":\"S\"}]}\n'\nResourceStatus='CREATE_COMPLETE'\nResourceStatusReason=''\nResourceType='AWS::DynamoDB::Table'\nStackName='orders-api'\nClientRequestToken='Console-CreateStack-7f59c3cf-00d3-40c7-b2ff-e75db0987002'\n";

fn bench(c: &mut Criterion) {
    for (id, message) in [
        ("cloudformation/parse-stack-event", STACK_EVENT),
        ("cloudformation/parse-resource-event", RESOURCE_EVENT),
    ] {
        let event = stack_hook::cfn::parse(message).expect("a valid stack event");
        assert!(event.resource_status().is_ok() && event.timestamp().is_ok());
        c.bench_function(id, |b| {
            b.iter(|| {
                let event = stack_hook::cfn::parse(black_box(message)).unwrap();
                (event.timestamp().unwrap(), event.to_json())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
