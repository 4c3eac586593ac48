//! The README's first command stays true: the demo replays every sample and exits 0.

#[test]
fn the_demo_accepts_and_stores_every_sample() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .output()
        .expect("the demo binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("demo: every sample accepted and stored"),
        "{stdout}"
    );
    let samples = std::fs::read_dir(hub_tests::repo_root().join("events"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json") && n != "env.json" && n != "pinned-certs.json")
        .count();
    let accepted = stdout.matches(" -> 200 ").count() + stdout.matches(" -> 204 ").count();
    assert_eq!(accepted, samples, "{stdout}");
}
