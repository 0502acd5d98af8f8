//! The stores' conformance tests: every [`ViewStore`] gives the same answers.
//!
//! PostgreSQL's take `DATABASE_URL` (see [`postgres`]); without a server they run on
//! the other stores after a loud `SKIPPED` line, except under `CI=true`, where they fail.

mod postgres;

use std::{any::Any, sync::Arc};

use agent_core::task::TokenUsage;

use super::*;

/// What keeps a store's backing alive until the test ends: its folder, its database.
type Keep = Option<Box<dyn Any>>;

/// Every store, fresh: the in-memory one, SQLite in a temporary folder and PostgreSQL
/// in a database of its own (when a server answers), each with what keeps it.
async fn stores() -> Vec<(Arc<dyn ViewStore>, Keep)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = SqliteStore::open(&dir.path().join("view.sqlite"))
        .await
        .expect("sqlite opens");
    let mut stores: Vec<(Arc<dyn ViewStore>, Keep)> = vec![
        (Arc::new(MemoryStore::new()), None),
        (Arc::new(sqlite), Some(Box::new(dir))),
    ];
    if let Some((store, db)) = postgres::fresh_store().await {
        stores.push((Arc::new(store), Some(Box::new(db))));
    }
    stores
}

fn at(offset: i64) -> LogPosition {
    LogPosition {
        partition: 0,
        offset,
    }
}

fn result(task: &Task, ok: bool) -> TaskResult {
    if ok {
        TaskResult::completed(task, "done", "s", Utc::now(), TokenUsage::default())
    } else {
        TaskResult::failed(task, "boom", "s", Utc::now(), TokenUsage::default())
    }
}

async fn task(store: &dyn ViewStore, task: &Task) {
    let records = vec![ViewRecord::Task(task.clone())];
    store
        .apply(Batch {
            records,
            offsets: vec![],
        })
        .await
        .expect("applied");
}

async fn settle(store: &dyn ViewStore, result: TaskResult, at: LogPosition) {
    let records = vec![ViewRecord::Result(result, at)];
    store
        .apply(Batch {
            records,
            offsets: vec![],
        })
        .await
        .expect("applied");
}

async fn get(store: &dyn ViewStore, id: Uuid) -> Option<TaskView> {
    store.get(id).await.expect("read")
}

/// The task `view` shows, decoded.
fn task_of(view: &TaskView) -> Option<Task> {
    view.task.as_ref().map(|t| t.decode().expect("a task"))
}

/// The result `view` shows, decoded.
fn result_of(view: &TaskView) -> Option<TaskResult> {
    view.result.as_ref().map(|r| r.decode().expect("a result"))
}

async fn list(store: &dyn ViewStore, status: Option<TaskStatus>, limit: usize) -> Page {
    store
        .list(ListQuery {
            status,
            limit,
            after: None,
        })
        .await
        .expect("listed")
}

#[tokio::test]
async fn a_task_is_pending_until_its_result_and_never_listed_twice() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let t = Task::new("n", "d", "").expect("valid");
        task(store, &t).await;
        assert_eq!(
            get(store, t.task_id).await.map(|v| v.status),
            Some(TaskStatus::Pending),
            "{store:?}"
        );
        settle(store, result(&t, true), at(1)).await;
        task(store, &t).await;
        settle(store, result(&t, true), at(2)).await;
        assert_eq!(list(store, None, 10).await.results.len(), 1, "{store:?}");
        let seen = get(store, t.task_id).await.expect("known");
        assert_eq!(seen.status, TaskStatus::Completed);
        assert_eq!(task_of(&seen).as_ref(), Some(&t));
        assert_eq!(seen.result_at, Some(at(1)));
    }
}

#[tokio::test]
async fn completed_beats_failed_whatever_the_order() {
    for (store, _dir) in stores().await {
        for order in [[true, false], [false, true]] {
            let t = Task::new("n", "d", "").expect("valid");
            for ok in order {
                settle(&*store, result(&t, ok), at(3)).await;
            }
            assert_eq!(
                get(&*store, t.task_id).await.map(|v| v.status),
                Some(TaskStatus::Completed),
                "{store:?}"
            );
        }
    }
}

#[tokio::test]
async fn the_first_result_in_the_log_stays_whatever_a_later_one_s_finished_at() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let t = Task::new("n", "d", "").expect("valid");
        let shown = async |store: &dyn ViewStore| {
            get(store, t.task_id)
                .await
                .and_then(|v| result_of(&v))
                .and_then(|r| r.result)
        };
        settle(store, result(&t, true), at(3)).await;
        let mut forged = result(&t, true);
        forged.result = Some("FORGED, finished in 2099".into());
        forged.finished_at = DateTime::from_timestamp(4_070_908_800, 0).expect("time");
        settle(store, forged, at(7)).await;
        assert_eq!(shown(store).await.as_deref(), Some("done"), "{store:?}");

        // Read out of order, the earlier position takes its place; another partition's
        // result (not keyed by the task id) never does.
        let mut earlier = result(&t, true);
        earlier.result = Some("earlier".into());
        settle(store, earlier.clone(), at(1)).await;
        assert_eq!(shown(store).await.as_deref(), Some("earlier"), "{store:?}");
        let elsewhere = LogPosition {
            partition: 1,
            offset: 0,
        };
        let mut other = earlier;
        other.result = Some("other partition".into());
        settle(store, other, elsewhere).await;
        assert_eq!(shown(store).await.as_deref(), Some("earlier"), "{store:?}");
    }
}

#[tokio::test]
async fn a_result_before_its_task_shows_with_a_null_task_until_the_task_comes() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let t = Task::new("n", "d", "").expect("valid");
        settle(store, result(&t, false), at(4)).await;
        let json = serde_json::to_value(get(store, t.task_id).await.expect("kept")).expect("json");
        assert!(json["task"].is_null(), "{store:?}: {json}");
        task(store, &t).await;
        let seen = get(store, t.task_id).await.expect("known");
        assert_eq!(seen.status, TaskStatus::Failed, "{store:?}");
        assert_eq!(task_of(&seen).as_ref(), Some(&t), "{store:?}");
        assert_eq!(seen.created_at, t.created_at, "{store:?}");
    }
}

#[tokio::test]
async fn list_is_newest_first_filtered_and_limited() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let mut tasks = Vec::new();
        for i in 0..5 {
            let mut t = Task::new(format!("t{i}"), "d", "").expect("valid");
            t.created_at = DateTime::from_timestamp(1_700_000_000 + i, 0).expect("time");
            task(store, &t).await;
            tasks.push(t);
        }
        settle(store, result(&tasks[1], true), at(5)).await;
        let page = list(store, None, 3).await;
        let names: Vec<String> = page
            .results
            .into_iter()
            .filter_map(|v| task_of(&v).map(|t| t.task_name))
            .collect();
        assert_eq!(names, ["t4", "t3", "t2"], "{store:?}");
        assert!(page.next.is_some(), "{store:?}: more to come");
        let done = list(store, Some(TaskStatus::Completed), 10).await;
        assert_eq!(done.results.len(), 1, "{store:?}");
        assert_eq!(done.results[0].task_id, tasks[1].task_id);
        assert_eq!(done.next, None, "{store:?}: the last page");
        let pending = list(store, Some(TaskStatus::Pending), 10).await;
        assert_eq!(pending.results.len(), 4, "{store:?}");
    }
}

#[tokio::test]
async fn the_cursor_pages_through_every_task_once_even_at_equal_times() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let mut ids = std::collections::BTreeSet::new();
        // 25 tasks over 5 instants: ties broken by task_id.
        let mut records = Vec::new();
        for i in 0..25 {
            let mut t = Task::new(format!("t{i}"), "d", "").expect("valid");
            t.created_at = DateTime::from_timestamp(1_700_000_000 + i / 5, 0).expect("time");
            ids.insert(t.task_id);
            records.push(ViewRecord::Task(t));
        }
        store
            .apply(Batch {
                records,
                offsets: vec![],
            })
            .await
            .expect("applied");
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list(ListQuery {
                    status: None,
                    limit: 7,
                    after,
                })
                .await
                .expect("page");
            seen.extend(page.results.iter().map(|v| (v.created_at, v.task_id)));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 25, "{store:?}");
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(seen, sorted, "{store:?}: newest first, no overlap");
        let found: std::collections::BTreeSet<Uuid> = seen.iter().map(|(_, id)| *id).collect();
        assert_eq!(found, ids, "{store:?}");
    }
}

#[tokio::test]
async fn offsets_are_stored_with_their_batch_and_the_newest_is_kept() {
    for (store, _dir) in stores().await {
        let store = &*store;
        assert!(store.offsets().await.expect("read").is_empty());
        let t = Task::new("n", "d", "").expect("valid");
        let next = |offset| NextOffset {
            topic: "events".into(),
            partition: 1,
            offset,
        };
        store
            .apply(Batch {
                records: vec![ViewRecord::Task(t.clone())],
                offsets: vec![next(8)],
            })
            .await
            .expect("applied");
        store
            .apply(Batch {
                records: vec![],
                offsets: vec![next(9)],
            })
            .await
            .expect("applied");
        assert_eq!(store.offsets().await.expect("read"), [next(9)], "{store:?}");
    }
}

#[tokio::test]
async fn prune_removes_finished_tasks_created_before_the_time_and_keeps_pending_ones() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let old = |name: &str| {
            let mut t = Task::new(name, "d", "").expect("valid");
            t.created_at = DateTime::from_timestamp(1_600_000_000, 0).expect("time");
            t
        };
        let (done, waiting, fresh) = (
            old("done"),
            old("waiting"),
            Task::new("fresh", "d", "").expect("valid"),
        );
        for t in [&done, &waiting, &fresh] {
            task(store, t).await;
        }
        settle(store, result(&done, true), at(1)).await;
        settle(store, result(&fresh, true), at(2)).await;
        let cut = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        assert_eq!(store.prune(cut).await.expect("pruned"), 1, "{store:?}");
        assert!(get(store, done.task_id).await.is_none(), "{store:?}");
        assert!(get(store, waiting.task_id).await.is_some(), "{store:?}");
        assert!(get(store, fresh.task_id).await.is_some(), "{store:?}");
    }
}

#[tokio::test]
async fn an_sqlite_view_reopened_has_its_rows_and_offsets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested").join("view.sqlite");
    let t = Task::new("n", "d", "").expect("valid");
    let next = NextOffset {
        topic: "results".into(),
        partition: 0,
        offset: 42,
    };
    {
        let store = SqliteStore::open(&path).await.expect("opens");
        store
            .apply(Batch {
                records: vec![
                    ViewRecord::Task(t.clone()),
                    ViewRecord::Result(result(&t, true), at(41)),
                ],
                offsets: vec![next.clone()],
            })
            .await
            .expect("applied");
    }
    let store = SqliteStore::open(&path).await.expect("reopens");
    assert_eq!(store.offsets().await.expect("read"), [next]);
    let seen = store.get(t.task_id).await.expect("read").expect("kept");
    assert_eq!(seen.status, TaskStatus::Completed);
    assert_eq!(task_of(&seen), Some(t));
}

#[test]
fn a_cursor_reads_back_as_written_and_anything_else_is_refused() {
    let cursor = Cursor {
        created_at_ns: 1_700_000_000_123_456_789,
        task_id: Uuid::new_v4(),
    };
    assert_eq!(
        cursor.to_string().parse::<Cursor>().expect("parses"),
        cursor
    );
    let id = "0d6f5b8e8a434c1e9a553f1f4e2b7c10";
    for good in [
        format!("0.{id}"),
        format!("899999999999999999.{}", id.to_uppercase()),
        format!("8999999999999999999.{id}"),
    ] {
        assert!(good.parse::<Cursor>().is_ok(), "{good:?} refused");
    }
    // What the document's pattern refuses, the view refuses too: other forms of the id,
    // signs, more digits than an i64 always holds.
    for bad in [
        "",
        "12",
        "x.y",
        "12.not-a-uuid",
        "1.2.3",
        &format!(".{id}"),
        &format!("+1.{id}"),
        &format!("-1.{id}"),
        &format!("9000000000000000000.{id}"),
        &format!("12345678901234567890.{id}"),
        "1.0d6f5b8e-8a43-4c1e-9a55-3f1f4e2b7c10",
        &format!("1.{{{id}}}"),
        &format!("1.{id}0"),
    ] {
        assert!(bad.parse::<Cursor>().is_err(), "{bad:?} parsed");
    }
}

#[tokio::test]
async fn a_view_writes_the_same_json_as_its_task_and_result_decoded() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let t = Task::new("n", "d \"quoted\" é", "").expect("valid");
        let r = result(&t, true);
        task(store, &t).await;
        settle(store, r.clone(), at(1)).await;
        let seen = get(store, t.task_id).await.expect("known");
        let decoded = serde_json::json!({
            "task_id": t.task_id,
            "status": TaskStatus::Completed,
            "task": t,
            "result": r,
            "created_at": t.created_at,
        });
        assert_eq!(
            serde_json::to_string(&seen).expect("json"),
            serde_json::to_string(&decoded).expect("json"),
            "{store:?}"
        );
    }
}

#[test]
fn a_stored_row_whose_task_or_result_is_not_json_is_corrupt() {
    let row = |task: &str, result: &str| StoredRow {
        task_id: Uuid::new_v4().as_bytes().to_vec(),
        status: "completed".into(),
        task: Some(task.into()),
        result: Some(result.into()),
        created_at_ns: 0,
        result_partition: Some(0),
        result_offset: Some(0),
    };
    assert!(row("{}", "{}").into_view().is_ok());
    for (task, result) in [("{\"task_id\":", "{}"), ("{}", "not json"), ("{} {}", "{}")] {
        let err = row(task, result).into_view().expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    }
}

/// An `interrupted` result for `t` pausing at `id`.
fn paused(t: &Task, id: &str) -> TaskResult {
    TaskResult::interrupted(
        t,
        agent_core::task::TaskInterrupt {
            id: id.into(),
            node: "review".into(),
            value: serde_json::json!({"plan": format!("plan {id}")}),
        },
        "s",
        Utc::now(),
        TokenUsage::default(),
    )
}

#[tokio::test]
async fn a_paused_task_shows_its_newest_interrupt_until_a_final_result_settles_it() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let t = Task::new("n", "d", "").expect("valid");
        task(store, &t).await;
        let interrupt = async || {
            let view = get(store, t.task_id).await.expect("known");
            (
                view.status,
                result_of(&view).and_then(|r| r.interrupt).map(|i| i.id),
            )
        };
        settle(store, paused(&t, "a#0"), at(2)).await;
        assert_eq!(
            interrupt().await,
            (TaskStatus::Interrupted, Some("a#0".into())),
            "{store:?}"
        );
        let waiting = list(store, Some(TaskStatus::Interrupted), 10).await;
        assert_eq!(waiting.results.len(), 1, "{store:?}: listed as waiting");
        // Paused again after a rejected plan: the newer interrupt shows; the older one,
        // read again (a redelivery), does not come back.
        settle(store, paused(&t, "b#0"), at(5)).await;
        settle(store, paused(&t, "a#0"), at(2)).await;
        assert_eq!(
            interrupt().await,
            (TaskStatus::Interrupted, Some("b#0".into())),
            "{store:?}"
        );
        // A final result settles it, and no pause read after it takes its place.
        settle(store, result(&t, true), at(8)).await;
        settle(store, paused(&t, "c#0"), at(9)).await;
        assert_eq!(
            interrupt().await,
            (TaskStatus::Completed, None),
            "{store:?}"
        );
        assert!(
            list(store, Some(TaskStatus::Interrupted), 10)
                .await
                .results
                .is_empty(),
            "{store:?}"
        );
        // A failed result settles a pause too, and a completed one still beats it.
        let u = Task::new("u", "d", "").expect("valid");
        settle(store, paused(&u, "a#0"), at(1)).await;
        settle(store, result(&u, false), at(3)).await;
        settle(store, paused(&u, "b#0"), at(4)).await;
        assert_eq!(
            get(store, u.task_id).await.expect("known").status,
            TaskStatus::Failed
        );
        settle(store, result(&u, true), at(6)).await;
        assert_eq!(
            get(store, u.task_id).await.expect("known").status,
            TaskStatus::Completed
        );
    }
}

#[tokio::test]
async fn prune_keeps_a_task_waiting_for_review_however_old() {
    for (store, _dir) in stores().await {
        let store = &*store;
        let mut old = Task::new("old", "d", "").expect("valid");
        old.created_at = DateTime::from_timestamp(1_600_000_000, 0).expect("time");
        task(store, &old).await;
        settle(store, paused(&old, "a#0"), at(1)).await;
        let removed = store.prune(Utc::now()).await.expect("pruned");
        assert_eq!(removed, 0, "{store:?}");
        assert_eq!(
            get(store, old.task_id).await.expect("kept").status,
            TaskStatus::Interrupted,
            "{store:?}"
        );
    }
}
