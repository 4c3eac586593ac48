//! The webhook store on DynamoDB (feature `dynamodb`): the AWS functions' subscriptions,
//! deliveries and attempts, in the `WebhooksTable` of `template.yaml` (the integration tests
//! create their tables from that definition), and [`sqs::SqsDeliveryQueue`], the delivery queue.
//!
//! | item | `pk` | `sk` | other keys |
//! |---|---|---|---|
//! | subscription | `subscription` | its name | |
//! | delivery | `delivery#{id}` | `delivery` | `sub_key`, `created_key`; `due_shard`/`due_key` while pending; `failed_key` while failed |
//! | attempt | `delivery#{id}` | `attempt#{number, 10 digits}` | |
//!
//! - Every subscription lives in one partition: a strongly consistent Query lists them all (an
//!   installation has tens), a GetItem reads one by name.
//! - A delivery and its attempts share a partition: one Query reads the delivery with its log.
//! - Index `by-subscription` (`sub_key`, `created_key` = `{created_at µs, 19 digits}#{id}`): a
//!   subscription's deliveries newest first. Keys only; each delivery is then read from its
//!   partition (consistent, with its attempts).
//! - Index `due` (sparse: only pending deliveries; `due_shard` = `due#{0..DUE_SHARDS}`,
//!   `due_key` = `{next_attempt_at µs}#{id}`): what the sweep re-queues. Sharded so that a burst
//!   of new deliveries does not write one index partition only.
//! - Index `failed` (sparse: only failed deliveries; `failed_key` = the subscription,
//!   `created_key`): a replay "since".
//!
//! Each item keeps its record as JSON in `data`, so that every field round-trips exactly; the
//! key attributes are derived from it on every write. A delivery's `version` is also an
//! attribute: the condition of every change. A subscription's health fields (disabled, failure
//! streak) are a separate attribute `health` that overrides `data`, so that the deliver
//! function updates them without rewriting (and racing) what a PUT wrote.
//!
//! TTL is on `expires_at`: deliveries and attempts carry their event's, subscriptions none.

pub mod sqs;

use crate::model::{DisabledReason, Subscription};
use crate::store::{
    parse_listing_cursor, AttemptRecord, Delivery, DeliveryCreate, DeliveryPage, DeliveryState,
    DeliveryStore, DeliveryUpdate, DeliveryWithAttempts, Found, PageRequest, StoreError,
    SubscriptionCreate, SubscriptionHealth, SubscriptionStore, WebhooksSource,
};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use hub_core::config::{ConfigError, Vars};
use hub_core::setup::Setup;
use hub_core::store::dynamo::classify;
use hub_core::store::DynamoStore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The variable naming the table.
pub const TABLE_VARIABLE: &str = "WEBHOOKS_TABLE";

/// Attribute and index names of the webhooks table.
pub struct WebhooksLayout;

impl WebhooksLayout {
    pub const PK: &'static str = "pk";
    pub const SK: &'static str = "sk";
    pub const DATA: &'static str = "data";
    pub const HEALTH: &'static str = "health";
    pub const VERSION: &'static str = "version";
    pub const STATE: &'static str = "state";
    pub const SUB_KEY: &'static str = "sub_key";
    pub const CREATED_KEY: &'static str = "created_key";
    pub const DUE_SHARD: &'static str = "due_shard";
    pub const DUE_KEY: &'static str = "due_key";
    pub const FAILED_KEY: &'static str = "failed_key";
    pub const EXPIRES_AT: &'static str = "expires_at";

    pub const SUBSCRIPTIONS_PK: &'static str = "subscription";
    pub const DELIVERY_SK: &'static str = "delivery";
    pub const ATTEMPT_SK_PREFIX: &'static str = "attempt#";

    pub const BY_SUBSCRIPTION: &'static str = "by-subscription";
    pub const DUE: &'static str = "due";
    pub const FAILED: &'static str = "failed";
}

/// Partitions of the `due` index.
pub const DUE_SHARDS: u32 = 4;

type Item = HashMap<String, AttributeValue>;

/// Subscriptions, deliveries and attempts in one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoWebhookStore {
    client: Client,
    table: String,
}

impl DynamoWebhookStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoWebhookStore {
            client,
            table: table.into(),
        }
    }

    /// The table named by `WEBHOOKS_TABLE`, with the function's SDK configuration.
    pub async fn from_setup(setup: &Setup) -> Result<Self, ConfigError> {
        let table = setup.required(TABLE_VARIABLE)?;
        let client = hub_core::aws::dynamodb_client(setup.sdk().await?);
        Ok(DynamoWebhookStore::new(client, table))
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every item of one delivery's partition: the delivery and its attempts, oldest first.
    async fn delivery_partition(
        &self,
        id: &str,
    ) -> Result<Option<DeliveryWithAttempts>, StoreError> {
        let mut start = None;
        let mut delivery = None;
        let mut attempts_log = Vec::new();
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", WebhooksLayout::PK)
                .expression_attribute_values(":pk", s(delivery_pk(id)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in output.items() {
                let sk = text(item, WebhooksLayout::SK)?;
                if sk == WebhooksLayout::DELIVERY_SK {
                    delivery = Some(delivery_from_item(item)?);
                } else if sk.starts_with(WebhooksLayout::ATTEMPT_SK_PREFIX) {
                    attempts_log.push(data_of::<AttemptRecord>(item)?);
                }
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        // Sort keys are zero-padded, so the query already returns attempts in order; sorting
        // by number keeps that true whatever the padding.
        attempts_log.sort_by_key(|a| a.number);
        Ok(delivery.map(|delivery| DeliveryWithAttempts {
            delivery,
            attempts_log,
        }))
    }

    /// One page of an index keyed by (`hash`, `created_key`), newest first, from `since` on.
    async fn created_page(
        &self,
        index: &str,
        hash_attr: &str,
        subscription: &str,
        since: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let since_key = since.map(micros_key);
        let start = match page.cursor.as_deref() {
            None => None,
            Some(cursor) => {
                let (micros, id) = parse_listing_cursor(cursor)?;
                if micros < 0 {
                    return Err(StoreError::BadCursor);
                }
                let created = format!("{micros:019}#{id}");
                if since_key.as_ref().is_some_and(|since| created < *since) {
                    return Err(StoreError::BadCursor);
                }
                let mut key = Item::new();
                key.insert(WebhooksLayout::PK.into(), s(delivery_pk(&id)));
                key.insert(WebhooksLayout::SK.into(), s(WebhooksLayout::DELIVERY_SK));
                key.insert(hash_attr.into(), s(subscription));
                key.insert(WebhooksLayout::CREATED_KEY.into(), s(created));
                Some(key)
            }
        };
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .expression_attribute_names("#h", hash_attr)
            .expression_attribute_values(":h", s(subscription))
            .scan_index_forward(false)
            .limit(page.effective_limit() as i32)
            .set_exclusive_start_key(start);
        query = match since_key {
            Some(since) => query
                .key_condition_expression("#h = :h AND #c >= :since")
                .expression_attribute_names("#c", WebhooksLayout::CREATED_KEY)
                .expression_attribute_values(":since", s(since)),
            None => query.key_condition_expression("#h = :h"),
        };
        let output = query.send().await.map_err(classify)?;
        let items = output.items().to_vec();
        let next = match (&output.last_evaluated_key, items.last()) {
            (Some(last), Some(item)) if !last.is_empty() => Some(cursor_of(item)?),
            _ => None,
        };
        Ok((items, next))
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn delivery_pk(id: &str) -> String {
    format!("delivery#{id}")
}

fn attempt_sk(number: u32) -> String {
    format!("{}{number:010}", WebhooksLayout::ATTEMPT_SK_PREFIX)
}

/// Microseconds since the epoch, zero-padded so that string order is time order (times before
/// 1970 sort as 1970: no delivery is that old).
fn micros_key(at: DateTime<Utc>) -> String {
    format!("{:019}", at.timestamp_micros().max(0))
}

fn created_key(delivery: &Delivery) -> String {
    format!("{}#{}", micros_key(delivery.created_at), delivery.id)
}

fn due_shard(id: &str) -> String {
    let hash = id.bytes().fold(0u32, |acc, b| {
        acc.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    format!("due#{}", hash % DUE_SHARDS)
}

fn text<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Failed(format!("stored webhook item lacks {name}")))
}

fn data_of<T: for<'de> Deserialize<'de>>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_str(text(item, WebhooksLayout::DATA)?)
        .map_err(|e| StoreError::Failed(format!("stored webhook item is unreadable: {e}")))
}

fn json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Failed(format!("cannot encode: {e}")))
}

/// The listing cursor of an index item (its `created_key` is `{µs}#{id}`).
fn cursor_of(item: &Item) -> Result<String, StoreError> {
    let created = text(item, WebhooksLayout::CREATED_KEY)?;
    let (micros, id) = created
        .split_once('#')
        .ok_or_else(|| StoreError::Failed("malformed created_key".into()))?;
    let micros: i64 = micros
        .parse()
        .map_err(|_| StoreError::Failed("malformed created_key".into()))?;
    Ok(format!("{micros}|{id}"))
}

/// The health fields, stored apart from the rest of the subscription.
#[derive(Serialize, Deserialize)]
struct HealthRecord {
    disabled: bool,
    #[serde(default)]
    disabled_reason: Option<DisabledReason>,
    #[serde(default)]
    failing_since: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

impl From<&SubscriptionHealth> for HealthRecord {
    fn from(health: &SubscriptionHealth) -> Self {
        HealthRecord {
            disabled: health.disabled,
            disabled_reason: health.disabled_reason,
            failing_since: health.failing_since,
            updated_at: health.updated_at,
        }
    }
}

impl From<HealthRecord> for SubscriptionHealth {
    fn from(record: HealthRecord) -> Self {
        SubscriptionHealth {
            disabled: record.disabled,
            disabled_reason: record.disabled_reason,
            failing_since: record.failing_since,
            updated_at: record.updated_at,
        }
    }
}

fn subscription_item(subscription: &Subscription) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert(
        WebhooksLayout::PK.into(),
        s(WebhooksLayout::SUBSCRIPTIONS_PK),
    );
    item.insert(WebhooksLayout::SK.into(), s(&subscription.name));
    item.insert(WebhooksLayout::DATA.into(), s(json(subscription)?));
    let health = HealthRecord::from(&SubscriptionHealth::of(subscription));
    item.insert(WebhooksLayout::HEALTH.into(), s(json(&health)?));
    Ok(item)
}

fn subscription_from_item(item: &Item) -> Result<Subscription, StoreError> {
    let mut subscription: Subscription = data_of(item)?;
    if let Ok(health) = text(item, WebhooksLayout::HEALTH) {
        let health: HealthRecord = serde_json::from_str(health)
            .map_err(|e| StoreError::Failed(format!("stored health is unreadable: {e}")))?;
        SubscriptionHealth::from(health).apply_to(&mut subscription);
    }
    Ok(subscription)
}

fn delivery_item(delivery: &Delivery) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert(WebhooksLayout::PK.into(), s(delivery_pk(&delivery.id)));
    item.insert(WebhooksLayout::SK.into(), s(WebhooksLayout::DELIVERY_SK));
    item.insert(WebhooksLayout::DATA.into(), s(json(delivery)?));
    item.insert(WebhooksLayout::VERSION.into(), n(delivery.version));
    item.insert(WebhooksLayout::STATE.into(), s(delivery.state.as_str()));
    item.insert(WebhooksLayout::SUB_KEY.into(), s(&delivery.subscription));
    item.insert(WebhooksLayout::CREATED_KEY.into(), s(created_key(delivery)));
    match delivery.state {
        DeliveryState::Pending => {
            item.insert(WebhooksLayout::DUE_SHARD.into(), s(due_shard(&delivery.id)));
            item.insert(
                WebhooksLayout::DUE_KEY.into(),
                s(format!(
                    "{}#{}",
                    micros_key(delivery.next_attempt_at),
                    delivery.id
                )),
            );
        }
        DeliveryState::Failed => {
            item.insert(WebhooksLayout::FAILED_KEY.into(), s(&delivery.subscription));
        }
        DeliveryState::Delivered => {}
    }
    if let Some(expires_at) = delivery.expires_at {
        item.insert(WebhooksLayout::EXPIRES_AT.into(), n(expires_at));
    }
    Ok(item)
}

fn delivery_from_item(item: &Item) -> Result<Delivery, StoreError> {
    data_of(item)
}

fn attempt_item(attempt: &AttemptRecord) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert(
        WebhooksLayout::PK.into(),
        s(delivery_pk(&attempt.delivery_id)),
    );
    item.insert(WebhooksLayout::SK.into(), s(attempt_sk(attempt.number)));
    item.insert(WebhooksLayout::DATA.into(), s(json(attempt)?));
    if let Some(expires_at) = attempt.expires_at {
        item.insert(WebhooksLayout::EXPIRES_AT.into(), n(expires_at));
    }
    Ok(item)
}

/// Whether a write failed only on its condition.
fn condition_failed<R>(err: &SdkError<impl ConditionalError, R>) -> bool {
    matches!(err, SdkError::ServiceError(service) if service.err().is_conditional_failure())
}

/// The operation errors whose condition can fail.
trait ConditionalError: aws_sdk_dynamodb::error::ProvideErrorMetadata {
    fn is_conditional_failure(&self) -> bool;
}

macro_rules! conditional {
    ($($error:ty),*) => {$(
        impl ConditionalError for $error {
            fn is_conditional_failure(&self) -> bool {
                self.is_conditional_check_failed_exception()
            }
        }
    )*};
}

conditional!(
    aws_sdk_dynamodb::operation::put_item::PutItemError,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemError,
    aws_sdk_dynamodb::operation::update_item::UpdateItemError
);

impl DynamoWebhookStore {
    /// A conditional PutItem: `Ok(true)` when written, `Ok(false)` when the condition failed.
    async fn put_if(
        &self,
        item: Item,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#pk", WebhooksLayout::PK);
        if condition.contains("#v") {
            request = request.expression_attribute_names("#v", WebhooksLayout::VERSION);
        }
        for (name, value) in values {
            request = request.expression_attribute_values(*name, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(err) if condition_failed(&err) => Ok(false),
            Err(err) => Err(classify(err)),
        }
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(WebhooksLayout::PK, s(pk))
            .key(WebhooksLayout::SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }
}

/// The delivery, with the version it gets, written only over `expected_version`.
fn versioned_delivery_item(
    delivery: &Delivery,
    expected_version: u64,
) -> Result<(Item, AttributeValue), StoreError> {
    let next = Delivery {
        version: expected_version + 1,
        ..delivery.clone()
    };
    Ok((delivery_item(&next)?, n(expected_version)))
}

const VERSION_CONDITION: &str = "attribute_exists(#pk) AND #v = :expected";

impl SubscriptionStore for DynamoWebhookStore {
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        let mut subscriptions = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", WebhooksLayout::PK)
                .expression_attribute_values(":pk", s(WebhooksLayout::SUBSCRIPTIONS_PK))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in output.items() {
                subscriptions.push(subscription_from_item(item)?);
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        Ok(subscriptions)
    }

    async fn get_subscription(&self, name: &str) -> Result<Option<Subscription>, StoreError> {
        self.get_item(WebhooksLayout::SUBSCRIPTIONS_PK.to_owned(), name)
            .await?
            .as_ref()
            .map(subscription_from_item)
            .transpose()
    }

    async fn create_subscription(
        &self,
        subscription: &Subscription,
    ) -> Result<SubscriptionCreate, StoreError> {
        let item = subscription_item(subscription)?;
        Ok(
            if self.put_if(item, "attribute_not_exists(#pk)", &[]).await? {
                SubscriptionCreate::Created
            } else {
                SubscriptionCreate::NameTaken
            },
        )
    }

    async fn replace_subscription(&self, subscription: &Subscription) -> Result<Found, StoreError> {
        let item = subscription_item(subscription)?;
        Ok(if self.put_if(item, "attribute_exists(#pk)", &[]).await? {
            Found::Yes
        } else {
            Found::No
        })
    }

    async fn delete_subscription(&self, name: &str) -> Result<Found, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(WebhooksLayout::PK, s(WebhooksLayout::SUBSCRIPTIONS_PK))
            .key(WebhooksLayout::SK, s(name))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", WebhooksLayout::PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Found::Yes),
            Err(err) if condition_failed(&err) => Ok(Found::No),
            Err(err) => Err(classify(err)),
        }
    }

    async fn save_subscription_health(
        &self,
        name: &str,
        health: &SubscriptionHealth,
    ) -> Result<Found, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(WebhooksLayout::PK, s(WebhooksLayout::SUBSCRIPTIONS_PK))
            .key(WebhooksLayout::SK, s(name))
            .update_expression("SET #health = :health")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", WebhooksLayout::PK)
            .expression_attribute_names("#health", WebhooksLayout::HEALTH)
            .expression_attribute_values(":health", s(json(&HealthRecord::from(health))?))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Found::Yes),
            Err(err) if condition_failed(&err) => Ok(Found::No),
            Err(err) => Err(classify(err)),
        }
    }
}

impl DeliveryStore for DynamoWebhookStore {
    async fn create_delivery(&self, delivery: &Delivery) -> Result<DeliveryCreate, StoreError> {
        let item = delivery_item(delivery)?;
        Ok(
            if self.put_if(item, "attribute_not_exists(#pk)", &[]).await? {
                DeliveryCreate::Created
            } else {
                DeliveryCreate::Exists
            },
        )
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>, StoreError> {
        self.get_item(delivery_pk(id), WebhooksLayout::DELIVERY_SK)
            .await?
            .as_ref()
            .map(delivery_from_item)
            .transpose()
    }

    async fn update_delivery(
        &self,
        delivery: &Delivery,
        expected_version: u64,
    ) -> Result<DeliveryUpdate, StoreError> {
        let (item, expected) = versioned_delivery_item(delivery, expected_version)?;
        Ok(
            if self
                .put_if(item, VERSION_CONDITION, &[(":expected", expected)])
                .await?
            {
                DeliveryUpdate::Updated
            } else {
                DeliveryUpdate::Conflict
            },
        )
    }

    async fn record_attempt(
        &self,
        delivery: &Delivery,
        expected_version: u64,
        attempt: &AttemptRecord,
    ) -> Result<DeliveryUpdate, StoreError> {
        let (item, expected) = versioned_delivery_item(delivery, expected_version)?;
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Failed(e.to_string());
        let update = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(VERSION_CONDITION)
            .expression_attribute_names("#pk", WebhooksLayout::PK)
            .expression_attribute_names("#v", WebhooksLayout::VERSION)
            .expression_attribute_values(":expected", expected)
            .build()
            .map_err(build)?;
        let log = Put::builder()
            .table_name(&self.table)
            .set_item(Some(attempt_item(attempt)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", WebhooksLayout::PK)
            .build()
            .map_err(build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(update).build())
            .transact_items(TransactWriteItem::builder().put(log).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(DeliveryUpdate::Updated),
            Err(SdkError::ServiceError(service))
                if service.err().is_transaction_canceled_exception() =>
            {
                let reasons: Vec<String> = match service.err() {
                    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) => e
                        .cancellation_reasons()
                        .iter()
                        .filter_map(|r| r.code().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                if reasons.iter().any(|code| code == "ConditionalCheckFailed") {
                    Ok(DeliveryUpdate::Conflict)
                } else {
                    // A concurrent transaction on the same items (TransactionConflict) or
                    // throttling: neither write happened; the caller tries again later.
                    Err(StoreError::Unavailable(format!(
                        "attempt not recorded, transaction cancelled: {}",
                        reasons.join(", ")
                    )))
                }
            }
            Err(err) => Err(classify(err)),
        }
    }

    async fn list_deliveries(
        &self,
        subscription: &str,
        page: &PageRequest,
    ) -> Result<DeliveryPage<DeliveryWithAttempts>, StoreError> {
        let (items, next) = self
            .created_page(
                WebhooksLayout::BY_SUBSCRIPTION,
                WebhooksLayout::SUB_KEY,
                subscription,
                None,
                page,
            )
            .await?;
        let ids = items
            .iter()
            .map(|item| {
                text(item, WebhooksLayout::PK)
                    .map(|pk| pk.trim_start_matches("delivery#").to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let read =
            futures::future::try_join_all(ids.iter().map(|id| self.delivery_partition(id))).await?;
        // A delivery that expired between the index and its read is left out.
        Ok(DeliveryPage {
            deliveries: read.into_iter().flatten().collect(),
            next,
        })
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Every key of a delivery due at or before `now` sorts below the next microsecond.
        let bound = format!("{:019}", now.timestamp_micros().saturating_add(1).max(0));
        let mut due = Vec::new();
        for shard in 0..DUE_SHARDS {
            let mut start = None;
            let mut taken = 0u32;
            loop {
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(WebhooksLayout::DUE)
                    .key_condition_expression("#h = :h AND #r < :bound")
                    .expression_attribute_names("#h", WebhooksLayout::DUE_SHARD)
                    .expression_attribute_names("#r", WebhooksLayout::DUE_KEY)
                    .expression_attribute_values(":h", s(format!("due#{shard}")))
                    .expression_attribute_values(":bound", s(bound.clone()))
                    .scan_index_forward(true)
                    .limit((limit - taken).min(1000) as i32)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(classify)?;
                for item in output.items() {
                    let delivery = delivery_from_item(item)?;
                    // The index lags its table: keep only what it still says is due.
                    if delivery.is_due(now) {
                        due.push(delivery);
                    }
                    taken += 1;
                }
                match output.last_evaluated_key {
                    Some(last) if !last.is_empty() && taken < limit => start = Some(last),
                    _ => break,
                }
            }
        }
        due.sort_by(|a, b| (a.next_attempt_at, &a.id).cmp(&(b.next_attempt_at, &b.id)));
        due.truncate(limit as usize);
        Ok(due)
    }

    async fn failed_deliveries(
        &self,
        subscription: &str,
        since: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<DeliveryPage<Delivery>, StoreError> {
        let (items, next) = self
            .created_page(
                WebhooksLayout::FAILED,
                WebhooksLayout::FAILED_KEY,
                subscription,
                Some(since),
                page,
            )
            .await?;
        let deliveries = items
            .iter()
            .map(delivery_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeliveryPage { deliveries, next })
    }
}

/// The Lambda functions' webhook stores, beside their events table: `WEBHOOKS_TABLE` on the same
/// DynamoDB client, and the delivery queue `WEBHOOKS_QUEUE_URL`.
impl WebhooksSource for DynamoStore {
    type Store = DynamoWebhookStore;
    type Queue = sqs::SqsQueue;

    async fn webhook_stores(
        &self,
        setup: &Setup,
    ) -> Result<(DynamoWebhookStore, sqs::SqsQueue), ConfigError> {
        let table = setup.required(TABLE_VARIABLE)?;
        let queue = sqs::SqsQueue::from_setup(setup, sqs::QUEUE_VARIABLE).await?;
        Ok((DynamoWebhookStore::new(self.client().clone(), table), queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::listing_cursor;
    use chrono::TimeZone;
    use hub_core::event::{Event, Source};

    fn delivery(state: DeliveryState) -> Delivery {
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap();
        let event = Event::new(Source::Stack, "e-1", "UPDATE_COMPLETE", "s", "{}", at)
            .retained_for_days(Some(7));
        Delivery {
            state,
            ..Delivery::new("hook", &event, at)
        }
    }

    #[test]
    fn only_pending_deliveries_are_in_the_due_index_and_only_failed_in_the_failed_index() {
        let pending = delivery_item(&delivery(DeliveryState::Pending)).unwrap();
        assert!(pending.contains_key(WebhooksLayout::DUE_KEY));
        assert!(pending.contains_key(WebhooksLayout::DUE_SHARD));
        assert!(!pending.contains_key(WebhooksLayout::FAILED_KEY));
        let failed = delivery_item(&delivery(DeliveryState::Failed)).unwrap();
        assert!(!failed.contains_key(WebhooksLayout::DUE_KEY));
        assert_eq!(text(&failed, WebhooksLayout::FAILED_KEY).unwrap(), "hook");
        let delivered = delivery_item(&delivery(DeliveryState::Delivered)).unwrap();
        assert!(!delivered.contains_key(WebhooksLayout::DUE_KEY));
        assert!(!delivered.contains_key(WebhooksLayout::FAILED_KEY));
        assert!(delivered.contains_key(WebhooksLayout::EXPIRES_AT));
    }

    #[test]
    fn keys_sort_by_time_then_id() {
        let early = delivery(DeliveryState::Pending);
        let mut late = early.clone();
        late.created_at += chrono::TimeDelta::microseconds(1);
        late.id = "msg_0".into();
        assert!(created_key(&early) < created_key(&late));
        let item = delivery_item(&early).unwrap();
        let cursor = cursor_of(&item).unwrap();
        assert_eq!(cursor, listing_cursor(&early));
    }

    #[test]
    fn items_round_trip() {
        let d = delivery(DeliveryState::Pending);
        assert_eq!(delivery_from_item(&delivery_item(&d).unwrap()).unwrap(), d);
        assert_eq!(attempt_sk(7), "attempt#0000000007");
        assert!(due_shard(&d.id).starts_with("due#"));
    }
}
