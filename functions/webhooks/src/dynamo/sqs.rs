//! The SQS queues of the AWS functions: the delivery queue (one message per delivery id, hidden
//! until its next attempt is due) and the dead-letter queue of exhausted deliveries.

use crate::store::{DeliveryQueue, StoreError};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use aws_sdk_sqs::Client;
use hub_core::config::{ConfigError, Vars};
use hub_core::setup::Setup;
use hub_core::store::dynamo::classify;
use std::time::Duration;

/// The variable naming the delivery queue (its URL).
pub const QUEUE_VARIABLE: &str = "WEBHOOKS_QUEUE_URL";
/// The variable naming the dead-letter queue of exhausted deliveries (its URL).
pub const DEAD_LETTER_VARIABLE: &str = "WEBHOOKS_DEAD_LETTER_QUEUE_URL";
/// The longest a received message is hidden. SQS allows 12 hours counted from the receive, and
/// the change comes up to a function timeout after it: five minutes are left for that. Longer
/// waits are made by hiding the message again when it comes back early.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600 - 300);
/// SQS's limit on the entries of one batch request.
const BATCH: usize = 10;

/// One SQS queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }

    /// The queue whose URL is in `variable`, with the function's SDK configuration.
    pub async fn from_setup(setup: &Setup, variable: &'static str) -> Result<Self, ConfigError> {
        let url = setup.required(variable)?;
        Ok(SqsQueue::new(Client::new(setup.sdk().await?), url))
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends one message per body, ten to a request. Any entry that SQS refuses fails the whole
    /// call (the caller retries all of them: a duplicate message is harmless, a lost one is not).
    pub async fn send_all(&self, bodies: &[String]) -> Result<(), StoreError> {
        for chunk in bodies.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| StoreError::Failed(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(classify)?;
            if let Some(failed) = output.failed().first() {
                return Err(StoreError::Unavailable(format!(
                    "SQS refused {} of {} messages ({})",
                    output.failed().len(),
                    chunk.len(),
                    failed.code()
                )));
            }
        }
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&self, body: &str) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Hides a received message for `delay` (capped at [`MAX_VISIBILITY`]).
    pub async fn hide(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        let seconds = delay.min(MAX_VISIBILITY).as_secs();
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }
}

/// The delivery queue as the engine sees it: due delivery ids become messages.
impl DeliveryQueue for SqsQueue {
    async fn deliveries_due(&self, ids: &[String]) -> Result<(), StoreError> {
        self.send_all(ids).await
    }
}
