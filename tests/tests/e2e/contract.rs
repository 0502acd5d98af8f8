//! The services keep the contract their OpenAPI documents state: schemathesis (from
//! `.venv`, `scripts/requirements-contract.txt`) reads each running service's
//! `/openapi.json` and sends it cases generated from the document — valid ones and
//! invalid ones, with and without the API key — and checks every answer (`--checks
//! all`): no 5xx, a status, content type, headers and body the document allows, invalid
//! input refused with a 4xx, valid input accepted, a route needing a key refusing none.
//! The three services run on a real broker (Tansu) with the OpenAI stand-in. The
//! documents themselves are checked against the official OpenAPI 3.1 schema
//! (`openapi-spec-validator`, offline).
//!
//! Outside CI a venv without schemathesis is skipped with a loud SKIPPED line; under
//! `CI=true` it fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use e2e::{Broker, LlmStandIn, System, repo_root, venv};

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

/// Runs schemathesis against the document of the service at `base`, for at most
/// `seconds`; its output, after asserting that every check passed.
fn schemathesis(tool: &Path, service: &str, base: &str, seconds: u32) -> String {
    let seed = std::env::var("CONTRACT_SEED").unwrap_or_else(|_| "20261201".into());
    let started = Instant::now();
    let output = Command::new(tool)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {KEY}")])
        .args(["--max-examples", "25"])
        .args(["--max-time", &seconds.to_string()])
        .args(["--request-timeout", "10"])
        .args(["--workers", "2"])
        .args(["--seed", &seed])
        .args(["--suppress-health-check", "all"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "--- schemathesis, {service} ({:.1} s, seed {seed}) ---\n{text}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found answers of {service} that break its OpenAPI document \
         (exit {:?}); its report is above",
        output.status.code()
    );
    text
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
    let bases = [
        ("task-generator", system.generator.clone(), 25),
        ("agent-comms", system.comms.clone(), 15),
        ("task-solver", system.solver.clone(), 5),
    ];
    // schemathesis blocks; the services run on this runtime's threads meanwhile.
    let reports = tokio::task::spawn_blocking(move || {
        bases
            .into_iter()
            .map(|(service, base, seconds)| (service, schemathesis(&bin, service, &base, seconds)))
            .collect::<Vec<_>>()
    })
    .await
    .expect("schemathesis ran");
    for (service, report) in &reports {
        let summary: Vec<&str> = report
            .lines()
            .filter(|line| {
                let line = line.to_ascii_lowercase();
                line.contains("operations") || line.contains("test cases")
            })
            .collect();
        eprintln!("{service}: {}", summary.join(" | "));
        assert!(!summary.is_empty(), "{service}: no summary in the report");
    }
}
