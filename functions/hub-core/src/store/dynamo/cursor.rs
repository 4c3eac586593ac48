//! Pagination cursors of the DynamoDB store.

use super::Item;
use crate::store::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;

/// Cursors are the DynamoDB `LastEvaluatedKey` (all string attributes), as base64url JSON.
/// Only the attributes of the index a query uses are accepted back.
pub fn encode_cursor(key: &Item, extra: Option<(&str, &str)>) -> Result<String, StoreError> {
    let mut map = serde_json::Map::new();
    for (name, value) in key {
        let text = value
            .as_s()
            .map_err(|_| StoreError::Failed(format!("non-string key attribute {name}")))?;
        map.insert(name.clone(), serde_json::Value::String(text.clone()));
    }
    if let Some((name, value)) = extra {
        map.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
    }
    Ok(URL_SAFE_NO_PAD.encode(serde_json::Value::Object(map).to_string()))
}

pub fn decode_cursor(
    cursor: &str,
    allowed: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| StoreError::BadCursor)?;
    let map: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
    if map.is_empty() || map.keys().any(|k| !allowed.contains(&k.as_str())) {
        return Err(StoreError::BadCursor);
    }
    Ok(map)
}

pub fn to_key(map: HashMap<String, String>) -> Item {
    map.into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect()
}
