//! S3 / VK notification records. Property: every record of a parsed notification has an event
//! id and a subject, and the same bytes give the same ids.
#![no_main]
use libfuzzer_sys::fuzz_target;
use s3_notification::records::{parse, S3Notification};

fn ids(notification: &S3Notification) -> Vec<String> {
    match notification {
        S3Notification::Records(records) => records
            .iter()
            .map(|r| {
                let _ = r.change();
                let _ = r.normalized_name();
                let _ = r.subject();
                if let Some(s) = &r.sequencer {
                    let _ = s.check_plausible(chrono::Utc::now());
                    let _ = s.form();
                }
                r.event_id()
            })
            .collect(),
        S3Notification::Test(test) => vec![test.event_id()],
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = s3_notification::records::decode_form_key(text);
    }
    let Ok(notification) = parse(data) else {
        return;
    };
    let first = ids(&notification);
    assert!(first.iter().all(|id| !id.is_empty()));
    assert_eq!(first, ids(&parse(data).expect("parsed once")));
});
