//! Writes every sample request of `events/` (see `hub_tests::fixtures`).

fn main() {
    let dir = hub_tests::repo_root().join("events");
    for (name, text) in hub_tests::fixtures::all() {
        std::fs::write(dir.join(&name), text)
            .unwrap_or_else(|e| panic!("writing events/{name}: {e}"));
        println!("events/{name}");
    }
}
