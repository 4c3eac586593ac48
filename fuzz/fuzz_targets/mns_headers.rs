//! MNS header canonicalisation and certificate-URL policy (docs/protocols.md MNS). Property: the
//! string to sign starts with the method line and ends with the resource; only an allow-listed
//! https URL without userinfo, fragment or query is accepted.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = callback_hub_fuzz::headers_and_body(data);
    let resource = String::from_utf8_lossy(body);
    if let Ok(text) = mns_endpoint::signature::string_to_sign("post", &headers, &resource) {
        assert!(text.starts_with("POST\n"));
        assert!(text.ends_with(&*resource));
    }
    let allowed: Vec<String> = mns_endpoint::signature::DEFAULT_CERT_URLS
        .iter()
        .map(|s| s.to_string())
        .chain(["https://mns-*.aliyuncs.com/certs/".to_owned()])
        .collect();
    if let Ok(url) = mns_endpoint::signature::cert_url(&headers, &allowed) {
        assert!(url.starts_with("https://"));
        assert!(!url.contains(['@', '\\', '#', '?']));
    }
    let _ = mns_endpoint::signature::check_age(&headers, chrono::Utc::now(), 900);
});
