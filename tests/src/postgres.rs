//! [`postgres_or_skip`]: the PostgreSQL of the checkpointer tests.

/// The PostgreSQL checkpointer's URL (`DATABASE_URL`, default the local
/// `postgres://postgres@127.0.0.1:5432/test`) and a saver connected to it; `None`, with
/// a loud SKIPPED line on stderr, when no server answers — except under `CI=true`, where
/// that is a failure.
///
/// # Panics
/// Under `CI=true` when PostgreSQL does not answer.
pub async fn postgres_or_skip() -> Option<(String, agent_runtime::checkpoint::PostgresSaver)> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    match agent_runtime::checkpoint::PostgresSaver::connect(&url).await {
        Ok(saver) => Some((url, saver)),
        Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("no PostgreSQL for a checkpointer test (CI=true): {err}")
        }
        Err(err) => {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: no PostgreSQL ({err}); set DATABASE_URL ***\n"
            );
            None
        }
    }
}
