//! [`postgres_or_skip`]: the PostgreSQL of the checkpointer tests;
//! [`FreshDatabase`]: a database of a test's own on that server.

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

/// A database of one test's own on the server at `DATABASE_URL` (`e2e_<uuid>`), so that
/// tests running at once never share tables; dropped by [`FreshDatabase::drop_now`].
#[derive(Debug)]
pub struct FreshDatabase {
    /// Its URL: `DATABASE_URL` with the database name replaced.
    pub url: String,
    name: String,
    server: String,
}

impl FreshDatabase {
    /// Creates the database; `None` (after [`postgres_or_skip`]'s SKIPPED line) when no
    /// server answers, except under `CI=true`.
    ///
    /// # Panics
    /// Under `CI=true` when PostgreSQL does not answer, or when the database cannot be
    /// created.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let (server, _saver) = postgres_or_skip().await?;
        let name = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .expect("the server that answered a moment ago");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("a database of the test's own");
        let url = with_database(&server, &name);
        Some(Self { url, name, server })
    }

    /// Drops the database (ending the connections still on it).
    pub async fn drop_now(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.server).await {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                .execute(&mut conn)
                .await;
        }
    }
}

/// `url` naming the database `name` instead, its login and options kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}
