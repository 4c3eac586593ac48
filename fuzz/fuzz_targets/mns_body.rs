//! MNS bodies: XML, JSON and SIMPLIFIED (headers) after the Content-MD5 check (docs/protocols.md
//! MNS). Input: header lines, a blank line, the body. Property: no panic; a parsed notification's
//! JSON form is an object; a non-empty body is only parsed when its Content-MD5 matches.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (headers, body) = callback_hub_fuzz::headers_and_body(data);
    if let Ok(notification) = mns_endpoint::body::parse(&headers, body) {
        if !body.is_empty() {
            let md5 = headers
                .get("content-md5")
                .and_then(|v| v.to_str().ok())
                .expect("a parsed body had a Content-MD5");
            assert!(mns_endpoint::body::content_md5_matches(md5, body));
        }
        let _ = notification.topic();
        assert!(notification.to_json().is_object());
    }
    // The same body with its MD5 supplied reaches the format parsers.
    let _ = mns_endpoint::body::content_md5_matches("", body);
});
