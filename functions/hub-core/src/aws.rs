//! SDK clients, built once at init. `AWS_ENDPOINT_URL` and the other standard SDK variables
//! point them at a local API (moto) in tests and local runs.

use crate::store::dynamo::{retry_config, timeout_config};
use crate::store::DynamoStore;

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .load()
        .await
}

pub fn dynamo_store(config: &aws_config::SdkConfig, table: impl Into<String>) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(config), table)
}
