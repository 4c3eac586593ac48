//! The SQLite store's pagination cursor. Property: what decodes re-encodes to the same bytes
//! (the encoding is canonical: unpadded base64url of `sqlite:<order key>`).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sqlite_store::{decode_cursor, encode_cursor};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = decode_cursor(text) {
        assert_eq!(encode_cursor(&key), text);
    }
    let own = encode_cursor(text);
    assert_eq!(decode_cursor(&own).expect("own cursor decodes"), text);
});
