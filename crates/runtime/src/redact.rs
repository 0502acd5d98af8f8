//! Secret redaction: one place that removes every configured secret from text before it
//! leaves the process.
//!
//! A model server may echo the API key in an error (a 401 quoting the header, a proxy's
//! HTML page), a driver may quote a connection URL, a config parser may quote the line it
//! choked on. Rather than trusting every such path, the services pass text through
//! [`redact`] where it leaves: the log writer ([`crate::telemetry`]), HTTP error answers
//! ([`crate::http::ApiError`]), LLM error reasons (which become `failed` results and
//! 502 answers) and dead-letter reasons.
//!
//! What is removed:
//! - every secret [`register_secrets`]ed — [`crate::config`] registers `OPENAI_API_KEY`,
//!   `KAFKA_SASL_PASSWORD`, the keys of `API_KEYS`, the password of `DATABASE_URL` and of
//!   `OPENAI_BASE_URL` — as written and percent-encoded, each occurrence replaced by
//!   [`REDACTED`];
//! - the userinfo (`user:password@`) of any `scheme://` URL in the text, configured or
//!   not.
//!
//! Secrets shorter than [`MIN_SECRET_BYTES`] are not registered: replacing every `ab` in
//! every log line would hide more than it protects (and such a secret protects nothing).

use std::{
    borrow::Cow,
    sync::{PoisonError, RwLock},
};

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The shortest secret that is looked for, in bytes.
pub const MIN_SECRET_BYTES: usize = 4;

/// The secrets registered so far in this process (several services may run in one test
/// process: their secrets add up).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers `secrets` (and their percent-encoded forms); idempotent, short ones ignored.
pub fn register_secrets(secrets: impl IntoIterator<Item = String>) {
    let mut known = SECRETS.write().unwrap_or_else(PoisonError::into_inner);
    for secret in secrets {
        let encoded = percent_encode(&secret);
        for form in [secret, encoded] {
            if form.len() >= MIN_SECRET_BYTES && !known.contains(&form) {
                known.push(form);
            }
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret and every URL's userinfo replaced by
/// [`REDACTED`]; borrowed unchanged when there is nothing to remove.
pub fn redact(text: &str) -> Cow<'_, str> {
    let known = SECRETS.read().unwrap_or_else(PoisonError::into_inner);
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    for secret in known.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    match strip_userinfo(&out) {
        Some(stripped) => Cow::Owned(stripped),
        None => out,
    }
}

/// The password of one connection URL — `scheme://user:password@host/…` or
/// `…?password=…` — as written and percent-decoded, to blank out of that connection's
/// own error messages whether or not the process registered it (a tool or a test that
/// connects without [`crate::config`]). Cheap to clone; `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct UrlPassword {
    secrets: std::sync::Arc<[secrecy::SecretString]>,
}

impl std::fmt::Debug for UrlPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlPassword(..)")
    }
}

impl UrlPassword {
    /// The password of `url`, if it has one.
    pub fn of(url: &str) -> Self {
        let mut secrets = Vec::new();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            secrets.push(password.to_owned());
        }
        for pair in query.split('&') {
            if let Some(password) = pair.strip_prefix("password=") {
                secrets.push(password.to_owned());
            }
        }
        let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
        secrets.extend(decoded);
        secrets.retain(|s| !s.is_empty());
        // The longest first, so a password holding another is blanked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            secrets: secrets
                .into_iter()
                .map(secrecy::SecretString::from)
                .collect(),
        }
    }

    /// `text` with every form of the password replaced by `***`.
    pub fn blank(&self, text: &str) -> String {
        use secrecy::ExposeSecret;
        let mut text = text.to_owned();
        for secret in self.secrets.iter() {
            text = text.replace(secret.expose_secret(), "***");
        }
        text
    }
}

/// The password in `url`'s userinfo, percent-decoded, if any.
pub(crate) fn url_password(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let password = parsed.password()?;
    let decoded = percent_decode(password);
    Some(decoded)
}

/// `text` with the `user:password@` of every `scheme://user:password@host` removed
/// (replaced by `[REDACTED]@`); `None` when there is none.
fn strip_userinfo(text: &str) -> Option<String> {
    if !text.contains("://") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#' or whitespace (or quote).
        let end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(userinfo_end) if !authority[..userinfo_end].starts_with(REDACTED) => {
                out.push_str(REDACTED);
                out.push_str(&authority[userinfo_end..]);
                changed = true;
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registered_secret_is_removed_as_written_and_percent_encoded() {
        register_secrets(["sk-redact-test-Key/42".to_owned()]);
        let text = "401: Incorrect API key provided: sk-redact-test-Key/42; \
                    retry at https://x/?k=sk-redact-test-Key%2F42";
        let redacted = redact(text);
        assert!(!redacted.contains("sk-redact-test-Key"), "{redacted}");
        assert_eq!(redacted.matches(REDACTED).count(), 2, "{redacted}");
    }

    #[test]
    fn the_userinfo_of_any_url_is_removed() {
        let text = "cannot connect to postgres://app:hunter2@db:5432/x or http://u:p@h/v1 \
                    (http://plain.example/v1 stays)";
        let redacted = redact(text);
        assert_eq!(
            redacted,
            "cannot connect to postgres://[REDACTED]@db:5432/x or http://[REDACTED]@h/v1 \
             (http://plain.example/v1 stays)"
        );
    }

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        let text = "nothing to hide here: http://example.com/a@b";
        assert!(matches!(redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_of_a_url_are_found_decoded() {
        assert_eq!(
            url_password("postgres://app:p%40ss%2Fw0rd@db/x").as_deref(),
            Some("p@ss/w0rd")
        );
        assert_eq!(url_password("http://host/v1"), None);
    }

    #[test]
    fn short_secrets_are_not_registered() {
        register_secrets(["abc".to_owned()]);
        assert_eq!(redact("abc abc"), "abc abc");
    }
}
