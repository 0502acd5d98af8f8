//! Each service describes itself: an OpenAPI 3.1 document generated from the code
//! (`utoipa`), served as `GET /openapi.json`, and Swagger UI at `GET /docs`, served from
//! the binary (the `utoipa-swagger-ui-vendored` copy: no CDN, works offline).
//!
//! A service builds its document with [`document`] from its own routes' document; this
//! adds what every service shares: `/health`, `/ready` and `/metrics`, the [`ErrorBody`]
//! of every error answer and the errors any route may give (408, 500), the API-key
//! security scheme ([`SECURITY_SCHEME`]) and the answers of a route that needs a key
//! (401). [`routes`] serves it, open like `/health`. The documents are also kept in
//! `docs/openapi/`, checked against the code by each service's tests.

use std::sync::{Arc, OnceLock};

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use utoipa::{
    OpenApi, PartialSchema, ToSchema,
    openapi::{
        self, ContentBuilder, RefOr, ResponseBuilder, Tag,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};
use utoipa_swagger_ui::Config;

use super::ApiError;

/// The name of the security scheme of the API key (`Authorization: Bearer <key>`,
/// `API_KEYS`), as operations name it in their `security`.
pub const SECURITY_SCHEME: &str = "api_key";

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

/// Every error answer: `{"error": {"code", "message"}}` ([`ApiError`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "missing field `conversation_history`"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `request_timeout`, `conflict`, `payload_too_large`,
    /// `uri_too_long`, `unsupported_media_type`, `validation_failed`, `headers_too_large`,
    /// `too_many_requests`, `bad_gateway`, `unavailable`, `gateway_timeout`, `catching_up`
    /// or `internal`.
    #[schema(example = "validation_failed")]
    pub code: String,
    /// For people; never a secret, never a stack trace (`internal error` for a 500).
    pub message: String,
}

/// The document of `service` (e.g. `task-generator`): `api` (its own routes) with
/// `/health`, `/ready` and `/metrics`, the shared error shape and errors, and the
/// API-key scheme. `description` opens the document's `info`.
///
/// Every operation of `api` that names [`SECURITY_SCHEME`] in its `security` gets the
/// 401 answer of a missing or wrong key; every operation gets 408 (the request timeout)
/// and 500 (a bug: a panic or an unexpected error), with [`ErrorBody`].
pub fn document(service: &str, description: &str, api: openapi::OpenApi) -> openapi::OpenApi {
    let mut doc = api.merge_from(super::health::HealthApi::openapi());
    doc.openapi = openapi::OpenApiVersion::Version31;
    doc.info = openapi::InfoBuilder::new()
        .title(service)
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(description))
        .license(Some(openapi::License::new("Apache-2.0")))
        .build();
    doc.tags = Some(vec![Tag::new(service), {
        let mut tag = Tag::new("health");
        tag.description = Some("Probes and metrics; never need an API key.".into());
        tag
    }]);
    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = Vec::new();
    ErrorBody::schemas(&mut schemas);
    schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
    components.schemas.extend(schemas);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "A key of `API_KEYS` as `Authorization: Bearer <key>`. Only when the service \
         has `API_KEYS` set; unset, every route is open. `/health`, `/ready`, `/metrics`, \
         `/openapi.json` and `/docs` never need one."
            .into(),
    );
    components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(bearer));
    for item in doc.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let secured = operation.security.as_ref().is_some_and(|requirements| {
                requirements.iter().any(|requirement| {
                    serde_json::to_value(requirement)
                        .ok()
                        .and_then(|value| value.get(SECURITY_SCHEME).cloned())
                        .is_some()
                })
            });
            if secured {
                add_error(
                    operation,
                    401,
                    "No API key, or a wrong one (with `WWW-Authenticate: Bearer`)",
                );
            }
            add_error(
                operation,
                408,
                "The request's head, body or answer did not come in time",
            );
            add_error(operation, 500, "A bug: logged, answered `internal error`");
        }
    }
    doc
}

/// Adds the answer `status` with an [`ErrorBody`] to `operation`, unless it has one.
pub fn add_error(operation: &mut openapi::path::Operation, status: u16, description: &str) {
    let key = status.to_string();
    if operation.responses.responses.contains_key(&key) {
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(openapi::Ref::from_schema_name(
                    ErrorBody::name(),
                ))))
                .build(),
        )
        .build();
    operation
        .responses
        .responses
        .insert(key, RefOr::T(response));
}

/// `document` as pretty JSON with a trailing newline, as kept in `docs/openapi/`.
pub fn to_pretty_json(document: &openapi::OpenApi) -> String {
    let mut text = document
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
    text.push('\n');
    text
}

/// What is wrong with an OpenAPI document, as JSON: an `openapi` that is not 3.1.x, a
/// `$ref` inside the document that leads nowhere, an `operationId` used twice, a
/// `{parameter}` of a path that no operation of it declares. Empty when nothing is.
pub fn problems(document: &serde_json::Value) -> Vec<String> {
    let mut found = Vec::new();
    let version = document["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.1.") {
        found.push(format!("`openapi` is {version:?}, not 3.1.x"));
    }
    let mut refs = Vec::new();
    collect_refs(document, &mut refs);
    for reference in refs {
        let resolved = reference
            .strip_prefix('#')
            .and_then(|pointer| document.pointer(pointer));
        if resolved.is_none() {
            found.push(format!("$ref {reference:?} does not resolve"));
        }
    }
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if let Some(id) = operation["operationId"].as_str()
                && !ids.insert(id.to_owned())
            {
                found.push(format!("operationId {id:?} is used twice"));
            }
            let declared: Vec<&str> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .filter_map(|p| p["name"].as_str())
                .collect();
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                if !declared.contains(&name) {
                    found.push(format!("{method} {path} does not declare `{name}`"));
                }
            }
        }
    }
    found
}

fn collect_refs(value: &serde_json::Value, refs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                match (key.as_str(), field) {
                    ("$ref", serde_json::Value::String(reference)) => refs.push(reference.clone()),
                    _ => collect_refs(field, refs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

/// Checks that `docs/openapi/{service}.json` (from the repository's root) is
/// `document`, as [`to_pretty_json`] writes it, and that `document` has no
/// [`problems`]. With `UPDATE_OPENAPI=1` in the environment, writes the file instead.
/// For each service's drift test; `service` is also its package, named in the messages.
///
/// # Panics
/// When the file differs or is missing (the message says how to regenerate it), when it
/// cannot be written, or when the document has problems.
pub fn check_committed(service: &str, document: &openapi::OpenApi) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/openapi")
        .join(format!("{service}.json"));
    let text = to_pretty_json(document);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let problems = problems(&value);
    assert!(
        problems.is_empty(),
        "the OpenAPI document of {service} is not valid: {problems:#?}"
    );
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
        }
        std::fs::write(&path, &text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != text {
        let line = committed
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || committed.lines().count().min(text.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} is not the OpenAPI document the code of {service} generates (first \
             difference at line {line}); regenerate it with \
             `UPDATE_OPENAPI=1 cargo test -p {service} openapi` and commit it",
            path.display()
        );
    }
}

/// `GET /openapi.json` (`document`) and `GET /docs` (Swagger UI over it, its files under
/// `/docs/`), to merge into a service's router outside the API-key check.
pub fn routes(document: openapi::OpenApi) -> Router {
    let json = Arc::new(document.to_json().unwrap_or_default());
    Router::new()
        .route(
            OPENAPI_PATH,
            get(move || {
                let json = Arc::clone(&json);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        json.as_ref().clone(),
                    )
                }
            }),
        )
        .route(DOCS_PATH, get(docs_page))
        .route(&format!("{DOCS_PATH}/"), get(docs_page))
        .route(&format!("{DOCS_PATH}/{{*file}}"), get(docs_file))
}

/// Swagger UI's configuration: the one document, "Try it out" on, a key typed once kept.
fn config() -> Arc<Config<'static>> {
    static CONFIG: OnceLock<Arc<Config<'static>>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        Arc::new(
            Config::from(OPENAPI_PATH)
                .try_it_out_enabled(true)
                .persist_authorization(true),
        )
    }))
}

/// Swagger UI's page, answered at `/docs` itself (no redirect): a `<base href="/docs/">`
/// makes its relative links find the files under `/docs/`.
async fn docs_page() -> Response {
    match utoipa_swagger_ui::serve("index.html", config()) {
        Ok(Some(file)) => {
            let page = String::from_utf8_lossy(&file.bytes).replacen(
                "<head>",
                &format!("<head>\n  <base href=\"{DOCS_PATH}/\">"),
                1,
            );
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                )],
                page,
            )
                .into_response()
        }
        Ok(None) => ApiError::Internal("Swagger UI has no index.html".into()).into_response(),
        Err(err) => ApiError::Internal(format!("Swagger UI: {err}")).into_response(),
    }
}

/// One file of Swagger UI (`/docs/swagger-ui.css`, …); a JSON 404 for any other.
async fn docs_file(Path(file): Path<String>) -> Response {
    match utoipa_swagger_ui::serve(&file, config()) {
        Ok(Some(found)) => {
            let content_type = HeaderValue::from_str(&found.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                [(header::CONTENT_TYPE, content_type)],
                found.bytes.into_owned(),
            )
                .into_response()
        }
        Ok(None) => ApiError::NotFound(format!("no file {file:?} in the docs")).into_response(),
        Err(err) => ApiError::Internal(format!("Swagger UI: {err}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, uri: &str) -> (u16, String, String) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            content_type,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn docs_answers_the_page_at_its_own_path_and_its_files_below_it() {
        let doc = document("test", "A test.", openapi::OpenApi::default());
        let app = routes(doc);
        let (status, content_type, page) = get(&app, "/docs").await;
        assert_eq!(status, 200);
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(page.contains("<base href=\"/docs/\">"), "{page}");
        assert!(page.contains("swagger-ui"), "{page}");
        for file in ["/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"] {
            let (status, _, body) = get(&app, file).await;
            assert_eq!(status, 200, "{file}");
            assert!(body.len() > 1000, "{file}: {} bytes", body.len());
        }
        let (status, _, initializer) = get(&app, "/docs/swagger-initializer.js").await;
        assert_eq!(status, 200);
        assert!(initializer.contains("/openapi.json"), "{initializer}");
        let (status, _, body) = get(&app, "/docs/no-such-file.js").await;
        assert_eq!(status, 404);
        assert!(body.contains("\"not_found\""), "{body}");
    }

    #[tokio::test]
    async fn the_document_is_openapi_3_1_with_health_errors_and_the_key_scheme() {
        let app = routes(document("test", "A test.", openapi::OpenApi::default()));
        let (status, content_type, body) = get(&app, "/openapi.json").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["title"], "test");
        for path in ["/health", "/ready", "/metrics"] {
            let operation = &doc["paths"][path]["get"];
            assert!(
                operation["responses"]["200"].is_object(),
                "{path}: {operation}"
            );
            assert!(
                operation["responses"]["500"].is_object(),
                "{path}: {operation}"
            );
            assert!(operation.get("security").is_none(), "{path} is open");
        }
        assert_eq!(
            doc["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
            "bearer"
        );
        assert!(
            doc["components"]["schemas"]["ErrorBody"].is_object(),
            "{doc}"
        );
    }
}
