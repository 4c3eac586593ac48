//! The DynamoDB store's pagination cursor (hub-core store/dynamo/cursor.rs): clients send it
//! back. Property: a decoded cursor names only the allowed attributes and re-encodes to a
//! cursor that decodes to the same key.
#![no_main]
use hub_core::store::dynamo::cursor::{decode_cursor, encode_cursor, to_key};
use libfuzzer_sys::fuzz_target;

const ALLOWED: [&str; 4] = ["pk", "sk", "gsi1pk", "gsi1sk"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(map) = decode_cursor(text, &ALLOWED) else {
        return;
    };
    assert!(!map.is_empty());
    assert!(map.keys().all(|k| ALLOWED.contains(&k.as_str())));
    let again = encode_cursor(&to_key(map.clone()), None).expect("string attributes encode");
    assert_eq!(
        decode_cursor(&again, &ALLOWED).expect("own cursor decodes"),
        map
    );
});
