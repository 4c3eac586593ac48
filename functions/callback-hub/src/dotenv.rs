//! `.env` files, parsed by `dotenvy`: `NAME=value` lines, `#` comments, optional `export `,
//! single or double quotes (a comment may follow a quoted value), and `$NAME` / `${NAME}`
//! substitution in unquoted and double-quoted values (single quotes keep a value literal).
//! Variables already set in the environment win over the file.

use std::collections::HashMap;

/// A line the parser refused. It names the file and line, never the line's text: that may be a
/// secret.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}: expected NAME=value")]
pub struct DotenvError {
    pub path: String,
    pub line: usize,
}

/// The `NAME=value` pairs of `text` (the content of the file `path`), in file order.
pub fn parse(text: &str, path: &str) -> Result<Vec<(String, String)>, DotenvError> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|pair| {
            pair.map_err(|err| DotenvError {
                path: path.into(),
                line: line_of(text, &err),
            })
        })
        .collect()
}

/// The 1-based line number of a parse error: dotenvy reports the (logical) line's text, which
/// is located in the file; 0 when it cannot be.
fn line_of(text: &str, err: &dotenvy::Error) -> usize {
    let dotenvy::Error::LineParse(line, _) = err else {
        return 0;
    };
    let line = line.trim_end();
    if line.is_empty() {
        return 0;
    }
    text.find(line)
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(0)
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

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_comments_quotes_and_exports() {
        let text = "# local secrets\nSTACK_HOOK_TOKEN=abc # trailing\nexport A='x=1 # kept'\nB=\"q\"\n\nEMPTY=\nURL=https://h/p?token=t&x=1\n";
        assert_eq!(
            parse(text, ".env").unwrap(),
            pairs(&[
                ("STACK_HOOK_TOKEN", "abc"),
                ("A", "x=1 # kept"),
                ("B", "q"),
                ("EMPTY", ""),
                ("URL", "https://h/p?token=t&x=1"),
            ])
        );
        assert!(parse("BAD NAME=1", ".env").is_err());
    }

    #[test]
    fn a_comment_after_a_quoted_value_is_not_part_of_it() {
        // The hand-written parser kept `'x' # note` whole, quotes included.
        assert_eq!(
            parse("A='x' # note\nB=\"y\" # note\n", ".env").unwrap(),
            pairs(&[("A", "x"), ("B", "y")])
        );
    }

    #[test]
    fn errors_name_the_line_but_never_its_text() {
        let err = parse("OK=1\n# c\nTOKEN='s3cret\n", ".env").unwrap_err();
        assert_eq!(err.path, ".env");
        assert_eq!(err.line, 3);
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = parse("OK=1\nnot a pair\n", ".env").unwrap_err();
        assert_eq!(
            err,
            DotenvError {
                path: ".env".into(),
                line: 2
            }
        );
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let vars =
            environment_with(Some((".env", "PATH=/nowhere\nCALLBACK_HUB_TEST_ONLY=1"))).unwrap();
        assert_ne!(vars["PATH"], "/nowhere");
        assert_eq!(vars["CALLBACK_HUB_TEST_ONLY"], "1");
    }
}
