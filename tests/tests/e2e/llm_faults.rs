//! Fault test of the LLM: the model answers 429 with `Retry-After`, 500, slower than the
//! timeout, and a 200 that is not JSON, among correct answers — every task still ends
//! `completed`, or `failed` with a reason; none is lost, none listed twice. One task the
//! model never answers usably shows the limit: asked 3 times, then `failed` with why.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use agent_core::task::TaskStatus;
use e2e::{
    Broker, LlmStandIn, STANDIN_ANSWER, STANDIN_TASK, System, TaskView, completion, openai_error,
};
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use wiremock::{
    Mock, Request, Respond, ResponseTemplate,
    matchers::{method, path},
};

/// Tasks produced straight onto the events topic.
const PRODUCED: usize = 40;
/// Conversations sent to `POST /generate-task` meanwhile.
const POSTED: usize = 5;
/// The services' per-request timeout; the slow answers take [`SLOW`].
const TIMEOUT_SECS: &str = "2";
const SLOW: Duration = Duration::from_secs(3);
/// How long every task may take to end, from the first publish (about 55 s with a solver
/// working on one task at a time).
const DEADLINE: Duration = Duration::from_secs(120);
/// The description of the task the model never answers usably.
const HOPELESS: &str = "Do the hopeless thing.";

/// What the stand-in does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    RateLimited,
    ServerError,
    Slow,
    NotJson,
    Correct,
}

impl Answer {
    /// Request number `n` (from 0, over every chat request) gets this: a cycle of 24 in a
    /// fixed order, so the mix is the same on every run — two each of 429, 500 and
    /// non-JSON, one slow answer (the costliest: a timeout, then the node's retry 1–2 s
    /// later), 17 correct answers.
    fn of(n: usize) -> Self {
        match n % 24 {
            1 | 13 => Self::RateLimited,
            4 | 16 => Self::ServerError,
            7 => Self::Slow,
            10 | 22 => Self::NotJson,
            _ => Self::Correct,
        }
    }
}

/// The remote model with faults: answers by an atomic request counter and tallies what it
/// answered.
#[derive(Clone, Default)]
struct FaultyModel {
    requests: Arc<AtomicUsize>,
    tally: Arc<[AtomicUsize; 5]>,
    /// Requests about the [`HOPELESS`] task (answered non-JSON, outside the cycle).
    hopeless: Arc<AtomicUsize>,
}

impl FaultyModel {
    fn seen(&self, answer: Answer) -> usize {
        self.tally[answer as usize].load(Ordering::SeqCst)
    }
}

impl Respond for FaultyModel {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if String::from_utf8_lossy(&request.body).contains(HOPELESS) {
            self.hopeless.fetch_add(1, Ordering::SeqCst);
            return not_json();
        }
        let answer = Answer::of(self.requests.fetch_add(1, Ordering::SeqCst));
        self.tally[answer as usize].fetch_add(1, Ordering::SeqCst);
        // Structured requests are the generator's (a task), the others the solver's.
        let content = if String::from_utf8_lossy(&request.body).contains("json_schema") {
            STANDIN_TASK
        } else {
            STANDIN_ANSWER
        };
        match answer {
            Answer::RateLimited => ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"error": {"message": "Rate limit reached, try again in 1s", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            Answer::ServerError => {
                ResponseTemplate::new(500).set_body_json(openai_error("The server had an error"))
            }
            Answer::Slow => ResponseTemplate::new(200)
                .set_body_json(completion(content))
                .set_delay(SLOW),
            Answer::NotJson => not_json(),
            Answer::Correct => ResponseTemplate::new(200).set_body_json(completion(content)),
        }
    }
}

/// A 200 whose body is a proxy's HTML page, not a chat completion.
fn not_json() -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/html")
        .set_body_string(
            "<html><body>upstream connect error or disconnect/reset before headers</body></html>",
        )
}

/// A short name for why a task failed, for the figures.
fn kind_of(reason: &str) -> &'static str {
    if reason.contains("not an OpenAI response") {
        "non-JSON body"
    } else if reason.contains("did not answer in time") {
        "timeout"
    } else if reason.contains("429") {
        "429"
    } else if reason.contains("500") {
        "500"
    } else {
        "other"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_ends_completed_or_failed_with_a_reason_under_llm_faults() {
    let broker = Broker::start();
    let llm = LlmStandIn::empty().await;
    let model = FaultyModel::default();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(model.clone())
        .mount(&llm.server)
        .await;
    let system = Arc::new(
        System::start(
            &broker.bootstrap(),
            &llm.base_url(),
            &[
                ("OPENAI_TIMEOUT_SECS", TIMEOUT_SECS),
                ("SOLVER_CONCURRENCY", "1"),
            ],
        )
        .await,
    );
    let topics = system.settings.kafka.topics.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("producer");

    let started = Instant::now();
    // Conversations through the generator, while tasks are produced straight onto the
    // events topic as the Python system did (plain JSON, no headers, no id).
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..POSTED {
        let system = Arc::clone(&system);
        posts.spawn(async move {
            system
                .generate_task(json!(format!("User: I need help with project {i}")))
                .await
        });
    }
    let mut names = HashSet::new();
    let tasks = (0..PRODUCED)
        .map(|i| (format!("llm-fault task {i}"), format!("Do thing {i}.")))
        .chain([("llm-fault hopeless task".to_owned(), HOPELESS.to_owned())]);
    for (name, description) in tasks {
        let value = json!({"task_name": name, "task_description": description, "context": ""});
        producer
            .send(
                FutureRecord::to(&topics.events)
                    .key(&name)
                    .payload(&value.to_string()),
                Duration::from_secs(10),
            )
            .await
            .expect("produced");
        names.insert(name);
    }
    let mut accepted = HashSet::new();
    let mut refused: BTreeMap<u16, usize> = BTreeMap::new();
    for answer in posts.join_all().await {
        if answer.status == 200 {
            accepted.insert(answer.ok().task_id.to_string());
        } else {
            let e2e::Answer { status, body, .. } = answer;
            // Refused, not lost: the model failed, and the answer says so.
            assert!(status == 502 || status == 503, "{status}: {body}");
            assert!(
                body["error"]["code"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| !m.is_empty()),
                "a clear JSON error: {body}"
            );
            *refused.entry(status).or_default() += 1;
        }
    }
    let expected = PRODUCED + 1 + accepted.len();

    let list = system
        .wait_for_results(DEADLINE, |list| list.finished().len() >= expected)
        .await;
    let elapsed = started.elapsed();
    let results = &list.results;

    // Every task is listed once, and has ended.
    let ids: HashSet<String> = results.iter().map(|r| r.task_id.to_string()).collect();
    assert_eq!(ids.len(), results.len(), "no task listed twice");
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for r in results {
        if let Some(task) = &r.task {
            *by_name.entry(task.task_name.as_str()).or_default() += 1;
        }
    }
    let lost: Vec<&String> = names
        .iter()
        .filter(|n| !by_name.contains_key(n.as_str()))
        .collect();
    assert!(lost.is_empty(), "produced tasks lost: {lost:?}");
    assert!(
        names.iter().all(|n| by_name[n.as_str()] == 1),
        "a produced task listed twice"
    );
    for id in &accepted {
        assert!(ids.contains(id), "accepted task {id} lost");
    }
    assert_eq!(results.len(), expected, "nothing else listed: {list:?}");
    let unfinished: Vec<&TaskView> = results.iter().filter(|r| !r.is_finished()).collect();
    assert!(
        unfinished.is_empty(),
        "{} tasks not ended after {DEADLINE:?}: {unfinished:?}",
        unfinished.len()
    );

    // A failed task says why.
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    let mut completed = 0;
    for r in results {
        let result = r.result.as_ref();
        if r.status == TaskStatus::Completed {
            assert_eq!(
                result.and_then(|x| x.result.as_deref()),
                Some(STANDIN_ANSWER),
                "{r:?}"
            );
            completed += 1;
        } else {
            let reason = result.and_then(|x| x.error.as_deref()).unwrap_or_default();
            assert!(
                !reason.trim().is_empty(),
                "a failed task without a reason: {r:?}"
            );
            *reasons.entry(kind_of(reason)).or_default() += 1;
        }
    }
    let failed = expected - completed;
    assert!(
        completed > 0,
        "faults among correct answers still complete tasks"
    );
    // The hopeless task: `plan` asked LLM_NODE_ATTEMPTS (3) times, then the task failed
    // saying why.
    let hopeless = results
        .iter()
        .find(|r| {
            r.task
                .as_ref()
                .is_some_and(|t| t.task_description == HOPELESS)
        })
        .expect("the hopeless task is listed");
    assert_eq!(hopeless.status, TaskStatus::Failed, "{hopeless:?}");
    let reason = hopeless
        .result
        .as_ref()
        .and_then(|r| r.error.as_deref())
        .unwrap_or_default();
    assert!(
        reason.contains("not an OpenAI response") && reason.contains("upstream connect error"),
        "{reason}"
    );
    let hopeless_requests = model.hopeless.load(Ordering::SeqCst);
    assert_eq!(
        hopeless_requests,
        task_solver::solver::LLM_NODE_ATTEMPTS as usize,
        "asked LLM_NODE_ATTEMPTS times, no more"
    );

    // Every fault was played (the cycle of 24 repeats several times over).
    let requests = model.requests.load(Ordering::SeqCst);
    for answer in [
        Answer::RateLimited,
        Answer::ServerError,
        Answer::Slow,
        Answer::NotJson,
    ] {
        assert!(
            model.seen(answer) > 0,
            "the stand-in never played {answer:?}"
        );
    }
    let reasons: Vec<String> = reasons.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let refused: Vec<String> = refused
        .iter()
        .map(|(status, n)| format!("{n} × {status}"))
        .collect();
    println!(
        "llm_faults: {} tasks ({PRODUCED} produced, {} of {POSTED} POSTs accepted, refused: {}): \
         {completed} completed, {failed} failed ({}) in {:.1} s; 0 lost, 0 duplicates; \
         stand-in saw {requests} requests ({} 429s, {} 500s, {} slow, {} non-JSON) and \
         {hopeless_requests} for the hopeless task",
        expected,
        accepted.len(),
        if refused.is_empty() {
            "none".to_owned()
        } else {
            refused.join(", ")
        },
        if reasons.is_empty() {
            "none".to_owned()
        } else {
            reasons.join(", ")
        },
        elapsed.as_secs_f64(),
        model.seen(Answer::RateLimited),
        model.seen(Answer::ServerError),
        model.seen(Answer::Slow),
        model.seen(Answer::NotJson),
    );
}

/// Tasks put before a provider that serves [`PROVIDER_CAPACITY`] requests at once.
const CAPPED_TASKS: usize = 60;
/// Requests the capped provider serves at once; one more is answered 429 with
/// `Retry-After: 1`.
const PROVIDER_CAPACITY: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_refuses_past_eight_requests_at_once_gets_the_limit_it_serves_and_every_task_completes()
 {
    use std::future::IntoFuture;

    use pipeline_bench::stand_in::{Config, Stats, router};

    let broker = Broker::start();
    let stats = Arc::new(Stats::default());
    let provider = router(
        Config {
            delay: Duration::from_millis(100),
            max_concurrent: Some(PROVIDER_CAPACITY),
            ..Config::default()
        },
        Arc::clone(&stats),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port for the provider");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(axum::serve(listener, provider).into_future());
    // Four times the provider's capacity at first: without the adaptive limit most
    // requests would be refused again and again, and tasks would fail after their
    // retries.
    let system = System::start(
        &broker.bootstrap(),
        &format!("http://{address}/v1"),
        &[("OPENAI_INITIAL_CONCURRENCY", "32")],
    )
    .await;
    let events = system.settings.kafka.topics.clone().events;
    let ids = e2e::produce_tasks(&broker.bootstrap(), &events, CAPPED_TASKS).await;

    let list = system
        .wait_for_results(Duration::from_secs(120), |list| {
            list.finished().len() >= CAPPED_TASKS
        })
        .await;
    let finished = list.finished();
    let failed: Vec<&&TaskView> = finished
        .iter()
        .filter(|t| t.status != TaskStatus::Completed)
        .collect();
    assert!(failed.is_empty(), "tasks failed: {failed:#?}");
    let done: HashSet<String> = finished.iter().map(|t| t.task_id.to_string()).collect();
    assert!(
        ids.iter().all(|id| done.contains(id)),
        "every task completed"
    );

    let health = system.health(&system.solver).await.ok();
    let limit = &health.details["llm_concurrency"];
    let report = stats.report();
    assert!(
        report.rate_limited >= 1 && limit["decreases"].as_u64() >= Some(1),
        "the provider refused and the limit came down: {limit}, {report:?}"
    );
    assert!(
        limit["limit"].as_u64() <= Some(2 * PROVIDER_CAPACITY),
        "the limit settled near the provider's capacity: {limit}"
    );
    assert_eq!(
        report.answered,
        2 * CAPPED_TASKS as u64,
        "plan and solve answered once per task: {report:?}"
    );
}
