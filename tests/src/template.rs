//! The events table exactly as `template.yaml` defines it, so that tests and deployments cannot
//! drift apart.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use serde_norway::Value;

/// The `Properties` of a resource of `template.yaml`.
pub fn resource_properties(logical_id: &str) -> Value {
    let path = crate::repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml is readable");
    let template: Value = serde_norway::from_str(&text).expect("template.yaml is YAML");
    template["Resources"][logical_id]["Properties"].clone()
}

fn text(value: &Value, what: &str) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("template.yaml: {what} is not a plain string"))
        .to_owned()
}

fn key_schema(value: &Value) -> Vec<KeySchemaElement> {
    value
        .as_sequence()
        .expect("KeySchema is a list")
        .iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(text(&k["AttributeName"], "AttributeName"))
                .key_type(KeyType::from(text(&k["KeyType"], "KeyType").as_str()))
                .build()
                .expect("complete key schema element")
        })
        .collect()
}

/// Creates `table` with the key schema, attributes, indexes, stream and TTL of `EventsTable`.
pub async fn create_events_table(client: &Client, table: &str) {
    create_table_like(client, "EventsTable", table).await;
}

/// Creates `table` like `WebhooksTable` (subscriptions, deliveries, attempts).
pub async fn create_webhooks_table(client: &Client, table: &str) {
    create_table_like(client, "WebhooksTable", table).await;
}

/// Creates `table` with the key schema, attributes, indexes, stream and TTL of the
/// `AWS::DynamoDB::Table` resource `logical_id`.
pub async fn create_table_like(client: &Client, logical_id: &str, table: &str) {
    let props = resource_properties(logical_id);
    let attributes = props["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions is a list")
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(text(&a["AttributeName"], "AttributeName"))
                .attribute_type(ScalarAttributeType::from(
                    text(&a["AttributeType"], "AttributeType").as_str(),
                ))
                .build()
                .expect("complete attribute definition")
        })
        .collect();
    let indexes = props["GlobalSecondaryIndexes"].as_sequence().map(|list| {
        list.iter()
            .map(|gsi| {
                let projection = &gsi["Projection"];
                let non_key = projection["NonKeyAttributes"]
                    .as_sequence()
                    .map(|names| names.iter().map(|n| text(n, "NonKeyAttributes")).collect());
                GlobalSecondaryIndex::builder()
                    .index_name(text(&gsi["IndexName"], "IndexName"))
                    .set_key_schema(Some(key_schema(&gsi["KeySchema"])))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(
                                text(&projection["ProjectionType"], "ProjectionType").as_str(),
                            ))
                            .set_non_key_attributes(non_key)
                            .build(),
                    )
                    .build()
                    .expect("complete index")
            })
            .collect()
    });
    assert_eq!(
        text(&props["BillingMode"], "BillingMode"),
        "PAY_PER_REQUEST"
    );
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&props["KeySchema"])))
        .set_global_secondary_indexes(indexes)
        .set_stream_specification(stream_specification(&props["StreamSpecification"]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create a table like {logical_id} in moto: {e:?}"));
    let ttl = &props["TimeToLiveSpecification"];
    if ttl["Enabled"].as_bool() == Some(true) {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(&ttl["AttributeName"], "TTL AttributeName"))
                    .enabled(true)
                    .build()
                    .expect("complete TTL specification"),
            )
            .send()
            .await
            .expect("enable TTL in moto");
    }
}

/// The table's stream, as the template enables it (the events table's feeds the webhook fan-out).
fn stream_specification(value: &Value) -> Option<StreamSpecification> {
    let view = value["StreamViewType"].as_str()?;
    Some(
        StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::from(view))
            .build()
            .expect("complete stream specification"),
    )
}
