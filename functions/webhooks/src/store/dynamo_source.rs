//! The webhook stores beside the DynamoDB events table, when this crate is built without its
//! `dynamodb` feature (the local server): none, every call of `webhooks_api::build` on DynamoDB
//! fails naming `WEBHOOKS_TABLE` and the route is disabled. With the feature, the real source
//! is `crate::dynamo` (WebhooksTable and the SQS delivery queue).

use super::{
    AttemptRecord, Delivery, DeliveryCreate, DeliveryPage, DeliveryStore, DeliveryUpdate,
    DeliveryWithAttempts, Found, PageRequest, StoreError, SubscriptionCreate, SubscriptionHealth,
    SubscriptionStore, WebhooksSource,
};
use crate::model::Subscription;
use chrono::{DateTime, Utc};
use hub_core::config::ConfigError;
use hub_core::setup::Setup;
use hub_core::store::DynamoStore;

impl WebhooksSource for DynamoStore {
    type Store = NoWebhookStore;
    type Queue = ();
    async fn webhook_stores(&self, _setup: &Setup) -> Result<(NoWebhookStore, ()), ConfigError> {
        Err(ConfigError::Invalid {
            name: "WEBHOOKS_TABLE",
            reason: "the DynamoDB webhook store is not available in this build".into(),
        })
    }
}

/// A store that is never built ([`DynamoStore`]'s provisional source always fails).
#[derive(Debug, Clone, Copy)]
pub struct NoWebhookStore;

fn none() -> StoreError {
    StoreError::Unavailable("no webhook store".into())
}

impl SubscriptionStore for NoWebhookStore {
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        Err(none())
    }
    async fn get_subscription(&self, _: &str) -> Result<Option<Subscription>, StoreError> {
        Err(none())
    }
    async fn create_subscription(
        &self,
        _: &Subscription,
    ) -> Result<SubscriptionCreate, StoreError> {
        Err(none())
    }
    async fn replace_subscription(&self, _: &Subscription) -> Result<Found, StoreError> {
        Err(none())
    }
    async fn delete_subscription(&self, _: &str) -> Result<Found, StoreError> {
        Err(none())
    }
    async fn save_subscription_health(
        &self,
        _: &str,
        _: &SubscriptionHealth,
    ) -> Result<Found, StoreError> {
        Err(none())
    }
}

impl DeliveryStore for NoWebhookStore {
    async fn create_delivery(&self, _: &Delivery) -> Result<DeliveryCreate, StoreError> {
        Err(none())
    }
    async fn get_delivery(&self, _: &str) -> Result<Option<Delivery>, StoreError> {
        Err(none())
    }
    async fn update_delivery(&self, _: &Delivery, _: u64) -> Result<DeliveryUpdate, StoreError> {
        Err(none())
    }
    async fn record_attempt(
        &self,
        _: &Delivery,
        _: u64,
        _: &AttemptRecord,
    ) -> Result<DeliveryUpdate, StoreError> {
        Err(none())
    }
    async fn list_deliveries(
        &self,
        _: &str,
        _: &PageRequest,
    ) -> Result<DeliveryPage<DeliveryWithAttempts>, StoreError> {
        Err(none())
    }
    async fn due_deliveries(&self, _: DateTime<Utc>, _: u32) -> Result<Vec<Delivery>, StoreError> {
        Err(none())
    }
    async fn failed_deliveries(
        &self,
        _: &str,
        _: DateTime<Utc>,
        _: &PageRequest,
    ) -> Result<DeliveryPage<Delivery>, StoreError> {
        Err(none())
    }
}
