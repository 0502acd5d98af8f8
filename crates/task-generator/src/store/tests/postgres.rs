//! [`PostgresStore`] on a real PostgreSQL: `DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`. Each test gets a database of its own
//! ([`FreshDatabase`]), so tests in parallel processes never see each other's rows.
//! Without a server they print `SKIPPED: …` and test the other stores only, except under
//! `CI=true`, where they fail.

use std::{io::Write, str::FromStr};

use sqlx::{
    Connection, PgConnection,
    migrate::{Migration, MigrationType, Migrator},
    postgres::PgConnectOptions,
};

use super::super::postgres::Redact;
use super::*;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// `host:port/db` of the URL, without user or password.
fn server(url: &str) -> &str {
    url.rsplit_once('@')
        .map_or(url, |(_, rest)| rest)
        .trim_start_matches("postgres://")
        .trim_start_matches("postgresql://")
}

/// `url` naming database `name` instead of its own (its query kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest
        .split_once('/')
        .map_or(rest, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// An empty database of its own on the server at `DATABASE_URL`, dropped with the value.
#[derive(Debug)]
pub(super) struct FreshDatabase {
    /// The URL of the new database.
    pub(super) url: String,
    admin: PgConnectOptions,
    name: String,
}

impl FreshDatabase {
    /// Creates `view_test_<uuid>`; `None`, after a loud `SKIPPED` line, when no
    /// PostgreSQL answers.
    ///
    /// # Panics
    /// Under `CI=true` when no PostgreSQL answers; when the server refuses to create a
    /// database.
    pub(super) async fn create() -> Option<Self> {
        let url = database_url();
        let redact = Redact::of_url(&url);
        let admin = match PgConnectOptions::from_str(&url) {
            Ok(options) => options,
            Err(err) => return skip_or_fail(&url, redact.error("reading DATABASE_URL", err)),
        };
        let mut conn = match PgConnection::connect_with(&admin).await {
            Ok(conn) => conn,
            Err(err) => return skip_or_fail(&url, redact.error("connecting", err)),
        };
        let name = format!("view_test_{}", Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("{}", redact.error("creating a database", err)));
        let _ = conn.close().await;
        Some(Self {
            url: with_database(&url, &name),
            admin,
            name,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A thread and runtime of their own: `drop` cannot await, and the test's runtime
        // is the one running it. FORCE ends the connections the store's pool keeps.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect_with(&admin)
                    .await
                    .map_err(|err| err.to_string())?;
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(sqlx::AssertSqlSafe(drop))
                    .execute(&mut conn)
                    .await
                    .map_err(|err| err.to_string())?;
                let _ = conn.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// `None` after a loud `SKIPPED` line (the wording of the checkpointer's tests); a panic
/// under `CI=true`.
fn skip_or_fail<T>(url: &str, err: StoreError) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("no PostgreSQL at {} (CI=true): {err}", server(url));
    }
    // Straight to stderr: the test harness hides `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: PostgresStore, no PostgreSQL at {} ({err}); set DATABASE_URL ***\n",
        server(url)
    );
    None
}

/// A [`PostgresStore`] on a fresh database, with the database (dropped with it); `None`
/// when PostgreSQL is skipped.
pub(super) async fn fresh_store() -> Option<(PostgresStore, FreshDatabase)> {
    let db = FreshDatabase::create().await?;
    let store = PostgresStore::connect(&db.url)
        .await
        .expect("the view connects to its fresh database");
    Some((store, db))
}

#[test]
fn a_url_names_another_database_keeping_its_login_and_options() {
    assert_eq!(
        with_database("postgres://u:p@h:5432/test?sslmode=disable", "v"),
        "postgres://u:p@h:5432/v?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "v"), "postgresql://h/v");
}

#[tokio::test]
async fn two_postgres_replicas_on_one_database_give_the_same_answers() {
    let Some((one, db)) = fresh_store().await else {
        return;
    };
    let two = PostgresStore::connect(&db.url)
        .await
        .expect("the second replica connects");
    let tasks: Vec<Task> = (0..6)
        .map(|i| {
            let mut t = Task::new(format!("t{i}"), "d", "").expect("valid");
            t.created_at = DateTime::from_timestamp(1_700_000_000 + i / 2, 0).expect("time");
            t
        })
        .collect();
    let next = |offset| NextOffset {
        topic: "results".into(),
        partition: 0,
        offset,
    };
    // One replica applies the tasks, the other the results, a failed one and then a
    // completed one for task 0: the view both show is the one of a single store.
    one.apply(Batch {
        records: tasks.iter().cloned().map(ViewRecord::Task).collect(),
        offsets: vec![],
    })
    .await
    .expect("applied");
    two.apply(Batch {
        records: vec![
            ViewRecord::Result(result(&tasks[0], false), at(10)),
            ViewRecord::Result(result(&tasks[1], true), at(11)),
        ],
        offsets: vec![next(12)],
    })
    .await
    .expect("applied");
    one.apply(Batch {
        records: vec![ViewRecord::Result(result(&tasks[0], true), at(12))],
        offsets: vec![next(13)],
    })
    .await
    .expect("applied");

    let reference = MemoryStore::new();
    reference
        .apply(Batch {
            records: tasks
                .iter()
                .cloned()
                .map(ViewRecord::Task)
                .chain([
                    ViewRecord::Result(result(&tasks[0], false), at(10)),
                    ViewRecord::Result(result(&tasks[1], true), at(11)),
                    ViewRecord::Result(result(&tasks[0], true), at(12)),
                ])
                .collect(),
            offsets: vec![next(13)],
        })
        .await
        .expect("applied");
    let statuses = async |store: &dyn ViewStore| {
        let page = list(store, None, 100).await;
        page.results
            .into_iter()
            .map(|v| {
                (
                    v.task_id,
                    v.status,
                    task_of(&v).map(|t| t.task_name),
                    v.result_at,
                )
            })
            .collect::<Vec<_>>()
    };
    let expected = statuses(&reference).await;
    assert_eq!(expected.len(), 6);
    assert_eq!(statuses(&one).await, expected);
    assert_eq!(statuses(&two).await, expected);
    for t in &tasks {
        let a = get(&one, t.task_id).await.expect("kept");
        let b = get(&two, t.task_id).await.expect("kept");
        assert_eq!(a, b);
        assert_eq!(
            a.status,
            get(&reference, t.task_id).await.expect("kept").status
        );
    }
    assert_eq!(one.offsets().await.expect("read"), [next(13)]);
    assert_eq!(two.offsets().await.expect("read"), [next(13)]);
}

#[tokio::test]
async fn postgres_replicas_applying_the_same_records_at_once_agree_and_never_deadlock() {
    let Some((one, db)) = fresh_store().await else {
        return;
    };
    let two = PostgresStore::connect(&db.url)
        .await
        .expect("the second replica connects");
    let tasks: Vec<Task> = (0..40)
        .map(|i| Task::new(format!("t{i}"), "d", "").expect("valid"))
        .collect();
    let records: Vec<ViewRecord> = tasks
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            [
                ViewRecord::Task(t.clone()),
                ViewRecord::Result(result(t, i % 3 != 0), at(i as i64)),
            ]
        })
        .collect();
    let mut reversed = records.clone();
    reversed.reverse();
    // Each replica applies every record, in opposite orders, in many batches at once.
    let batches = |records: Vec<ViewRecord>| {
        records
            .chunks(7)
            .map(|chunk| Batch {
                records: chunk.to_vec(),
                offsets: vec![],
            })
            .collect::<Vec<_>>()
    };
    let applying = batches(records)
        .into_iter()
        .map(|batch| one.apply(batch))
        .chain(batches(reversed).into_iter().map(|batch| two.apply(batch)));
    for applied in futures::future::join_all(applying).await {
        applied.expect("applied without a deadlock");
    }
    for (i, t) in tasks.iter().enumerate() {
        let a = get(&one, t.task_id).await.expect("kept");
        assert_eq!(a, get(&two, t.task_id).await.expect("kept"));
        let status = if i % 3 == 0 {
            TaskStatus::Failed
        } else {
            TaskStatus::Completed
        };
        assert_eq!(a.status, status);
        assert_eq!(task_of(&a).as_ref(), Some(t));
    }
}

#[tokio::test]
async fn postgres_replicas_starting_at_once_on_a_fresh_database_all_connect() {
    let Some(db) = FreshDatabase::create().await else {
        return;
    };
    let connects = (0..4).map(|_| PostgresStore::connect(&db.url));
    let stores = futures::future::join_all(connects).await;
    let stores: Vec<PostgresStore> = stores
        .into_iter()
        .map(|store| store.expect("every replica connects"))
        .collect();
    let t = Task::new("n", "d", "").expect("valid");
    task(&stores[0], &t).await;
    for store in &stores {
        assert!(get(store, t.task_id).await.is_some(), "{store:?}");
    }
}

#[tokio::test]
async fn the_view_migrates_a_database_that_the_checkpointer_and_another_app_migrated_too() {
    let Some(db) = FreshDatabase::create().await else {
        return;
    };
    // Another application's migrations in sqlx's default `_sqlx_migrations`.
    let mut conn = PgConnection::connect(&db.url).await.expect("connects");
    let other = Migrator::with_migrations(vec![Migration::new(
        1,
        "another app".into(),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str("CREATE TABLE another_app (id BIGINT)"),
        false,
    )]);
    other.run(&mut conn).await.expect("the other app migrates");
    let _ = conn.close().await;

    // The checkpointer and the view at once, then again (a restart).
    let (saver, store) = tokio::join!(
        agent_runtime::checkpoint::PostgresSaver::connect(&db.url),
        PostgresStore::connect(&db.url)
    );
    saver.expect("the checkpointer migrates");
    store.expect("the view migrates");
    agent_runtime::checkpoint::PostgresSaver::connect(&db.url)
        .await
        .expect("the checkpointer starts again");
    let store = PostgresStore::connect(&db.url)
        .await
        .expect("the view starts again");
    let t = Task::new("n", "d", "").expect("valid");
    task(&store, &t).await;
    assert!(get(&store, t.task_id).await.is_some());
    let mut conn = PgConnection::connect(&db.url).await.expect("connects");
    let other_again = Migrator::with_migrations(vec![Migration::new(
        1,
        "another app".into(),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str("CREATE TABLE another_app (id BIGINT)"),
        false,
    )]);
    other_again
        .run(&mut conn)
        .await
        .expect("the other app starts again");
    let _ = conn.close().await;
}
