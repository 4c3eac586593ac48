//! DingTalk signature check (docs/protocols.md DingTalk): the query's signature, timestamp and
//! nonce and the body's `encrypt`, all attacker-controlled. Property: accepted exactly when the
//! presented signature is the recomputed one (no other string verifies).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts = callback_hub_fuzz::lines(&text, 4);
    let (presented, timestamp, nonce, encrypt) = (parts[0], parts[1], parts[2], parts[3]);
    let crypto = callback_hub_fuzz::dingtalk();
    let expected = crypto.signature(timestamp, nonce, encrypt);
    let accepted = crypto.verify(presented, timestamp, nonce, encrypt).is_ok();
    assert_eq!(accepted, presented == expected);
    // The right signature always verifies.
    assert!(crypto.verify(&expected, timestamp, nonce, encrypt).is_ok());
});
