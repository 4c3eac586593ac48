//! The files in `events/` are exactly what the generator makes, and each is a valid request.

#[test]
fn events_are_generated_and_current() {
    let dir = hub_tests::repo_root().join("events");
    for (name, expected) in hub_tests::fixtures::all() {
        let actual = std::fs::read_to_string(dir.join(&name))
            .unwrap_or_else(|e| panic!("events/{name}: {e}"));
        assert!(
            actual == expected,
            "events/{name} is stale: run `cargo run -p hub-tests --bin gen-events`"
        );
        if name.ends_with(".json") && name != "env.json" && name != "pinned-certs.json" {
            hub_tests::fixture_request(&name);
        }
    }
}
