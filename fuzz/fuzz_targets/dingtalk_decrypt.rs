//! DingTalk decryption of an attacker-chosen `encrypt` (after a signature check, but the
//! decryptor must still hold on any bytes). Property: whatever decrypts re-encrypts and decrypts
//! to the same message; what the receiver itself encrypts always decrypts back.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let crypto = callback_hub_fuzz::dingtalk();
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(message) = crypto.decrypt(text) {
            let again = crypto.encrypt_with_prefix(&message, [b'p'; 16]);
            assert_eq!(crypto.decrypt(&again).expect("own ciphertext"), message);
        }
    }
    // Arbitrary plaintext bytes round-trip.
    let cipher = crypto.encrypt_with_prefix(data, [7; 16]);
    assert_eq!(crypto.decrypt(&cipher).expect("own ciphertext"), data);
});
