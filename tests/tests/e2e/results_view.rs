//! The results view across restarts and replicas: a replica catching up answers 200 or
//! 503 `catching_up`, never 404 for a task that exists; a restarted one resumes from the
//! offsets its store kept; replicas on PostgreSQL share one view, written by one
//! consumer group; a cursor pages through every task once.

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use agent_runtime::{config::Settings, kafka::log_bounds};
use e2e::{
    Broker, FreshDatabase, LlmStandIn, System, TaskResults, get_json, produce_tasks, scratch_dir,
};
use serde_json::Value;
use task_generator::store::{SqliteStore, ViewStore};
use tokio_util::sync::CancellationToken;

/// A task-generator replica started in-process: its base URL, the token that stops it,
/// and its task (awaited to know it has stopped and closed its store).
struct Replica {
    base: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<agent_runtime::Result<()>>,
}

impl Replica {
    async fn start(settings: Settings) -> Self {
        let app = task_generator::startup::App::build(settings)
            .await
            .expect("task-generator builds");
        let base = format!("http://{}", app.local_addr().expect("address"));
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { base, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What a poll of `GET /task-result/{id}` answered, by kind: `200 <status>`,
/// `503 catching_up`, or anything else as `<code> <error code>`.
fn kind(status: u16, body: &Value) -> String {
    match status {
        200 => format!("200 {}", body["status"].as_str().unwrap_or("?")),
        _ => format!("{status} {}", body["error"]["code"].as_str().unwrap_or("?")),
    }
}

/// Polls every id of `ids` in turn on the replica at `base` from the moment it listens
/// until each has answered `200 completed` and `/ready` is 200, up to `timeout`; the
/// answers counted by kind.
///
/// # Panics
/// When the time runs out first.
async fn poll_until_caught_up(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    timeout: Duration,
) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + timeout;
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut done: HashSet<&str> = HashSet::new();
    loop {
        for id in ids {
            let (status, body) = get_json(http, &format!("{base}/task-result/{id}")).await;
            let kind = kind(status, &body);
            if kind == "200 completed" {
                done.insert(id);
            }
            *seen.entry(kind).or_default() += 1;
        }
        let (ready, _) = get_json(http, &format!("{base}/ready")).await;
        if done.len() == ids.len() && ready == 200 {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{base} not caught up after {timeout:?}: {} of {} completed; answers so far {seen:?}",
            done.len(),
            ids.len()
        );
    }
}

/// Every task listed by paging `GET /task-results?limit={limit}` with the cursor, in
/// order.
async fn page_through(http: &reqwest::Client, base: &str, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut url = format!("{base}/task-results?limit={limit}");
    loop {
        let (status, body) = get_json(http, &url).await;
        assert_eq!(status, 200, "{body}");
        let page: TaskResults = serde_json::from_value(body.clone()).expect("a page");
        assert!(page.count <= limit, "{body}");
        all.extend(body["results"].as_array().cloned().unwrap_or_default());
        match page.next {
            Some(next) => url = format!("{base}/task-results?limit={limit}&cursor={next}"),
            None => return all,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_catching_up_or_restarted_never_answers_404_for_a_known_task() {
    const TASKS: usize = 400;
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&bootstrap, &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    let ids = produce_tasks(&bootstrap, &topics.events, TASKS).await;
    let list = system
        .wait_for_results(Duration::from_secs(120), |list| {
            list.completed().len() >= TASKS
        })
        .await;
    assert_eq!(list.completed().len(), TASKS, "every task solved first");

    // A new replica with an empty store reads both topics from their start, while
    // clients poll the tasks they know.
    let mut settings = system.settings.clone();
    settings.data_dir = scratch_dir();
    let fresh = Replica::start(settings.clone()).await;
    let answers =
        poll_until_caught_up(&system.http, &fresh.base, &ids, Duration::from_secs(120)).await;
    eprintln!("a fresh replica, polled while it caught up: {answers:?}");
    let allowed = ["200 completed", "503 catching_up"];
    assert!(
        answers.keys().all(|kind| allowed.contains(&kind.as_str())),
        "only 200 or 503 catching_up, never a 404: {answers:?}"
    );

    // Every task once, in order, through the cursor.
    let paged = page_through(&system.http, &fresh.base, 37).await;
    let paged_ids: Vec<String> = paged
        .iter()
        .map(|v| v["task_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let unique: HashSet<&String> = paged_ids.iter().collect();
    let expected: HashSet<&String> = ids.iter().collect();
    assert_eq!(paged_ids.len(), TASKS, "each task on one page only");
    assert_eq!(unique, expected, "every task, through the cursor");

    // Stopped, its store holds where it stopped: the ends of both topics.
    fresh.stop().await;
    let file = settings
        .data_dir
        .join(format!("results-{}.sqlite", topics.events));
    let stored = stored_offsets(&file).await;
    let names = [topics.events.clone(), topics.results.clone()];
    let ends: BTreeMap<(String, i32), i64> = log_bounds(&settings.kafka, &names, "e2e")
        .await
        .expect("log bounds")
        .into_iter()
        .map(|b| ((b.topic, b.partition), b.high))
        .collect();
    // Tansu's end-offset answers can lag what was written, never lead it: the store
    // must hold every partition, at or past the end the broker reports.
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        ends.keys().collect::<Vec<_>>(),
        "an offset for every partition of both topics"
    );
    for (partition, end) in &ends {
        assert!(
            stored[partition] >= *end,
            "the store kept the offset it read to: {partition:?} at {} of {end}",
            stored[partition]
        );
    }

    // Restarted on the same store, it resumes there: still no 404.
    let restarted = Replica::start(settings).await;
    let answers =
        poll_until_caught_up(&system.http, &restarted.base, &ids, Duration::from_secs(60)).await;
    eprintln!("the same replica restarted: {answers:?}");
    assert!(
        answers.keys().all(|kind| allowed.contains(&kind.as_str())),
        "only 200 or 503 catching_up after a restart: {answers:?}"
    );
    restarted.stop().await;
}

/// The offsets stored in the SQLite view at `file`, by topic and partition.
async fn stored_offsets(file: &Path) -> BTreeMap<(String, i32), i64> {
    let store = SqliteStore::open(file).await.expect("the replica's store");
    store
        .offsets()
        .await
        .expect("offsets")
        .into_iter()
        .map(|n| ((n.topic, n.partition), n.offset))
        .collect()
}

/// The partitions each replica at `bases` holds in the results view's consumer group
/// (`results_view_group` of `/health`), once every partition of both topics is held by
/// exactly one of them and each holds some, within 60 s.
///
/// # Panics
/// When they are not split so in time.
async fn wait_for_split(http: &reqwest::Client, bases: &[&str]) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut held = Vec::new();
        for base in bases {
            let (_, health) = get_json(http, &format!("{base}/health")).await;
            let partitions: Vec<String> = health["results_view_group"]["partitions"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter_map(|p| p.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            held.push(partitions);
        }
        let all: Vec<&String> = held.iter().flatten().collect();
        let distinct: HashSet<&String> = all.iter().copied().collect();
        // Two topics of two partitions (the harness's KAFKA_PARTITIONS).
        if all.len() == 4 && distinct.len() == 4 && held.iter().all(|h| !h.is_empty()) {
            return held;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not split the view's partitions within 60 s: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_show_the_same_answers_for_the_same_tasks() {
    const TASKS: usize = 120;
    let Some(database) = FreshDatabase::create().await else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let llm = LlmStandIn::healthy().await;
    let extra = [
        ("RESULTS_STORE", "postgres"),
        ("DATABASE_URL", database.url.as_str()),
    ];
    let system = System::start(&bootstrap, &llm.base_url(), &extra).await;
    let topics = system.settings.kafka.topics.clone();
    let ids = produce_tasks(&bootstrap, &topics.events, TASKS).await;
    system
        .wait_for_results(Duration::from_secs(120), |list| {
            list.completed().len() >= TASKS
        })
        .await;

    let second = Replica::start(system.settings.clone()).await;
    let answers =
        poll_until_caught_up(&system.http, &second.base, &ids, Duration::from_secs(60)).await;
    eprintln!("a second replica on the shared view: {answers:?}");

    // One consumer group writes the view: the replicas split the partitions.
    let split = wait_for_split(&system.http, &[&system.generator, &second.base]).await;
    eprintln!("partitions held by the two replicas: {split:?}");
    // Tasks published now are applied by whichever replica holds their partitions, and
    // both replicas show them.
    let more = produce_tasks(&bootstrap, &topics.events, TASKS / 2).await;
    let answers =
        poll_until_caught_up(&system.http, &second.base, &more, Duration::from_secs(120)).await;
    eprintln!("tasks published after the split, from the second replica: {answers:?}");
    let ids: Vec<String> = ids.into_iter().chain(more).collect();
    for id in &ids {
        let (_, first) = get_json(
            &system.http,
            &format!("{}/task-result/{id}", system.generator),
        )
        .await;
        let (_, other) = get_json(&system.http, &format!("{}/task-result/{id}", second.base)).await;
        assert_eq!(first, other, "the same answer for {id} from both replicas");
    }
    let first_pages = page_through(&system.http, &system.generator, 25).await;
    let second_pages = page_through(&system.http, &second.base, 25).await;
    assert_eq!(first_pages.len(), TASKS + TASKS / 2);
    assert_eq!(
        first_pages, second_pages,
        "the same pages from both replicas"
    );

    // The second replica leaves: the group gives its partitions back to the first,
    // which reads them on from the store's offsets and shows what is published next.
    second.stop().await;
    let last = produce_tasks(&bootstrap, &topics.events, TASKS / 2).await;
    let answers = poll_until_caught_up(
        &system.http,
        &system.generator,
        &last,
        Duration::from_secs(120),
    )
    .await;
    eprintln!("tasks published after the second replica left, from the first: {answers:?}");
    let held = wait_for_split(&system.http, &[&system.generator]).await;
    assert_eq!(
        held[0].len(),
        4,
        "the first replica holds every partition: {held:?}"
    );
    let listed = page_through(&system.http, &system.generator, 100).await;
    assert_eq!(listed.len(), 2 * TASKS, "every task once");
    drop(system);
    database.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generator_killed_while_results_stream_in_shows_every_result_once_after_restart() {
    use e2e::{STANDIN_ANSWER, ServiceProcess, completion};
    use wiremock::{
        Mock, ResponseTemplate,
        matchers::{method, path},
    };
    const TASKS: usize = 300;
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    // A model that answers after 20 ms, four tasks at a time: results arrive over
    // seconds, not at once.
    let llm = LlmStandIn::empty().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(STANDIN_ANSWER))
                .set_delay(Duration::from_millis(20)),
        )
        .mount(&llm.server)
        .await;
    let system = System::start(&bootstrap, &llm.base_url(), &[("SOLVER_CONCURRENCY", "4")]).await;
    let topics = system.settings.kafka.topics.clone();
    let data = scratch_dir();
    let data_dir = data.display().to_string();
    let vars = [("DATA_DIR", data_dir.as_str())];
    let generator = ServiceProcess::start_service(
        "task-generator",
        &bootstrap,
        &llm.base_url(),
        "gen-0",
        &vars,
    )
    .await;
    let ids = produce_tasks(&bootstrap, &topics.events, TASKS).await;

    // Kill it once some results are in its view and more are coming.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < 50 {
        assert!(Instant::now() < deadline, "only {seen} results in 60 s");
        let (_, body) = get_json(
            &system.http,
            &format!(
                "{}/task-results?status=completed&limit=1000",
                generator.base
            ),
        )
        .await;
        seen = body["count"].as_u64().unwrap_or(0) as usize;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut generator = generator;
    generator.kill();
    let in_system = system
        .task_results("status=completed&limit=1000")
        .await
        .ok()
        .count;
    eprintln!("killed with {seen} results in its view ({in_system} solved by then)");
    assert!(
        in_system < TASKS,
        "results were still streaming in at the kill"
    );

    let restarted = ServiceProcess::start_service(
        "task-generator",
        &bootstrap,
        &llm.base_url(),
        "gen-1",
        &vars,
    )
    .await;
    let answers = poll_until_caught_up(
        &system.http,
        &restarted.base,
        &ids,
        Duration::from_secs(120),
    )
    .await;
    eprintln!("after the restart: {answers:?}");
    assert!(
        answers
            .keys()
            .all(|k| ["200 completed", "200 pending", "503 catching_up"].contains(&k.as_str())),
        "no 404 after the restart: {answers:?}"
    );
    let paged = page_through(&system.http, &restarted.base, 100).await;
    let listed: Vec<&str> = paged.iter().filter_map(|v| v["task_id"].as_str()).collect();
    let unique: HashSet<&str> = listed.iter().copied().collect();
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(listed.len(), TASKS, "every task listed once");
    assert_eq!(unique, expected, "exactly the tasks produced");
    assert!(
        paged.iter().all(|v| v["status"] == "completed"),
        "every result in the view"
    );

    // It resumed from its store: fewer records to read than the topics hold.
    let log = std::fs::read_to_string(restarted.log_path()).expect("its log");
    let behind = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "results view reading")
        .and_then(|line| line["behind"].as_i64())
        .expect("the reader logs how far behind it starts");
    eprintln!(
        "the restarted generator started {behind} records behind of {} on the topics",
        2 * TASKS
    );
    assert!(
        behind < (2 * TASKS) as i64,
        "it resumed from its stored offsets, not from the topics' start ({behind} behind)"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(data);
}
