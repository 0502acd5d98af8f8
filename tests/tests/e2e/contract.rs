//! The services keep the contract their OpenAPI documents state: schemathesis (from
//! `.venv`, `scripts/requirements-contract.txt`) reads each running service's
//! `/openapi.json` and sends it cases generated from the document — valid ones and
//! invalid ones, with and without the API key — and checks every answer (`--checks
//! all`): no 5xx, a status, content type, headers and body the document allows (each
//! event of a `text/event-stream` answer against the document's event schema), invalid
//! input refused with a 4xx, valid input accepted, a route needing a key refusing none.
//! The three services run on a real broker (Tansu) with the OpenAI stand-in. The
//! documents themselves are checked against the official OpenAPI 3.1 schema
//! (`openapi-spec-validator`, offline).
//!
//! Each service's run is bounded by a time budget (`--max-time`);
//! `tests/contract/<service>.toml`, where there is one, holds settings of that service's
//! operations (task-generator's bounds its event streams; see there why). Its JSON report and what `st replay <id>`
//! needs are left in `<target>/e2e-artifacts/contract/<service>/`; `CONTRACT_SEED`
//! changes the seed.
//!
//! Outside CI a venv without schemathesis is skipped with a loud SKIPPED line; under
//! `CI=true` it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use e2e::{Broker, LlmStandIn, System, artifacts_dir, repo_root, venv};
use serde_json::Value;

/// The API key the services run with; schemathesis sends it.
const KEY: &str = "contract-test-key-0001";

/// The tool `name` of the venv, or `None` (after a loud SKIPPED line) when it is missing
/// outside CI.
///
/// # Panics
/// Under `CI=true` when it is missing.
fn tool_or_skip(name: &str) -> Option<PathBuf> {
    let path = venv().join("bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "no {name} for the contract test (CI=true): {} missing; run scripts/bootstrap.sh",
        path.display()
    );
    eprintln!(
        "\n*** SKIPPED: no {name} ({} missing); scripts/bootstrap.sh (make bootstrap) \
         installs it ***\n",
        path.display()
    );
    None
}

/// What one schemathesis run found, from its JSON report (`--report json`).
#[derive(Debug)]
struct Run {
    service: &'static str,
    /// Operations in the document.
    operations: u64,
    /// Operations schemathesis sent cases to.
    tested: u64,
    /// Test cases generated (and sent) in all phases.
    cases: u64,
    /// `"<code> <title>: <count> (<operations>)"` of each kind of failure.
    failures: Vec<String>,
    /// `"<title>: <count>"` of each error (a case that could not be run).
    errors: Vec<String>,
    /// schemathesis's exit code.
    exit: Option<i32>,
    seconds: f64,
}

impl Run {
    fn passed(&self) -> bool {
        self.exit == Some(0)
            && self.failures.is_empty()
            && self.errors.is_empty()
            && self.tested == self.operations
            && self.cases > 0
    }
}

/// Runs schemathesis against the document of the service at `base`, with a budget of
/// `seconds`; what its report says. Its full output goes to stderr.
fn schemathesis(tool: &Path, service: &'static str, base: &str, seconds: u32) -> Run {
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| "20261201".into());
    let dir = artifacts_dir("contract").join(service);
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let mut command = Command::new(tool);
    let config = repo_root().join(format!("tests/contract/{service}.toml"));
    if config.is_file() {
        command.arg("--config-file").arg(config);
    }
    let started = Instant::now();
    let output = command
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args(["--max-examples", "25"])
        .args(["--max-time", &seconds.to_string()])
        .args(["--request-timeout", "10"])
        // One worker: reproducible from the seed, and clear of a CPython 3.11 race
        // (`ast.parse` in two threads: "AST constructor recursion depth mismatch",
        // which hypothesis hits describing a filter) seen with two.
        .args(["--workers", "1"])
        .args(["--seed", &seed])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "json"])
        .arg("--report-json-path")
        .arg(&report)
        .arg("--no-color")
        // Its example database and replay cases stay with the report.
        .current_dir(&dir)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("schemathesis runs");
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "--- schemathesis, {service} ({seconds:.1} s, seed {seed}) ---\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|err| panic!("{service}: no report at {}: {err}", report.display()));
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    let count = |pointer: &str| report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let listed = |key: &str, line: fn(&Value) -> String| -> Vec<String> {
        report[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(line)
            .collect()
    };
    Run {
        service,
        operations: count("/operations/selected"),
        tested: count("/operations/tested"),
        cases: count("/test_cases/generated"),
        failures: listed("failures", |f| {
            format!(
                "{} {}: {} ({})",
                f["code"].as_str().unwrap_or_default(),
                f["title"].as_str().unwrap_or_default(),
                f["count"],
                f["operations"]
            )
        }),
        errors: listed("errors", |e| {
            format!(
                "{}: {}",
                e["title"].as_str().unwrap_or_default(),
                e["count"]
            )
        }),
        exit: output.status.code(),
        seconds,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_as_its_openapi_document_says() {
    let Some(schemathesis_bin) = tool_or_skip("schemathesis") else {
        return;
    };
    let Some(validator) = tool_or_skip("openapi-spec-validator") else {
        return;
    };
    for service in ["task-generator", "agent-comms", "task-solver"] {
        let file = repo_root()
            .join("docs/openapi")
            .join(format!("{service}.json"));
        let output = Command::new(&validator)
            .arg(&file)
            .output()
            .expect("openapi-spec-validator runs");
        assert!(
            output.status.success(),
            "{} is not a valid OpenAPI 3.1 document: {}{}",
            file.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(
        &broker.bootstrap(),
        &llm.base_url(),
        // A durable checkpointer, so `human_review: true` is a valid request.
        &[("API_KEYS", KEY), ("CHECKPOINTER", "sqlite")],
    )
    .await;
    let bin = schemathesis_bin.clone();
    // Budgets by how much each document holds (8, 7 and 3 operations).
    let bases = [
        ("task-generator", system.generator.clone(), 30),
        ("agent-comms", system.comms.clone(), 25),
        ("task-solver", system.solver.clone(), 5),
    ];
    // schemathesis blocks; the services run on this runtime's threads meanwhile.
    let runs = tokio::task::spawn_blocking(move || {
        bases
            .into_iter()
            .map(|(service, base, seconds)| schemathesis(&bin, service, &base, seconds))
            .collect::<Vec<_>>()
    })
    .await
    .expect("schemathesis ran");
    for run in &runs {
        eprintln!(
            "{}: {}/{} operations tested, {} test cases, {} failures, {} errors, exit {:?}, \
             {:.1} s",
            run.service,
            run.tested,
            run.operations,
            run.cases,
            run.failures.len(),
            run.errors.len(),
            run.exit,
            run.seconds
        );
    }
    let broken: Vec<&Run> = runs.iter().filter(|run| !run.passed()).collect();
    assert!(
        broken.is_empty(),
        "schemathesis found answers that break the OpenAPI documents (reports above, and in \
         {}): {broken:#?}",
        artifacts_dir("contract").display()
    );
}
