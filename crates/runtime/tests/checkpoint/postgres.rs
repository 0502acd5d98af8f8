//! `PostgresSaver` against a real PostgreSQL: `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test` (the database is created when missing).
//! Without a server the tests print `SKIPPED: …` and pass, except under `CI=true`, where
//! they fail. Each test uses its own thread ids, so they run concurrently and again.

use std::{io::Write, str::FromStr};

use agent_runtime::checkpoint::PostgresSaver;
use sqlx::{
    Connection, PgConnection,
    postgres::{PgConnectOptions, PgDatabaseError},
};

use crate::suite::{Fixture, Stored, run_suite};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test database: tests share it, each with thread ids of its own.
pub(crate) struct Postgres {
    url: String,
}

run_suite!(Postgres);

impl Fixture for Postgres {
    type Saver = PostgresSaver;

    async fn start() -> Option<Self> {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        create_database(&url).await;
        match PostgresSaver::connect(&url).await {
            Ok(_) => Some(Self { url }),
            Err(err) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("no PostgreSQL at {} (CI=true): {err}", server(&url))
            }
            Err(err) => {
                // Straight to stderr: the test harness hides `eprintln!` of passing tests.
                let _ = writeln!(
                    std::io::stderr(),
                    "\n*** SKIPPED: no PostgreSQL at {} ({err}); set DATABASE_URL ***\n",
                    server(&url)
                );
                None
            }
        }
    }

    async fn open(&self) -> PostgresSaver {
        PostgresSaver::connect(&self.url).await.expect("connects")
    }

    async fn delete_thread(&self, saver: &PostgresSaver, thread: &str) {
        saver.delete_thread(thread).await.expect("deletes");
    }

    async fn stored(&self, saver: &PostgresSaver, thread: &str) -> Stored {
        let (checkpoints, messages_bytes, total_bytes) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM checkpoints WHERE thread_id = $1),
                    (SELECT sum(octet_length(value))::bigint FROM checkpoint_blobs
                      WHERE thread_id = $1 AND key = 'messages'),
                    (SELECT sum(octet_length(value))::bigint FROM checkpoint_blobs
                      WHERE thread_id = $1)
                  + (SELECT sum(octet_length(checkpoint) + octet_length(array_to_string(blobs, '')))::bigint
                       FROM checkpoints WHERE thread_id = $1)",
        )
        .bind(thread)
        .fetch_one(saver.pool())
        .await
        .expect("sizes");
        Stored {
            checkpoints,
            messages_bytes,
            total_bytes,
        }
    }

    async fn set_newest_body(&self, saver: &PostgresSaver, thread: &str, body: &'static [u8]) {
        sqlx::query(
            "UPDATE checkpoints SET checkpoint = $2
              WHERE thread_id = $1
                AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = $1)",
        )
        .bind(thread)
        .bind(body)
        .execute(saver.pool())
        .await
        .expect("corrupts");
    }

    async fn drop_newest_and_blobs_of(&self, saver: &PostgresSaver, thread: &str, key: &str) {
        sqlx::query(
            "WITH newest AS (DELETE FROM checkpoints WHERE thread_id = $1
                                AND checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints
                                                      WHERE thread_id = $1))
             DELETE FROM checkpoint_blobs WHERE thread_id = $1 AND key = $2",
        )
        .bind(thread)
        .bind(key)
        .execute(saver.pool())
        .await
        .expect("deletes");
    }
}

/// `host:port/db` of the URL, without user or password.
fn server(url: &str) -> &str {
    url.rsplit_once('@')
        .map_or(url, |(_, rest)| rest)
        .trim_start_matches("postgres://")
        .trim_start_matches("postgresql://")
}

/// Creates the URL's database when the server has no such database (idempotent, and
/// safe against tests doing it at once).
async fn create_database(url: &str) {
    let Ok(options) = PgConnectOptions::from_str(url) else {
        return;
    };
    let Some(name) = options.get_database().map(str::to_owned) else {
        return;
    };
    let Ok(mut conn) = PgConnection::connect_with(&options.database("postgres")).await else {
        return; // no server: `start` says so
    };
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .expect("pg_database readable");
    if exists.is_none() {
        // The name is quoted as an identifier: safe.
        let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(err) = sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await
        {
            let code = err
                .as_database_error()
                .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
                .map(|e| e.code().to_owned());
            // Created meanwhile by another test: duplicate_database, unique_violation.
            assert!(
                matches!(code.as_deref(), Some("42P04" | "23505")),
                "creating database {name}: {err}"
            );
        }
    }
}

#[tokio::test]
async fn errors_never_show_the_password_of_the_url() {
    // Nothing listens on port 1: the connection is refused, server or no server.
    let err = PostgresSaver::connect("postgres://app:s3cret-pw@127.0.0.1:1/test")
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(
        message.starts_with("checkpoint storage failed: connecting to PostgreSQL"),
        "{message}"
    );
    assert!(!message.contains("s3cret-pw"), "{message}");
    let err = PostgresSaver::connect("postgres://app:s3cret-pw@127.0.0.1:notaport/test")
        .await
        .expect_err("bad url");
    assert!(!err.to_string().contains("s3cret-pw"), "{err}");
}
