//! The Go-template renderer (webhooks template.rs) fed attacker-controlled event data: the
//! payload of a stored event is whatever a sender posted. Input: template NUL payload. Property:
//! rendering ends (libFuzzer's -timeout catches a hang) within the output cap.
#![no_main]
use hub_core::event::{Event, Source};
use libfuzzer_sys::fuzz_target;
use webhooks::template::{BodyTemplate, MAX_OUTPUT_BYTES};
use webhooks::EventView;

const TEMPLATES: [&str; 5] = [
    r#"{"kind":{{json .kind.name}},"target":{{json .target.value}},"data":{{json .data}}}"#,
    "{{range $k, $v := .data}}{{$k}}={{$v}};{{end}}",
    "{{range .data}}{{range .}}{{.}}{{end}}{{end}}",
    "{{printf \"%v %q\" .data .target.value}} {{html .data}} {{urlquery .data}} {{js .data}}",
    "{{with .data}}{{index . \"a\"}}{{end}}{{if .failed}}x{{else}}{{len .data}}{{end}}",
];

fuzz_target!(|data: &[u8]| {
    let (template, payload) = callback_hub_fuzz::two_parts(data);
    let payload = String::from_utf8_lossy(payload);
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("valid");
    let sources = [
        Source::Tsuru,
        Source::Stack,
        Source::Mns,
        Source::S3,
        Source::Dingtalk,
    ];
    let source = sources[payload.len() % sources.len()];
    let event = Event::new(
        source,
        "id-1",
        "app.deploy",
        "app/x",
        payload.into_owned(),
        at,
    );
    let view = EventView::from_event(&event);
    let user = String::from_utf8_lossy(template);
    for source in std::iter::once(user.as_ref()).chain(TEMPLATES) {
        if let Ok(parsed) = BodyTemplate::parse(source) {
            if let Ok(out) = parsed.render(&view) {
                assert!(out.len() <= MAX_OUTPUT_BYTES);
            }
        }
    }
});
