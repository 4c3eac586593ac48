//! ROS (Alibaba Cloud stack) notification bodies. Property: the idempotency key is stable for
//! the same body and window, and its previous window is the one before.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(notification) = stack_hook::ros::parse(data) else {
        return;
    };
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
    let key = stack_hook::ros::idempotency_key(&notification, at, 300);
    assert_eq!(
        key,
        stack_hook::ros::idempotency_key(&notification, at, 300)
    );
    assert_ne!(key.current, key.previous);
    let _ = stack_hook::ros::is_stack_status(&notification.status);
    let _ = stack_hook::ros::is_terminal(&notification.status);
});
