//! `GET /metrics` on a running system: Prometheus' text format, with the HTTP requests
//! counted by route template and status.

use e2e::{Broker, LlmStandIn, System};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_of_a_task_by_route_template() {
    let broker = Broker::start();
    let llm = LlmStandIn::healthy().await;
    let system = System::start(&broker.bootstrap(), &llm.base_url(), &[]).await;
    let task = system
        .generate_task(json!("User: help me with my project"))
        .await
        .ok();
    let id = task.task_id.to_string();
    system
        .wait_for_result(&id, std::time::Duration::from_secs(60))
        .await;

    for base in [&system.generator, &system.solver] {
        let response = system
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "{base}");
        let text = response.text().await.expect("text");
        // The services of this test share one process, so one recorder.
        for series in [
            r#"http_requests_total{method="POST",route="/generate-task",status="200"}"#,
            r#"http_requests_total{method="GET",route="/task-result/{task_id}",status="200"}"#,
            r#"http_request_duration_seconds_count{method="POST",route="/generate-task",status="200"}"#,
        ] {
            assert!(text.contains(series), "{base}: no {series} in\n{text}");
        }
        assert!(!text.contains(&id), "no task id as a label");
    }
}
