//! Tests of the settings: defaults, the environment, validation, secrets.

use secrecy::ExposeSecret;

use super::*;
use crate::{
    http::HttpLimits,
    kafka::{SaslMechanism, SecurityProtocol},
};

#[test]
fn a_config_file_that_is_not_toml_is_reported_by_line_never_quoted() {
    let path = std::env::temp_dir().join(format!("lgk-config-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "port = 8001\nopenai_api_key = \"sk-in-the-file-secret\n",
    )
    .expect("write");
    let err = check_toml(&path.display().to_string())
        .expect_err("unterminated string")
        .to_string();
    let _ = std::fs::remove_file(&path);
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("sk-in-the-file"), "secret quoted: {err}");
}

#[test]
fn a_value_of_the_wrong_type_is_named_by_variable_never_quoted() {
    let err = Settings::from_vars([("PORT", "sk-typed-in-the-wrong-place")])
        .expect_err("not a port")
        .to_string();
    assert!(err.contains("PORT: invalid type"), "{err}");
    assert!(!err.contains("sk-typed"), "value quoted: {err}");
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let s = Settings::from_vars([]).expect("defaults are valid");
    assert_eq!(s.kafka.bootstrap_servers, "localhost:9092");
    assert_eq!(s.llm.model, "gpt-4o-mini");
    assert_eq!(s.kafka.partitions, 3);
    let topics = s.kafka.topics;
    assert_eq!(topics.events, "dev-langgraph-agent-events");
    assert_eq!(topics.results, "dev-langgraph-task-results");
    assert_eq!(topics.dead_letter, "dev-langgraph-dead-letter");
}

#[test]
fn environment_overrides_defaults() {
    let s = Settings::from_vars([
        ("KAFKA_TOPIC_PREFIX", "prod"),
        ("KAFKA_RESULTS_TOPIC", "custom-results"),
        ("KAFKA_PARTITIONS", "6"),
        ("OPENAI_API_KEY", "sk-123"),
        ("PORT", "9000"),
    ])
    .expect("valid");
    assert_eq!(s.kafka.topics.events, "prod-langgraph-agent-events");
    assert_eq!(s.kafka.topics.results, "custom-results");
    assert_eq!(s.kafka.partitions, 6);
    assert_eq!(s.http.port_or(8001), 9000);
    assert_eq!(
        s.llm.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
        Some("sk-123".to_owned())
    );
    assert!(
        !format!("{s:?}").contains("sk-123"),
        "secret leaked into Debug"
    );
}

#[test]
fn a_bad_value_names_the_variable() {
    let err = Settings::from_vars([("KAFKA_PARTITIONS", "three")]).expect_err("not a number");
    assert!(err.to_string().contains("KAFKA_PARTITIONS"), "{err}");
    let err = Settings::from_vars([("PORT", "70000")]).expect_err("out of range");
    assert!(err.to_string().contains("PORT"), "{err}");
    let err = Settings::from_vars([("CHECKPOINTER", "redis")]).expect_err("bad choice");
    assert_eq!(
        err.to_string(),
        "configuration error: CHECKPOINTER must be `memory`, `sqlite` or `postgres`"
    );
    let err = Settings::from_vars([("CHECKPOINTER", "postgres")]).expect_err("no URL");
    assert_eq!(
        err.to_string(),
        "configuration error: DATABASE_URL must be set when CHECKPOINTER=postgres"
    );
    let s = Settings::from_vars([("DISABLECHECKPOINTER", "true")]).expect("valid");
    assert!(s.solver.checkpointer == CheckpointerKind::Disabled);
    let err = Settings::from_vars([("LOG_FORMAT", "xml")]).expect_err("bad choice");
    assert_eq!(
        err.to_string(),
        "configuration error: LOG_FORMAT must be `pretty` or `json`"
    );
    let err = Settings::from_vars([("KAFKA_TOPIC", "bad topic!")]).expect_err("bad name");
    assert!(err.to_string().contains("KAFKA_TOPIC must be"), "{err}");
    let err = Settings::from_vars([("OPENAI_BASE_URL", "localhost:8080")]).expect_err("no scheme");
    assert!(err.to_string().contains("OPENAI_BASE_URL"), "{err}");
    let err = Settings::from_vars([("SOLVER_CONCURRENCY", "0")]).expect_err("zero");
    assert_eq!(
        err.to_string(),
        "configuration error: SOLVER_CONCURRENCY must be at least 1"
    );
    let err = Settings::from_vars([("TASK_DEADLINE_SECS", "0")]).expect_err("zero");
    assert!(err.to_string().contains("TASK_DEADLINE_SECS"), "{err}");
    for (var, value) in [
        ("OPENAI_INITIAL_CONCURRENCY", "0"),
        ("OPENAI_MAX_CONCURRENCY", "0"),
        ("KAFKA_LINGER_MS", "5000"),
        ("KAFKA_FETCH_WAIT_MAX_MS", "0"),
        ("HTTP_HEADER_READ_TIMEOUT_SECS", "0"),
        ("HTTP_KEEP_ALIVE_TIMEOUT_SECS", "0"),
        ("HTTP_BODY_READ_TIMEOUT_SECS", "0"),
        ("HTTP_MAX_CONNECTIONS", "0"),
        ("HTTP_MAX_CONNECTIONS", "2000000"),
        ("HTTP_SHUTDOWN_GRACE_SECS", "-1"),
    ] {
        let err = Settings::from_vars([(var, value)]).expect_err("out of range");
        assert!(err.to_string().contains(var), "{var}: {err}");
    }
    let s = Settings::from_vars([("SOLVER_CONCURRENCY", "16"), ("TASK_DEADLINE_SECS", "90")])
        .expect("valid");
    assert_eq!(
        (s.solver.concurrency, s.solver.task_deadline),
        (16, Duration::from_secs(90))
    );
}

#[test]
fn http_limits_default_and_read_from_the_environment() {
    let limits = Settings::from_vars([]).expect("defaults").http.limits;
    assert_eq!(
        limits,
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 2048,
            shutdown_grace: Duration::from_secs(10),
        }
    );
    let limits = Settings::from_vars([
        ("HTTP_HEADER_READ_TIMEOUT_SECS", "2"),
        ("HTTP_KEEP_ALIVE_TIMEOUT_SECS", "3"),
        ("HTTP_BODY_READ_TIMEOUT_SECS", "4"),
        ("HTTP_MAX_CONNECTIONS", "5"),
        ("HTTP_SHUTDOWN_GRACE_SECS", "0"),
    ])
    .expect("valid")
    .http
    .limits;
    assert_eq!(
        limits,
        HttpLimits {
            header_read_timeout: Duration::from_secs(2),
            keep_alive_timeout: Duration::from_secs(3),
            body_read_timeout: Duration::from_secs(4),
            max_connections: 5,
            shutdown_grace: Duration::ZERO,
        }
    );
}

const SASL: [(&str, &str); 3] = [
    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
    ("KAFKA_SASL_USERNAME", "svc-langgraph"),
    ("KAFKA_SASL_PASSWORD", "pa55-w0rd-secret"),
];

fn config_error(vars: &[(&str, &str)]) -> String {
    Settings::from_vars(vars.iter().copied())
        .expect_err("an invalid combination")
        .to_string()
}

#[test]
fn kafka_security_defaults_to_plaintext() {
    let s = Settings::from_vars([]).expect("defaults are valid");
    assert_eq!(s.kafka.security_protocol, SecurityProtocol::Plaintext);
    assert_eq!(s.kafka.sasl_mechanism, None);
    assert!(s.kafka.sasl_username.is_none() && s.kafka.sasl_password.is_none());
    assert!(s.kafka.ssl_ca_location.is_none());
}

#[test]
fn kafka_security_names_are_read_in_any_case() {
    let s = Settings::from_vars([
        ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
        ("KAFKA_SASL_MECHANISM", "scram-sha-256"),
        ("KAFKA_SASL_USERNAME", "svc"),
        ("KAFKA_SASL_PASSWORD", "secret"),
    ])
    .expect("valid");
    assert_eq!(s.kafka.security_protocol, SecurityProtocol::SaslPlaintext);
    assert_eq!(s.kafka.mechanism(), SaslMechanism::ScramSha256);

    let s = Settings::from_vars(SASL).expect("valid");
    assert_eq!(s.kafka.sasl_mechanism, None);
    assert_eq!(
        s.kafka.mechanism(),
        SaslMechanism::ScramSha512,
        "the default"
    );
}

#[test]
fn credentials_and_paths_are_taken_as_written() {
    // The environment source would read these as the number 123, `true` and 1.5.
    let s = Settings::from_vars([
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_USERNAME", "TRUE"),
        ("KAFKA_SASL_PASSWORD", "0123"),
        ("KAFKA_SSL_CA_LOCATION", "probe"),
        ("OPENAI_API_KEY", "1.50"),
    ])
    .expect("valid");
    assert_eq!(s.kafka.sasl_username.as_deref(), Some("TRUE"));
    let password = s
        .kafka
        .sasl_password
        .as_ref()
        .map(ExposeSecret::expose_secret);
    assert_eq!(password, Some("0123"));
    let key = s.llm.api_key.as_ref().map(ExposeSecret::expose_secret);
    assert_eq!(key, Some("1.50"));
}

#[test]
fn an_unknown_protocol_or_mechanism_names_the_variable() {
    assert_eq!(
        config_error(&[("KAFKA_SECURITY_PROTOCOL", "TLS")]),
        "configuration error: KAFKA_SECURITY_PROTOCOL: must be one of PLAINTEXT, SSL, \
         SASL_PLAINTEXT, SASL_SSL, not `TLS`"
    );
    let mut vars = SASL.to_vec();
    vars.push(("KAFKA_SASL_MECHANISM", "GSSAPI"));
    assert_eq!(
        config_error(&vars),
        "configuration error: KAFKA_SASL_MECHANISM: must be one of PLAIN, SCRAM-SHA-256, \
         SCRAM-SHA-512, not `GSSAPI`"
    );
}

#[test]
fn sasl_needs_a_username_and_a_password() {
    assert_eq!(
        config_error(&[("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")]),
        "configuration error: KAFKA_SASL_USERNAME must be set when KAFKA_SECURITY_PROTOCOL \
         is SASL_SSL"
    );
    assert_eq!(
        config_error(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", ""),
        ]),
        "configuration error: KAFKA_SASL_PASSWORD must be set when KAFKA_SECURITY_PROTOCOL \
         is SASL_PLAINTEXT"
    );
}

#[test]
fn sasl_settings_without_a_sasl_protocol_are_refused() {
    for (var, value) in [
        ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ("KAFKA_SASL_USERNAME", "svc"),
        ("KAFKA_SASL_PASSWORD", "pa55-w0rd-secret"),
    ] {
        for protocol in ["PLAINTEXT", "SSL"] {
            let err = config_error(&[("KAFKA_SECURITY_PROTOCOL", protocol), (var, value)]);
            assert_eq!(
                err,
                format!(
                    "configuration error: {var} is set, but KAFKA_SECURITY_PROTOCOL is \
                     {protocol}: SASL needs SASL_PLAINTEXT or SASL_SSL"
                )
            );
            assert!(
                !err.contains("pa55-w0rd-secret"),
                "secret in the error: {err}"
            );
        }
    }
    // Empty counts as not set (a Secret key left blank, `export VAR=`).
    Settings::from_vars([("KAFKA_SASL_USERNAME", ""), ("KAFKA_SASL_PASSWORD", "")])
        .expect("empty credentials are no credentials");
}

#[test]
fn a_ca_needs_tls_and_must_exist() {
    let here = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for protocol in ["PLAINTEXT", "SASL_PLAINTEXT"] {
        let mut vars = SASL.to_vec();
        vars[0] = ("KAFKA_SECURITY_PROTOCOL", protocol);
        if protocol == "PLAINTEXT" {
            vars.truncate(1);
        }
        vars.push(("KAFKA_SSL_CA_LOCATION", here));
        assert_eq!(
            config_error(&vars),
            format!(
                "configuration error: KAFKA_SSL_CA_LOCATION is set, but \
                 KAFKA_SECURITY_PROTOCOL is {protocol}: a CA is used only with SSL or SASL_SSL"
            )
        );
    }
    assert_eq!(
        config_error(&[
            ("KAFKA_SECURITY_PROTOCOL", "SSL"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ]),
        "configuration error: KAFKA_SSL_CA_LOCATION names no file or directory: \
         /nonexistent/ca.pem"
    );
    let s = Settings::from_vars([
        ("KAFKA_SECURITY_PROTOCOL", "SSL"),
        ("KAFKA_SSL_CA_LOCATION", here),
    ])
    .expect("an existing file");
    assert_eq!(s.kafka.ssl_ca_location.as_deref(), Some(here));
}

#[test]
fn the_sasl_password_stays_out_of_debug() {
    let s = Settings::from_vars(SASL).expect("valid");
    let debug = format!("{s:?}");
    assert!(debug.contains("svc-langgraph"), "{debug}");
    assert!(
        !debug.contains("pa55-w0rd-secret"),
        "secret leaked into Debug: {debug}"
    );
}

#[test]
fn an_empty_environment_gives_the_sections_defaults() {
    let read = Settings::from_vars([]).expect("defaults are valid");
    assert_eq!(format!("{read:?}"), format!("{:?}", Settings::default()));
}

#[test]
fn checkpointer_sqlite_needs_no_database_and_data_dir_is_shared_by_the_services() {
    let s = Settings::from_vars([("CHECKPOINTER", "sqlite")]).expect("valid");
    assert_eq!(s.solver.checkpointer, CheckpointerKind::Sqlite);
    assert_eq!(s.solver.checkpointer.as_str(), "sqlite");
    assert_eq!(s.data_dir, std::path::Path::new("data"));
    let s = Settings::from_vars([("CHECKPOINTER", "sqlite"), ("DATA_DIR", "/var/lib/lgk")])
        .expect("valid");
    assert_eq!(s.data_dir, std::path::Path::new("/var/lib/lgk"));
}

#[test]
fn disablecheckpointer_wins_over_checkpointer_but_a_bad_checkpointer_is_still_refused() {
    let s = Settings::from_vars([
        ("DISABLECHECKPOINTER", "true"),
        ("CHECKPOINTER", "postgres"),
    ])
    .expect("disabled needs no DATABASE_URL");
    assert_eq!(s.solver.checkpointer, CheckpointerKind::Disabled);
    let s = Settings::from_vars([
        ("CHECKPOINTER", "postgres"),
        ("DATABASE_URL", "postgres://u:p4ss-word@h/db"),
    ])
    .expect("valid");
    assert_eq!(s.solver.checkpointer.as_str(), "postgres");
    let err = Settings::from_vars([("DISABLECHECKPOINTER", "true"), ("CHECKPOINTER", "redis")])
        .expect_err("bad choice")
        .to_string();
    assert!(err.contains("CHECKPOINTER must be"), "{err}");
}

#[test]
fn a_bad_prefix_is_blamed_on_the_prefix_and_a_bad_name_on_its_variable() {
    let err = Settings::from_vars([("KAFKA_TOPIC_PREFIX", "bad prefix")])
        .expect_err("bad prefix")
        .to_string();
    assert!(err.contains("KAFKA_TOPIC_PREFIX must be"), "{err}");
    let err = Settings::from_vars([("KAFKA_RESULTS_TOPIC", "..")])
        .expect_err("bad name")
        .to_string();
    assert!(err.contains("KAFKA_RESULTS_TOPIC must be"), "{err}");
}

#[test]
fn cors_origins_are_off_by_default_read_from_the_environment_and_checked() {
    for vars in [vec![], vec![("CORS_ALLOW_ORIGINS", "")]] {
        let s = Settings::from_vars(vars).expect("valid");
        assert_eq!(s.http.cors_allow_origins, None, "no CORS headers");
    }
    let s = Settings::from_vars([(
        "CORS_ALLOW_ORIGINS",
        "http://localhost:3000,https://app.example.com",
    )])
    .expect("valid");
    assert_eq!(
        s.http.cors_allow_origins.as_deref(),
        Some("http://localhost:3000,https://app.example.com")
    );
    let s = Settings::from_vars([("CORS_ALLOW_ORIGINS", "*")]).expect("any origin");
    assert_eq!(s.http.cors_allow_origins.as_deref(), Some("*"));
    assert_eq!(
        config_error(&[("CORS_ALLOW_ORIGINS", "http://localhost:3000/")]),
        "configuration error: CORS_ALLOW_ORIGINS: entry 1 (`http://localhost:3000/`) must be \
         an origin as a browser sends it: scheme://host[:port], in lower case, without path, \
         trailing slash or default port: `http://localhost:3000`?"
    );
    assert_eq!(
        config_error(&[("CORS_ALLOW_ORIGINS", "http://a.test,,")]),
        "configuration error: CORS_ALLOW_ORIGINS: entry 2 is empty"
    );
}
