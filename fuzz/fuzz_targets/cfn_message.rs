//! The CloudFormation `Key='Value'` notification text (stack-hook cfn.rs). Property: every
//! accessor holds on whatever parses, and a parsed message's JSON form is an object.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = stack_hook::cfn::parse(text) else {
        return;
    };
    let _ = event.event_id();
    let _ = event.stack_id();
    let _ = event.scoped_event_id();
    let _ = event.stack_name();
    let _ = event.resource_status();
    if let Ok(at) = event.timestamp() {
        assert!(chrono::Datelike::year(&at) <= 9999);
    }
    let _ = event.is_stack_level();
    assert!(event.to_json().is_object());
});
