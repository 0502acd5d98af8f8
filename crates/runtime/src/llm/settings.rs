//! [`LlmSettings`]: the `OPENAI_*` section of the settings and its checks.

use std::time::Duration;

use secrecy::SecretString;

use crate::{Error, Result};

/// The model section of the settings (`OPENAI_*`): which OpenAI-compatible server to ask,
/// with which model, how long to wait, how often to retry and how many requests at once.
///
/// [`LlmSettings::default`] is what an empty environment gives (no key and no server:
/// [`LlmClient::new`](super::LlmClient::new) refuses it, naming both variables).
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// `OPENAI_API_KEY`: key for OpenAI or a compatible server (secret).
    pub api_key: Option<SecretString>,
    /// `OPENAI_BASE_URL`: an OpenAI-compatible server, e.g. `http://127.0.0.1:8080/v1`
    /// (`http://` or `https://`); default OpenAI's.
    pub base_url: Option<String>,
    /// `OPENAI_MODEL`: default `gpt-4o-mini`.
    pub model: String,
    /// `OPENAI_TIMEOUT_SECS`: per-request timeout (at least 1 s); default 60 s.
    pub timeout: Duration,
    /// `OPENAI_MAX_RETRIES`: retries on 429, 5xx and connection errors (with backoff,
    /// honouring `Retry-After`); default 3.
    pub max_retries: u32,
    /// `OPENAI_INITIAL_CONCURRENCY`: requests to the model at once before the adaptive
    /// limit has learnt anything (at least 1); default 128. Slow start doubles the limit
    /// once per model round trip, so each doubling skipped is a round trip saved on a
    /// backlog; a provider that serves fewer is found in the first burst of refusals.
    pub initial_concurrency: usize,
    /// `OPENAI_MAX_CONCURRENCY`: the most requests to the model at once, however well it
    /// answers; the adaptive limit moves between 1 and this (at least 1); default 1024.
    pub max_concurrency: usize,
    /// `OPENAI_MAX_RESPONSE_BYTES`: the largest response body read from the model server
    /// (4 KiB to 64 MiB); default 1 MiB. The body is read as it streams and the request
    /// abandoned at this size with a clear error, so a runaway answer costs neither
    /// memory nor log space. A streamed answer counts its server-sent events as they
    /// arrive, framing included (some 150–250 bytes a chunk for OpenAI).
    pub max_response_bytes: usize,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: None,
            model: "gpt-4o-mini".into(),
            timeout: Duration::from_secs(60),
            max_retries: 3,
            initial_concurrency: 128,
            max_concurrency: 1024,
            max_response_bytes: 1 << 20,
        }
    }
}

impl LlmSettings {
    /// Checks ranges and the server URL's scheme.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable.
    pub fn validate(&self) -> Result<()> {
        let bad = |var: &str, why: &str| Err(Error::Config(format!("{var} {why}")));
        if self.timeout < Duration::from_secs(1) {
            return bad("OPENAI_TIMEOUT_SECS", "must be at least 1");
        }
        if self.initial_concurrency == 0 {
            return bad("OPENAI_INITIAL_CONCURRENCY", "must be at least 1");
        }
        if self.max_concurrency == 0 {
            return bad("OPENAI_MAX_CONCURRENCY", "must be at least 1");
        }
        if !(4 << 10..=64 << 20).contains(&self.max_response_bytes) {
            return bad(
                "OPENAI_MAX_RESPONSE_BYTES",
                "must be between 4096 (4 KiB) and 67108864 (64 MiB)",
            );
        }
        if let Some(url) = &self.base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return bad("OPENAI_BASE_URL", "must start with http:// or https://");
        }
        Ok(())
    }
}
