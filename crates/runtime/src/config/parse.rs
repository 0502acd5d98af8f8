//! Reading the layers: empty values as unset, the TOML file checked by line and column,
//! `config` errors led by the variable and stripped of values.

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::{Error, Result};

/// An optional text where an empty value counts as not set.
pub(super) fn non_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.filter(|text| !text.is_empty()))
}

/// [`non_empty`] for a secret.
pub(super) fn non_empty_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(non_empty(deserializer)?.map(SecretString::from))
}

/// Rewrites config's `for key "kafka_partitions"` as the variable users set.
/// Checks that the TOML file `CONFIG_FILE` names (`path` itself when it ends in
/// `.toml`, `path.toml` when it has no extension) parses, so that a syntax error is
/// reported by line and column: the parser's own message quotes the offending line,
/// which may hold a secret.
pub(super) fn check_toml(path: &str) -> Result<()> {
    let file = std::path::Path::new(path);
    let toml_file = match file.extension() {
        Some(ext) if ext == "toml" => file.to_path_buf(),
        Some(_) => return Ok(()),
        None => file.with_extension("toml"),
    };
    let Ok(text) = std::fs::read_to_string(&toml_file) else {
        return Ok(()); // config reports a missing file
    };
    let shown = toml_file.display();
    match text.parse::<toml::Table>() {
        Ok(_) => Ok(()),
        Err(err) => {
            let at = err.span().map_or(0, |span| span.start).min(text.len());
            let line = text[..at].matches('\n').count() + 1;
            let column = at - text[..at].rfind('\n').map_or(0, |nl| nl + 1) + 1;
            Err(Error::Config(format!(
                "CONFIG_FILE {shown} is not valid TOML at line {line}, column {column}: {}",
                err.message().trim()
            )))
        }
    }
}

/// `message` of a `config` error, led by the variable it is about, with any quoted value
/// removed (`invalid type: string "…", expected …` → `invalid type: string, expected …`):
/// the value may be a secret typed into the wrong variable.
pub(super) fn name_the_variable(message: &str) -> String {
    let message = &without_quoted_values(message);
    match message
        .find("for key `")
        .or_else(|| message.find("for key \""))
    {
        Some(at) => {
            let rest = &message[at + 9..];
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            format!("{}: {}", key.to_uppercase(), &message[..at].trim_end())
        }
        None => message.clone(),
    }
}

/// `text` without its double-quoted parts (and the space before each).
pub(super) fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        out.push_str(rest[..open].trim_end_matches(' '));
        match rest[open + 1..].find('"') {
            Some(close) => rest = &rest[open + 1 + close + 1..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
