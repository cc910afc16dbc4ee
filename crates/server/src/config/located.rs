//! A configuration that does not deserialize, said on one line with where: the key's path
//! (`storage.data_dri`) and line when the file itself is at fault, or the environment
//! variables that overrode it when only they make it fail.

use super::Config;

/// The message for `err`, the error of the file `text` with the overrides `overridden`
/// (variable names) applied.
pub(super) fn describe(text: &str, overridden: &[String], err: &toml::de::Error) -> String {
    // The whole error on one line (a value's error ends with "in `section`").
    let combined = err
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match toml::from_str::<Config>(text) {
        // The file alone fails the same way: where in it.
        Err(e) if e.message() == err.message() => {
            let message = e.message().trim_end();
            match e.span().map(|s| locate(text, s)) {
                Some((line, Some(key))) => format!("{key} (line {line}): {message}"),
                Some((line, None)) => format!("line {line}: {message}"),
                None => combined,
            }
        }
        // Only with the environment's overrides: say which variables were applied.
        _ if !overridden.is_empty() => {
            format!(
                "{combined} (with {} from the environment)",
                overridden.join(", ")
            )
        }
        _ => combined,
    }
}

/// The 1-based line of byte offset `span.start` in `text`, and the dotted key there when the
/// span is a bare key under a `[section]` header (`section.key`).
fn locate(text: &str, span: std::ops::Range<usize>) -> (usize, Option<String>) {
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let key = text.get(span).map(str::trim).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
    });
    let section = text[..start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix('[')
            .and_then(|h| h.trim_start_matches('[').split(']').next())
            .map(str::trim)
            .filter(|h| !h.is_empty())
    });
    let path = key.map(|k| match section {
        Some(s) => format!("{s}.{k}"),
        None => k.to_owned(),
    });
    (line, path)
}

#[cfg(test)]
mod tests {
    use super::locate;
    use crate::config::{Config, TEST_CONFIG};

    fn error(text: &str, env: &[(&str, &str)]) -> String {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::from_toml_str(text, env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn a_bad_key_is_named_by_its_path_and_line_or_by_the_variable_that_set_it() {
        let bad = TEST_CONFIG.replace(
            "data_dir = \"/var/lib/onboard\"\n",
            "data_dir = \"/var/lib/onboard\"\ndata_dri = \"/x\"\n",
        );
        let e = error(&bad, &[]);
        assert!(
            e.contains("storage.data_dri (line 6): unknown field `data_dri`"),
            "{e}"
        );
        // The file is fine; the environment sets a key no section has.
        let e = error(TEST_CONFIG, &[("ONBOARD_SERVER_LISTN", "x")]);
        assert!(
            e.contains("unknown field `listn`")
                && e.contains("with ONBOARD_SERVER_LISTN from the environment"),
            "{e}"
        );
    }

    #[test]
    fn a_key_is_named_with_its_section_and_line() {
        let text = "[server]\nlisten = \"x\"\n[storage]\ndata_dri = \"/x\"\n";
        let at = text.find("data_dri").unwrap_or(0);
        assert_eq!(
            locate(text, at..at + "data_dri".len()),
            (4, Some("storage.data_dri".to_owned()))
        );
        let value = text.find("\"/x\"").unwrap_or(0);
        assert_eq!(locate(text, value..value + 4), (4, None));
        assert_eq!(locate(text, 0..0), (1, None));
    }
}
