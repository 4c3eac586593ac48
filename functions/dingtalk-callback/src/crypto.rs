//! DingTalk callback cryptography, with no I/O (`docs/protocols.md` §1.2–1.5).
//!
//! - signature: lowercase hex SHA-1 of the byte-sorted concatenation of token, timestamp, nonce
//!   and the `encrypt` string;
//! - key: `base64(aes_key + "=")`, accepting non-zero trailing bits; IV: the key's first 16 bytes;
//! - cipher: AES-256-CBC, PKCS#7 padding to a 32-byte block, applied by hand;
//! - plaintext: 16 random bytes, u32 big-endian length of the message in UTF-8 bytes, the
//!   message, then the owner key (corpId, appKey or suiteKey).

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hub_core::auth::constant_time_eq;
use hub_core::config::Secret;
use sha1::{Digest, Sha1};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// DingTalk pads to 32 bytes, not the AES block size (its own ciphertexts carry pads up to 32).
pub const PAD_BLOCK: usize = 32;
const PREFIX_LEN: usize = 16;
const LEN_FIELD: usize = 4;

/// The EncodingAESKey is 43 characters whose last one carries 2 spare bits; real keys (and two of
/// the three official vectors) have them non-zero, which a strict decoder rejects.
const KEY_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be exactly 43 characters of [A-Za-z0-9]")]
    Shape,
    #[error("is not valid base64")]
    Base64,
}

/// Why a callback could not be opened. Messages are safe to return to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("signature mismatch")]
    BadSignature,
    #[error("encrypt is not base64")]
    NotBase64,
    #[error("ciphertext length is not a positive multiple of 16")]
    BadLength,
    #[error("invalid padding")]
    BadPadding,
    #[error("plaintext is truncated")]
    Truncated,
    #[error("owner key mismatch")]
    OwnerKeyMismatch,
}

/// Decodes an EncodingAESKey into the 32-byte AES key.
pub fn decode_aes_key(aes_key: &str) -> Result<[u8; 32], KeyError> {
    if aes_key.len() != 43 || !aes_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(KeyError::Shape);
    }
    let mut padded = String::with_capacity(44);
    padded.push_str(aes_key);
    padded.push('=');
    let bytes = KEY_ENGINE.decode(padded).map_err(|_| KeyError::Base64)?;
    bytes.try_into().map_err(|_| KeyError::Base64)
}

/// `lowercase_hex(SHA1(concat(sort([token, timestamp, nonce, encrypt]))))`.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    // Byte order; it equals Java's UTF-16 order for the ASCII these values are made of.
    parts.sort_unstable();
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The reply DingTalk expects: `encrypt("success")`, signed over the values returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reply {
    pub msg_signature: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    pub nonce: String,
    pub encrypt: String,
}

/// The secrets of one DingTalk integration, ready to verify, decrypt and encrypt.
#[derive(Clone)]
pub struct DingTalkCrypto {
    token: Secret,
    key: [u8; 32],
    owner_key: String,
}

impl std::fmt::Debug for DingTalkCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DingTalkCrypto")
            .field("owner_key", &self.owner_key)
            .finish_non_exhaustive()
    }
}

impl DingTalkCrypto {
    pub fn new(
        token: Secret,
        aes_key: &str,
        owner_key: impl Into<String>,
    ) -> Result<Self, KeyError> {
        Ok(DingTalkCrypto {
            token,
            key: decode_aes_key(aes_key)?,
            owner_key: owner_key.into(),
        })
    }

    pub fn owner_key(&self) -> &str {
        &self.owner_key
    }

    pub fn signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(self.token.expose(), timestamp, nonce, encrypt)
    }

    /// Checks a presented signature (lowercase hex) in constant time.
    pub fn verify(
        &self,
        presented: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<(), CryptoError> {
        let expected = self.signature(timestamp, nonce, encrypt);
        if constant_time_eq(expected.as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// Decrypts an `encrypt` value and returns the message bytes, after checking the padding,
    /// the length field and the owner key. Call only after [`verify`](Self::verify).
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, CryptoError> {
        let mut data = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| CryptoError::NotBase64)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(CryptoError::BadLength);
        }
        let iv: [u8; 16] = self.key[..16].try_into().expect("key is 32 bytes");
        let plain = Aes256CbcDec::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptoError::BadLength)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::BadLength)?);
        if !(1..=PAD_BLOCK).contains(&pad) || pad > plain.len() {
            return Err(CryptoError::BadPadding);
        }
        let (plain, padding) = plain.split_at(plain.len() - pad);
        if padding.iter().any(|b| usize::from(*b) != pad) {
            return Err(CryptoError::BadPadding);
        }
        if plain.len() < PREFIX_LEN + LEN_FIELD {
            return Err(CryptoError::Truncated);
        }
        let len_bytes: [u8; 4] = plain[PREFIX_LEN..PREFIX_LEN + LEN_FIELD]
            .try_into()
            .expect("4 bytes");
        let msg_len = u32::from_be_bytes(len_bytes) as usize;
        let body = &plain[PREFIX_LEN + LEN_FIELD..];
        if msg_len > body.len() {
            return Err(CryptoError::Truncated);
        }
        let (message, owner) = body.split_at(msg_len);
        if !constant_time_eq(self.owner_key.as_bytes(), owner) {
            return Err(CryptoError::OwnerKeyMismatch);
        }
        Ok(message.to_vec())
    }

    /// Encrypts with a given random prefix: deterministic, for vectors and fixtures.
    pub fn encrypt_with_prefix(&self, message: &[u8], prefix: [u8; PREFIX_LEN]) -> String {
        let unpadded = PREFIX_LEN + LEN_FIELD + message.len() + self.owner_key.len();
        let pad = PAD_BLOCK - unpadded % PAD_BLOCK;
        let mut buffer = Vec::with_capacity(unpadded + pad);
        buffer.extend_from_slice(&prefix);
        buffer.extend_from_slice(&(message.len() as u32).to_be_bytes());
        buffer.extend_from_slice(message);
        buffer.extend_from_slice(self.owner_key.as_bytes());
        buffer.resize(unpadded + pad, pad as u8);
        let iv: [u8; 16] = self.key[..16].try_into().expect("key is 32 bytes");
        let len = buffer.len();
        let cipher = Aes256CbcEnc::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buffer, len)
            .expect("buffer is a whole number of blocks");
        STANDARD.encode(cipher)
    }

    /// Encrypts with a fresh random prefix.
    pub fn encrypt(&self, message: &[u8]) -> String {
        self.encrypt_with_prefix(message, rand::random())
    }

    /// The encrypted "success" reply for the given timestamp and nonce.
    pub fn success_reply(&self, time_stamp: String, nonce: String) -> Reply {
        let encrypt = self.encrypt(b"success");
        Reply {
            msg_signature: self.signature(&time_stamp, &nonce, &encrypt),
            time_stamp,
            nonce,
            encrypt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }

    #[derive(Deserialize)]
    struct Vector {
        name: String,
        token: String,
        aes_key: String,
        owner_key: String,
        timestamp: String,
        nonce: String,
        signature: String,
        encrypt: String,
        expected_plaintext: String,
        expected_aes_key_hex: String,
        expected_random_prefix: String,
        expected_pad_byte: u8,
    }

    fn vectors() -> Vec<Vector> {
        let text = include_str!("../tests/fixtures/dingtalk-vectors.json");
        serde_json::from_str::<Vectors>(text).unwrap().vectors
    }

    fn crypto_of(v: &Vector) -> DingTalkCrypto {
        DingTalkCrypto::new(
            Secret::new(v.token.clone()),
            &v.aes_key,
            v.owner_key.clone(),
        )
        .unwrap()
    }

    #[test]
    fn official_vectors_verify_and_decrypt() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 3);
        for v in &vectors {
            let crypto = crypto_of(v);
            assert_eq!(
                hex::encode(crypto.key),
                v.expected_aes_key_hex,
                "{}",
                v.name
            );
            assert_eq!(
                crypto.signature(&v.timestamp, &v.nonce, &v.encrypt),
                v.signature,
                "{}",
                v.name
            );
            crypto
                .verify(&v.signature, &v.timestamp, &v.nonce, &v.encrypt)
                .unwrap();
            let message = crypto.decrypt(&v.encrypt).unwrap();
            assert_eq!(
                String::from_utf8(message).unwrap(),
                v.expected_plaintext,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn official_ciphertexts_reproduce_byte_for_byte_with_the_prefix_pinned() {
        for v in &vectors() {
            let crypto = crypto_of(v);
            let prefix: [u8; 16] = v.expected_random_prefix.as_bytes().try_into().unwrap();
            let encrypt = crypto.encrypt_with_prefix(v.expected_plaintext.as_bytes(), prefix);
            assert_eq!(encrypt, v.encrypt, "{}", v.name);
            // The pad byte is the last plaintext byte; the vector says which it is.
            let unpadded = 16 + 4 + v.expected_plaintext.len() + v.owner_key.len();
            assert_eq!(
                32 - unpadded % 32,
                v.expected_pad_byte as usize,
                "{}",
                v.name
            );
        }
    }

    #[test]
    fn non_canonical_keys_decode_like_their_canonical_twins() {
        // Protocol notes §1.3: "…3ij" re-encodes to "…3ig", "…cd7" to "…cd4".
        let a = decode_aes_key("4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij").unwrap();
        let b = decode_aes_key("4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ig").unwrap();
        assert_eq!(a, b);
        assert_eq!(decode_aes_key("short"), Err(KeyError::Shape));
        assert_eq!(
            decode_aes_key(&format!("{}+", "a".repeat(42))),
            Err(KeyError::Shape)
        );
        assert_eq!(decode_aes_key(&"a".repeat(44)), Err(KeyError::Shape));
    }

    #[test]
    fn any_single_character_change_breaks_the_signature() {
        let v = &vectors()[0];
        let crypto = crypto_of(v);
        let tweak = |s: &str, i: usize| {
            let mut bytes = s.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        };
        for i in 0..v.timestamp.len() {
            assert!(crypto
                .verify(&v.signature, &tweak(&v.timestamp, i), &v.nonce, &v.encrypt)
                .is_err());
        }
        for i in 0..v.nonce.len() {
            assert!(crypto
                .verify(&v.signature, &v.timestamp, &tweak(&v.nonce, i), &v.encrypt)
                .is_err());
        }
        for i in 0..v.encrypt.len() {
            assert!(crypto
                .verify(&v.signature, &v.timestamp, &v.nonce, &tweak(&v.encrypt, i))
                .is_err());
        }
        for i in 0..v.token.len() {
            let other = DingTalkCrypto::new(
                Secret::new(tweak(&v.token, i)),
                &v.aes_key,
                v.owner_key.clone(),
            )
            .unwrap();
            assert!(other
                .verify(&v.signature, &v.timestamp, &v.nonce, &v.encrypt)
                .is_err());
        }
        for i in 0..v.signature.len() {
            assert!(crypto
                .verify(&tweak(&v.signature, i), &v.timestamp, &v.nonce, &v.encrypt)
                .is_err());
        }
    }

    #[test]
    fn length_field_counts_utf8_bytes() {
        let v = &vectors()[1];
        let crypto = crypto_of(v);
        // Protocol notes §1.4: a 54-character title with two CJK characters is 58 bytes.
        let title = "出差 request: Q3 offsite in Hangzhou, three nights ok!!!";
        assert_eq!(title.chars().count(), 54);
        assert_eq!(title.len(), 58);
        let message = format!(r#"{{"EventType":"bpms_instance_change","title":"{title}"}}"#);
        let encrypt = crypto.encrypt_with_prefix(message.as_bytes(), *b"0123456789abcdef");
        let raw = STANDARD.decode(&encrypt).unwrap();
        let mut data = raw.clone();
        let iv: [u8; 16] = crypto.key[..16].try_into().unwrap();
        let plain = Aes256CbcDec::new(&crypto.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .unwrap();
        assert_eq!(
            u32::from_be_bytes(plain[16..20].try_into().unwrap()) as usize,
            message.len()
        );
        assert_eq!(crypto.decrypt(&encrypt).unwrap(), message.as_bytes());
    }

    #[test]
    fn tampered_and_foreign_ciphertexts_are_refused() {
        let v = &vectors()[0];
        let crypto = crypto_of(v);
        assert_eq!(crypto.decrypt("not base64!"), Err(CryptoError::NotBase64));
        assert_eq!(
            crypto.decrypt(&STANDARD.encode([0u8; 15])),
            Err(CryptoError::BadLength)
        );
        assert_eq!(crypto.decrypt(""), Err(CryptoError::BadLength));
        // Another owner key: the plaintext decrypts but does not end with ours.
        let foreign =
            DingTalkCrypto::new(Secret::new("t"), &v.aes_key, "ding-someone-else").unwrap();
        assert_eq!(
            crypto.decrypt(&foreign.encrypt(b"{}")),
            Err(CryptoError::OwnerKeyMismatch)
        );
        // Another AES key: garbage padding (or, rarely, garbage framing).
        let other_key = DingTalkCrypto::new(
            Secret::new("t"),
            "o1w0aum42yaptlz8alnhwikjd3jenzt9cb9wmzptgus",
            v.owner_key.clone(),
        )
        .unwrap();
        assert!(crypto.decrypt(&other_key.encrypt(b"{}")).is_err());
        // A flipped bit in the last block corrupts the padding.
        let mut raw = STANDARD.decode(&v.encrypt).unwrap();
        let n = raw.len();
        raw[n - 1] ^= 0x01;
        assert!(crypto.decrypt(&STANDARD.encode(&raw)).is_err());
    }

    #[test]
    fn a_pad_over_32_is_refused() {
        let v = &vectors()[0];
        let crypto = crypto_of(v);
        let iv: [u8; 16] = crypto.key[..16].try_into().unwrap();
        let mut block = vec![33u8; 64];
        let cipher = Aes256CbcEnc::new(&crypto.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut block, 64)
            .unwrap()
            .to_vec();
        assert_eq!(
            crypto.decrypt(&STANDARD.encode(cipher)),
            Err(CryptoError::BadPadding)
        );
    }

    #[test]
    fn reply_is_signed_over_what_it_returns() {
        let v = &vectors()[2];
        let crypto = crypto_of(v);
        let reply = crypto.success_reply("1605695694141".into(), "WelUQl6bCqcBa2fM".into());
        crypto
            .verify(
                &reply.msg_signature,
                &reply.time_stamp,
                &reply.nonce,
                &reply.encrypt,
            )
            .unwrap();
        assert_eq!(crypto.decrypt(&reply.encrypt).unwrap(), b"success");
        let second = crypto.success_reply("1605695694141".into(), "WelUQl6bCqcBa2fM".into());
        assert_ne!(
            second.encrypt, reply.encrypt,
            "each reply has a fresh random prefix"
        );
        let json = serde_json::to_value(&reply).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["encrypt", "msg_signature", "nonce", "timeStamp"]);
    }

    proptest! {
        #[test]
        fn encrypt_then_decrypt_is_the_identity(
            message in proptest::collection::vec(any::<u8>(), 0..600),
            key_chars in proptest::collection::vec(proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".to_vec()), 43),
            owner in "[a-zA-Z0-9]{0,40}",
            prefix in any::<[u8; 16]>(),
        ) {
            let aes_key = String::from_utf8(key_chars).unwrap();
            let crypto = DingTalkCrypto::new(Secret::new("token"), &aes_key, owner).unwrap();
            let encrypt = crypto.encrypt_with_prefix(&message, prefix);
            prop_assert_eq!(STANDARD.decode(&encrypt).unwrap().len() % 32, 0);
            prop_assert_eq!(crypto.decrypt(&encrypt).unwrap(), message);
        }
    }
}
