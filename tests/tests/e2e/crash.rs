//! Fault tests with the task-solver as its own process: killed with SIGKILL mid-run, and
//! stopped with SIGTERM under load. Nothing may be lost or repeated, and an LLM step that
//! finished is not paid for again.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use e2e::{
    Broker, LlmStandIn, STANDIN_ANSWER, SolverProcess, System, TaskResults, completion,
    postgres_or_skip, produce_tasks, read_topic_settled,
};
use wiremock::{
    Mock, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// Tasks a solver works on at once in these tests.
const CONCURRENCY: usize = 4;
/// LLM calls per task: the solver graph's `plan` and `solve`.
const CALLS_PER_TASK: usize = 2;

/// Counts chat requests as they arrive (wiremock records a request only once it was
/// answered, so one cut off by a kill would not be counted), then answers after a delay.
struct CountingAnswer {
    arrived: Arc<AtomicUsize>,
    answer: ResponseTemplate,
}

impl Respond for CountingAnswer {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        self.answer.clone()
    }
}

/// A model stand-in answering every chat request after `delay`, so that work is in flight
/// when a solver dies; the counter says how many requests arrived.
async fn slow_model(delay: Duration) -> (LlmStandIn, Arc<AtomicUsize>) {
    let llm = LlmStandIn::empty().await;
    let arrived = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(CountingAnswer {
            arrived: arrived.clone(),
            answer: ResponseTemplate::new(200)
                .set_body_json(completion(STANDIN_ANSWER))
                .set_delay(delay),
        })
        .mount(&llm.server)
        .await;
    (llm, arrived)
}

/// How many tasks have a final result in the view now.
async fn finished(system: &System) -> usize {
    system
        .task_results("limit=1000")
        .await
        .ok()
        .finished()
        .len()
}

/// Waits until at least `count` tasks have a final result, up to `timeout`.
async fn wait_finished(system: &System, count: usize, timeout: Duration) -> usize {
    let list = system
        .wait_for_results(timeout, |list| list.finished().len() >= count)
        .await;
    list.finished().len()
}

/// Checks that the view holds exactly `ids`, each `completed` once.
fn assert_all_completed(list: &TaskResults, ids: &[String]) {
    let results = &list.results;
    let completed: Vec<String> = list
        .completed()
        .iter()
        .map(|t| t.task_id.to_string())
        .collect();
    let unique: HashSet<&str> = completed.iter().map(String::as_str).collect();
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(completed.len(), ids.len(), "one completed result per task");
    assert_eq!(
        unique, expected,
        "exactly the tasks produced, no duplicates"
    );
    assert_eq!(results.len(), ids.len(), "nothing else listed");
}

/// Result records on the results topic (the view dedupes; the topic need not).
async fn result_records(bootstrap: &str, topic: &str, at_least: usize) -> usize {
    read_topic_settled(bootstrap, topic, at_least, Duration::from_secs(30))
        .await
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_lose_nothing_repeat_nothing_and_pay_no_finished_step_twice() {
    const TASKS: usize = 300;
    const KILLS_AT: [usize; 3] = [60, 130, 200];
    let Some((database_url, _saver)) = postgres_or_skip().await else {
        return;
    };
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (llm, arrived) = slow_model(Duration::from_millis(40)).await;
    let system = System::start_without_solver(&bootstrap, &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    let concurrency = CONCURRENCY.to_string();
    let solver_vars = [
        ("CHECKPOINTER", "postgres"),
        ("DATABASE_URL", database_url.as_str()),
        ("SOLVER_CONCURRENCY", concurrency.as_str()),
    ];
    let mut solver =
        SolverProcess::start(&bootstrap, &llm.base_url(), "solver-0", &solver_vars).await;

    let started = Instant::now();
    let ids = produce_tasks(&bootstrap, &topics.events, TASKS).await;
    let mut kills = Vec::new();
    for (i, threshold) in KILLS_AT.into_iter().enumerate() {
        let done = wait_finished(&system, threshold, Duration::from_secs(90)).await;
        assert!(
            done >= threshold,
            "only {done} results before kill {}; solver log: {}",
            i + 1,
            solver.log_path().display()
        );
        // Kill just after a request reached the model, so that one is in flight (the
        // stand-in answers after 40 ms).
        let seen = arrived.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while arrived.load(Ordering::SeqCst) == seen && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let calls = arrived.load(Ordering::SeqCst);
        solver.kill();
        kills.push(format!("kill {} at {done} results / {calls} calls", i + 1));
        let name = format!("solver-{}", i + 1);
        solver = SolverProcess::start(&bootstrap, &llm.base_url(), &name, &solver_vars).await;
    }
    let list = system
        .wait_for_results(Duration::from_secs(120), |list| {
            list.finished().len() >= TASKS
        })
        .await;
    let elapsed = started.elapsed();
    assert_all_completed(&list, &ids);

    // Each task needs CALLS_PER_TASK calls; a kill can cost again at most the one call in
    // flight per task in flight (finished steps are checkpointed in PostgreSQL before the
    // next starts), and a solver holds at most CONCURRENCY tasks.
    let calls = arrived.load(Ordering::SeqCst);
    let bound = TASKS * CALLS_PER_TASK + KILLS_AT.len() * CONCURRENCY;
    assert!(
        calls <= bound,
        "{calls} LLM calls; at most {bound} expected (log: {})",
        solver.log_path().display()
    );
    let records = result_records(&bootstrap, &topics.results, TASKS).await;
    assert!(
        records >= TASKS,
        "{records} result records for {TASKS} tasks"
    );
    println!(
        "crash: {TASKS} tasks, 3 SIGKILLs ({}): {TASKS} results, 0 lost, 0 duplicates in the view; \
         {calls} LLM calls for {} steps (bound {bound}); {records} result records on the topic; {:.1} s",
        kills.join(", "),
        TASKS * CALLS_PER_TASK,
        elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_commits_and_loses_nothing() {
    const TASKS: usize = 100;
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let (llm, arrived) = slow_model(Duration::from_millis(40)).await;
    let system = System::start_without_solver(&bootstrap, &llm.base_url(), &[]).await;
    let topics = system.settings.kafka.topics.clone();
    // The in-memory checkpointer: a task redone after the restart would call the model
    // again, so the call count shows whether the drain committed what it finished.
    let concurrency = CONCURRENCY.to_string();
    let solver_vars = [("SOLVER_CONCURRENCY", concurrency.as_str())];
    let mut solver =
        SolverProcess::start(&bootstrap, &llm.base_url(), "solver-a", &solver_vars).await;

    let started = Instant::now();
    let ids = produce_tasks(&bootstrap, &topics.events, TASKS).await;
    let done = wait_finished(&system, 30, Duration::from_secs(60)).await;
    assert!(done >= 30, "only {done} results before SIGTERM");
    let term_sent = Instant::now();
    let status = solver.terminate(Duration::from_secs(20)).await;
    let exit_took = term_sent.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the solver did not exit within 20 s of SIGTERM (drain is 5 s); log: {}",
            solver.log_path().display()
        )
    });
    assert!(status.success(), "exit status {status} after SIGTERM");
    let at_exit = finished(&system).await;

    let mut solver =
        SolverProcess::start(&bootstrap, &llm.base_url(), "solver-b", &solver_vars).await;
    let list = system
        .wait_for_results(Duration::from_secs(90), |list| {
            list.finished().len() >= TASKS
        })
        .await;
    assert_all_completed(&list, &ids);
    let calls = arrived.load(Ordering::SeqCst);
    assert_eq!(
        calls,
        TASKS * CALLS_PER_TASK,
        "a drained task was redone after the restart (log: {})",
        solver.log_path().display()
    );
    let records = result_records(&bootstrap, &topics.results, TASKS).await;
    assert_eq!(records, TASKS, "one result record per task");
    solver.kill();
    println!(
        "shutdown: SIGTERM after {done} of {TASKS} results; exited with {status} in {:.2} s, \
         {at_exit} results by then; after the restart {TASKS} results, 0 lost, {calls} LLM calls \
         (= {TASKS} × {CALLS_PER_TASK}), {records} result records; {:.1} s in all",
        exit_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
