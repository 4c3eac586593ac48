//! `.env` files: `NAME=value` lines, `#` comments, optional `export `, and single or double
//! quotes around a value. Variables already set in the environment win over the file.

use std::collections::HashMap;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: expected NAME=value")]
pub struct DotenvError {
    pub path: String,
    pub line: usize,
}

pub fn parse(text: &str, path: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let mut pairs = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line.split_once('=').ok_or_else(|| DotenvError {
            path: path.into(),
            line: index + 1,
        })?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DotenvError {
                path: path.into(),
                line: index + 1,
            });
        }
        let value = value.trim();
        let value = match (value.chars().next(), value.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(end)) if value.len() >= 2 && q == end => {
                &value[1..value.len() - 1]
            }
            // An unquoted value ends at a comment.
            _ => value.split(" #").next().unwrap_or_default().trim_end(),
        };
        pairs.push((name.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// The process environment, completed by the file's variables that are not set already.
pub fn environment_with(
    file: Option<(&str, &str)>,
) -> Result<HashMap<String, String>, DotenvError> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    if let Some((path, text)) = file {
        for (name, value) in parse(text, path)? {
            vars.entry(name).or_insert(value);
        }
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_exports() {
        let text = "# local secrets\nSTACK_HOOK_TOKEN=abc def # trailing\nexport A='x=1 # kept'\nB=\"q\"\n\nEMPTY=\n";
        assert_eq!(
            parse(text, ".env").unwrap(),
            [
                ("STACK_HOOK_TOKEN".to_owned(), "abc def".to_owned()),
                ("A".to_owned(), "x=1 # kept".to_owned()),
                ("B".to_owned(), "q".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            parse("OK=1\nnot a pair\n", ".env"),
            Err(DotenvError {
                path: ".env".into(),
                line: 2
            })
        );
        assert!(parse("BAD NAME=1", ".env").is_err());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let vars =
            environment_with(Some((".env", "PATH=/nowhere\nCALLBACK_HUB_TEST_ONLY=1"))).unwrap();
        assert_ne!(vars["PATH"], "/nowhere");
        assert_eq!(vars["CALLBACK_HUB_TEST_ONLY"], "1");
    }
}
