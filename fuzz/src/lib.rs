//! Shared helpers of the fuzz targets: how one fuzz input is split into the parts of a request.

use http::{HeaderMap, HeaderName, HeaderValue};

/// `name: value` lines, a blank line, then the body (the seeds in fuzz/seed.sh use this form).
/// Lines that are not valid header lines are skipped, so every input yields some request.
pub fn headers_and_body(data: &[u8]) -> (HeaderMap, &[u8]) {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    (headers, body)
}

/// Splits at the first NUL byte: two independent parts of one input (a template and its data).
pub fn two_parts(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[..0]),
    }
}

/// Splits into `n` parts at `\n` (the last part takes the rest).
pub fn lines(data: &str, n: usize) -> Vec<&str> {
    let mut parts: Vec<&str> = data.splitn(n, '\n').collect();
    parts.resize(n, "");
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The official DingTalk vector's secrets (/work/shared/vectors/dingtalk.json).
pub const DINGTALK_TOKEN: &str = "123456";
pub const DINGTALK_AES_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
pub const DINGTALK_OWNER_KEY: &str = "suite4xxxxxxxxxxxxxxx";

pub fn dingtalk() -> dingtalk_callback::DingTalkCrypto {
    dingtalk_callback::DingTalkCrypto::new(
        hub_core::config::Secret::new(DINGTALK_TOKEN.to_owned()),
        DINGTALK_AES_KEY,
        DINGTALK_OWNER_KEY,
    )
    .expect("the vector's key is valid")
}
