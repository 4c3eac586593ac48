//! Tsuru events (strict JSON: no repeated keys, bounded nesting). Property: a parsed event has a
//! subject and its times are in range.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = tsuru_hook::body::parse(data) else {
        return;
    };
    assert!(!event.subject().is_empty());
    let _ = event.failed();
});
