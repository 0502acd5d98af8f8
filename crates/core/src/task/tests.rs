use super::*;
use proptest::prelude::*;

fn fixed_id() -> Uuid {
    Uuid::from_u128(42)
}

#[test]
fn plain_python_task_is_accepted_and_given_an_id() {
    let json = br#"{"task_name": "Write docs", "task_description": "Document the API", "context": "User: please"}"#;
    let task = Task::from_json(json, fixed_id).expect("plain task parses");
    assert_eq!(task.task_id, fixed_id());
    assert_eq!(task.task_name, "Write docs");
    assert_eq!(task.context, "User: please");
    assert_eq!(task.source, None);
}

#[test]
fn full_task_round_trips_and_keeps_its_id() {
    let task = Task::new("n", "d", "c").expect("valid");
    let bytes = serde_json::to_vec(&task).expect("serializes");
    let back = Task::from_json(&bytes, fixed_id).expect("parses");
    assert_eq!(back, task);
}

#[test]
fn non_string_context_is_kept_as_json_text() {
    let json = br#"{"task_name": "a", "task_description": "b", "context": {"k": [1, 2]}}"#;
    let task = Task::from_json(json, fixed_id).expect("parses");
    assert_eq!(task.context, r#"{"k":[1,2]}"#);
    let json = br#"{"task_name": "a", "task_description": "b", "context": null}"#;
    assert_eq!(Task::from_json(json, fixed_id).expect("parses").context, "");
}

#[test]
fn empty_and_oversized_names_are_rejected_naming_the_field() {
    let err = Task::new("   ", "d", "").expect_err("blank name");
    assert_eq!(err.to_string(), "invalid task_name: must not be empty");
    let err = Task::new("x".repeat(MAX_NAME_CHARS + 1), "d", "").expect_err("long name");
    assert!(
        err.to_string()
            .starts_with("invalid task_name: has 201 characters")
    );
    let err = Task::new("n", "", "").expect_err("empty description");
    assert!(err.to_string().contains("task_description"));
    let err = Task::new("n", "d", "c".repeat(MAX_CONTEXT_CHARS + 1)).expect_err("long context");
    assert!(err.to_string().contains("context"));
}

#[test]
fn name_of_exactly_the_limit_in_multibyte_chars_is_accepted() {
    let name = "é".repeat(MAX_NAME_CHARS);
    assert!(Task::new(name, "d", "").is_ok());
}

#[test]
fn missing_fields_and_wrong_types_are_json_errors() {
    for bad in [
        &br#"{"task_description": "d"}"#[..],
        br#"{"task_name": 3, "task_description": "d"}"#,
        br#"[1, 2]"#,
        b"not json",
    ] {
        assert!(matches!(
            Task::from_json(bad, fixed_id),
            Err(Error::Json(_))
        ));
    }
}

#[test]
fn id_for_offset_is_deterministic_and_position_specific() {
    let a = Task::id_for_offset("t", 0, 7);
    assert_eq!(a, Task::id_for_offset("t", 0, 7));
    assert_ne!(a, Task::id_for_offset("t", 1, 7));
    assert_ne!(a, Task::id_for_offset("t", 0, 8));
}

#[test]
fn results_validate_status_and_companion_field() {
    let task = Task::new("n", "d", "").expect("valid");
    let now = Utc::now();
    let done = TaskResult::completed(&task, "42", "solver-1", now, TokenUsage::default());
    assert_eq!(done.status, TaskStatus::Completed);
    done.validate().expect("completed is valid");
    let failed = TaskResult::failed(&task, "boom", "solver-1", now, TokenUsage::default());
    failed.validate().expect("failed is valid");
    let bytes = serde_json::to_vec(&failed).expect("serializes");
    assert_eq!(TaskResult::from_json(&bytes).expect("parses"), failed);

    let mut bad = done.clone();
    bad.result = None;
    assert!(
        bad.validate()
            .expect_err("no result")
            .to_string()
            .contains("result")
    );
    let mut bad = done;
    bad.status = TaskStatus::Pending;
    assert!(bad.validate().is_err());
}

#[test]
fn an_interrupted_result_carries_its_interrupt_and_only_it_does() {
    let task = Task::new("n", "d", "").expect("valid");
    let interrupt = TaskInterrupt {
        id: "review:1#0".into(),
        node: "review".into(),
        value: serde_json::json!({"plan": "1. Do it."}),
    };
    let paused = TaskResult::interrupted(
        &task,
        interrupt.clone(),
        "solver-1",
        Utc::now(),
        TokenUsage::default(),
    );
    paused.validate().expect("interrupted is valid");
    assert!(!paused.status.is_final());
    let json = serde_json::to_value(&paused).expect("serializes");
    assert_eq!(json["status"], "interrupted");
    assert_eq!(json["interrupt"]["value"]["plan"], "1. Do it.");
    assert!(
        json.get("result").is_none() && json.get("error").is_none(),
        "{json}"
    );
    let bytes = serde_json::to_vec(&paused).expect("serializes");
    assert_eq!(TaskResult::from_json(&bytes).expect("parses"), paused);

    let mut bare = paused.clone();
    bare.interrupt = None;
    let err = bare.validate().expect_err("no interrupt").to_string();
    assert!(err.contains("interrupt"), "{err}");
    let mut done = TaskResult::completed(&task, "42", "s", Utc::now(), TokenUsage::default());
    done.interrupt = Some(interrupt.clone());
    let err = done
        .validate()
        .expect_err("a final result with an interrupt")
        .to_string();
    assert!(err.contains("only an interrupted result"), "{err}");
    let mut huge = paused;
    huge.interrupt = Some(TaskInterrupt {
        value: serde_json::json!("x".repeat(MAX_INTERRUPT_VALUE_BYTES)),
        ..interrupt
    });
    let err = huge.validate().expect_err("too large").to_string();
    assert!(err.contains("interrupt.value"), "{err}");
}

#[test]
fn human_review_is_read_when_given_and_written_only_when_true() {
    let plain = Task::from_json(
        br#"{"task_name": "n", "task_description": "d"}"#,
        Uuid::new_v4,
    )
    .expect("the Python system's task");
    assert!(!plain.human_review);
    let json = serde_json::to_value(&plain).expect("serializes");
    assert!(json.get("human_review").is_none(), "{json}");
    let reviewed = Task::from_json(
        br#"{"task_name": "n", "task_description": "d", "human_review": true}"#,
        Uuid::new_v4,
    )
    .expect("a task asking for review");
    assert!(reviewed.human_review);
    let json = serde_json::to_value(&reviewed).expect("serializes");
    assert_eq!(json["human_review"], true);
    assert!(
        Task::from_json(
            br#"{"task_name": "n", "task_description": "d", "human_review": "yes"}"#,
            Uuid::new_v4
        )
        .is_err(),
        "only a boolean"
    );
}

#[test]
fn status_parses_from_its_wire_name() {
    for status in [
        TaskStatus::Pending,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Interrupted,
    ] {
        assert_eq!(
            status.as_str().parse::<TaskStatus>().expect("parses"),
            status
        );
        assert_eq!(
            serde_json::to_value(status).expect("serializes"),
            serde_json::json!(status.as_str())
        );
    }
    assert!("done".parse::<TaskStatus>().is_err());
}

/// The schemas in `docs/schemas/` match the types; `UPDATE_SCHEMAS=1` rewrites them.
#[test]
fn json_schemas_in_docs_are_up_to_date() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas");
    for (file, schema) in [
        ("task.json", task_schema()),
        ("task-result.json", task_result_schema()),
        ("llm-task.json", llm_task_schema()),
        ("task-progress.json", super::progress_schema()),
    ] {
        let text = serde_json::to_string_pretty(&schema).expect("serializes") + "\n";
        let path = dir.join(file);
        if std::env::var_os("UPDATE_SCHEMAS").is_some() {
            std::fs::create_dir_all(&dir).expect("creates docs/schemas");
            std::fs::write(&path, &text).expect("writes schema");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            on_disk,
            text,
            "{} is stale: run `UPDATE_SCHEMAS=1 cargo test -p agent-core`",
            path.display()
        );
    }
}

#[test]
fn task_schema_requires_the_core_fields() {
    let schema = task_schema();
    let required = schema["required"].as_array().expect("required list");
    for field in ["task_id", "task_name", "task_description", "created_at"] {
        assert!(
            required.contains(&serde_json::json!(field)),
            "{field} required"
        );
    }
}

proptest! {
    /// Any name, description and context within bounds survives a JSON round trip
    /// unchanged (apart from trimming), and anything out of bounds is rejected.
    #[test]
    fn validation_matches_bounds(name in "\\PC{0,210}", description in "\\PC{0,40}", context in "\\PC{0,40}") {
        let trimmed = name.trim();
        let ok = !trimmed.is_empty()
            && trimmed.chars().count() <= MAX_NAME_CHARS
            && !description.trim().is_empty();
        match Task::new(name.clone(), description.clone(), context.clone()) {
            Ok(task) => {
                prop_assert!(ok);
                prop_assert_eq!(&task.task_name, trimmed);
                let bytes = serde_json::to_vec(&task).expect("serializes");
                prop_assert_eq!(Task::from_json(&bytes, fixed_id).expect("parses"), task);
            }
            Err(err) => {
                prop_assert!(!ok, "rejected a valid task: {}", err);
            }
        }
    }
}
