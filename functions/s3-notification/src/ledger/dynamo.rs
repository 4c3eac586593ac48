//! The ledger in the events table: one item per source object and origin,
//! `pk = mirror#{object}` (`mirror#{bucket}/{key}`, or `mirror#token#{bucket}/{key}` for VK's
//! changes), with none of the event index attributes, so that it never shows up in an event
//! query.

use super::{decide_claim, ClaimOutcome, LedgerClaim, LedgerEntry, MirrorLedger};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use hub_core::store::dynamo::classify;
use hub_core::store::{StoreError, TableLayout};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;
const PK: &str = TableLayout::PK;

#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLedger {
            client,
            table: table.into(),
        }
    }
}

const LEDGER_SEQUENCER: &str = "mirror_sequencer";
const LEDGER_EVENT_ID: &str = "mirror_event_id";
const LEDGER_ACTION: &str = "mirror_action";
const LEDGER_APPLIED: &str = "mirror_applied";

fn ledger_pk(object: &str) -> AttributeValue {
    AttributeValue::S(format!("mirror#{object}"))
}

fn item_to_ledger_entry(item: &Item) -> Result<LedgerEntry, StoreError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Failed(format!("ledger item lacks {name}")))
    };
    Ok(LedgerEntry {
        sequencer: text(LEDGER_SEQUENCER)?,
        event_id: text(LEDGER_EVENT_ID)?,
        action: text(LEDGER_ACTION)?,
        applied: item
            .get(LEDGER_APPLIED)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
    })
}

impl MirrorLedger for DynamoLedger {
    /// One conditional put in the common case; the entry is read only when the condition fails,
    /// to tell a retry from a stale change.
    async fn claim(&self, claim: &LedgerClaim) -> Result<ClaimOutcome, StoreError> {
        // A failed condition followed by a changed entry means a concurrent claim: decide again.
        for _ in 0..3 {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(PK, ledger_pk(&claim.object))
                .item(LEDGER_SEQUENCER, AttributeValue::S(claim.sequencer.clone()))
                .item(LEDGER_EVENT_ID, AttributeValue::S(claim.event_id.clone()))
                .item(LEDGER_ACTION, AttributeValue::S(claim.action.clone()))
                .item(LEDGER_APPLIED, AttributeValue::Bool(false))
                .condition_expression(
                    "attribute_not_exists(#pk) OR #seq < :seq \
                     OR (#seq = :seq AND (#eid <> :eid OR #applied = :false))",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#seq", LEDGER_SEQUENCER)
                .expression_attribute_names("#eid", LEDGER_EVENT_ID)
                .expression_attribute_names("#applied", LEDGER_APPLIED)
                .expression_attribute_values(":seq", AttributeValue::S(claim.sequencer.clone()))
                .expression_attribute_values(":eid", AttributeValue::S(claim.event_id.clone()))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await;
            match result {
                Ok(output) => {
                    let previous = output
                        .attributes
                        .filter(|item| !item.is_empty())
                        .map(|item| item_to_ledger_entry(&item))
                        .transpose()?;
                    return Ok(decide_claim(previous.as_ref(), claim));
                }
                Err(SdkError::ServiceError(service))
                    if service.err().is_conditional_check_failed_exception() =>
                {
                    let current = self.ledger_entry(&claim.object).await?;
                    match decide_claim(current.as_ref(), claim) {
                        ClaimOutcome::Claimed { .. } => continue,
                        refused => return Ok(refused),
                    }
                }
                Err(err) => return Err(classify(err)),
            }
        }
        Err(StoreError::Unavailable(
            "mirror ledger entry keeps changing under concurrent claims".into(),
        ))
    }

    async fn mark_applied(&self, claim: &LedgerClaim) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, ledger_pk(&claim.object))
            .update_expression("SET #applied = :true")
            .condition_expression("#seq = :seq AND #eid = :eid")
            .expression_attribute_names("#applied", LEDGER_APPLIED)
            .expression_attribute_names("#seq", LEDGER_SEQUENCER)
            .expression_attribute_names("#eid", LEDGER_EVENT_ID)
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":seq", AttributeValue::S(claim.sequencer.clone()))
            .expression_attribute_values(":eid", AttributeValue::S(claim.event_id.clone()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(service))
                if service.err().is_conditional_check_failed_exception() =>
            {
                Ok(false)
            }
            Err(err) => Err(classify(err)),
        }
    }

    async fn ledger_entry(&self, object: &str) -> Result<Option<LedgerEntry>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, ledger_pk(object))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output.item.as_ref().map(item_to_ledger_entry).transpose()
    }
}
