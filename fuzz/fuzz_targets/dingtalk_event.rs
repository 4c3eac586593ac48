//! DingTalk decrypted-event parse: subject, occurrence time and URL-check detection over any
//! JSON object. Property: no panic, the subject is never empty-typed nonsense, times are in range.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let event_type = event
        .get("EventType")
        .and_then(Value::as_str)
        .unwrap_or("user_add_org");
    let _ = dingtalk_callback::events::is_url_check(event_type);
    let subject = dingtalk_callback::events::subject(event_type, &event, "owner");
    let _ = subject.len();
    if let Some(at) = dingtalk_callback::events::occurred_at(&event) {
        assert!(chrono::Datelike::year(&at) <= 9999);
    }
});
