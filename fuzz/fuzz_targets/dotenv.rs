//! The local server's `--env-file` parser. Property: an error names a line inside the file and
//! never its text; names of parsed pairs are not empty.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../../functions/callback-hub/src/dotenv.rs"]
#[allow(dead_code)]
mod dotenv;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match dotenv::parse(text, "f.env") {
        Ok(pairs) => assert!(pairs.iter().all(|(name, _)| !name.is_empty())),
        Err(err) => {
            assert!(err.line <= text.lines().count() + 1);
            assert_eq!(
                err.to_string(),
                format!("f.env:{}: expected NAME=value", err.line)
            );
        }
    }
});
