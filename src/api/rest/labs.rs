//! The lab routes: list the built-in labs, show one, run one (or a lab
//! given as TOML text) as sessions. Thin like every handler: extract, call one
//! [`LabService`] method from [`crate::service::labs`], reply.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiPath};
use super::handlers::ApiResult;
use crate::service::LabService;
use crate::service::labs::{LabInfo, LabList, LabRunResult, RunLab, RunLabToml};

/// `/api/v1/labs/{name}...`.
#[derive(Debug, Clone, Deserialize)]
pub struct LabPath {
    /// A built-in lab's name (`three-way-handshake`).
    pub name: String,
}

/// The built-in labs with their variants, in teaching order.
#[utoipa::path(
    get, path = "/api/v1/labs", tag = "labs",
    responses(
        (status = 200, description = "OK", body = LabList),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn list_labs(State(svc): State<LabService>) -> ApiResult<Json<LabList>> {
    Ok(Json(svc.list_labs()?))
}

/// One built-in lab with its TOML source.
#[utoipa::path(
    get, path = "/api/v1/labs/{name}", tag = "labs",
    params(("name" = String, Path, description = "The lab's name, as `GET /api/v1/labs` lists it")),
    responses(
        (status = 200, description = "OK", body = LabInfo),
        (status = 404, description = "No built-in lab of that name", body = ErrorBody),
    )
)]
pub async fn get_lab(State(svc): State<LabService>, ApiPath(p): ApiPath<LabPath>) -> ApiResult<Json<LabInfo>> {
    Ok(Json(svc.get_lab(&p.name)?))
}

/// Runs a built-in lab: every variant (or the one named) in a new session of
/// its own, whose events are published live and stored like any session's;
/// replies with the checks and the ladder. A failing expectation is a
/// `passed: false` reply, not an error.
#[utoipa::path(
    post, path = "/api/v1/labs/{name}/runs", tag = "labs",
    params(("name" = String, Path, description = "The lab's name")),
    request_body(content = Option<RunLab>, description = "Optional: `{}` or no body runs every variant"),
    responses(
        (status = 201, description = "Ran; the sessions exist", body = LabRunResult),
        (status = 404, description = "No built-in lab of that name", body = ErrorBody),
        (status = "4XX", description = "Unknown variant, bad name, the session limit", body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn run_lab(
    State(svc): State<LabService>,
    ApiPath(p): ApiPath<LabPath>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    // The body is optional (a bare POST runs every variant); when present it
    // must be a JSON `RunLab`, refused with the field serde names.
    let req =
        if body.iter().all(u8::is_ascii_whitespace) { RunLab::default() } else { super::json::from_slice(&body)? };
    Ok((StatusCode::CREATED, Json(svc.run_lab(&p.name, req).await?)))
}

/// Runs a lab given as TOML text (the format of `labs/*.toml`), like a
/// built-in one. A parse error is 400 naming the line, column and field.
#[utoipa::path(
    post, path = "/api/v1/labs/runs", tag = "labs",
    request_body = RunLabToml,
    responses(
        (status = 201, description = "Ran; the sessions exist", body = LabRunResult),
        (status = "4XX", description = "A parse error (`toml: line L, column C: field ...`), unknown variant, limits",
         body = ErrorBody),
        (status = "5XX", description = "Server error", body = ErrorBody),
    )
)]
pub async fn run_lab_toml(
    State(svc): State<LabService>,
    ApiJson(req): ApiJson<RunLabToml>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(svc.run_lab_toml(req).await?)))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::api::rest::{ApiDoc, router};
    use crate::service::{LabService, Limits};
    use crate::store::Store;

    async fn app() -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("lab.db")).await.expect("open store");
        let service = LabService::new(store, Limits::default()).await.expect("service");
        (router(service), dir)
    }

    async fn call(app: &Router, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        let builder = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(b) => builder.header(header::CONTENT_TYPE, "application/json").body(Body::from(b.to_string())),
            None => builder.body(Body::empty()),
        }
        .expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    #[tokio::test]
    async fn lists_and_shows_labs() {
        let (app, _dir) = app().await;
        let (status, list) = call(&app, Method::GET, "/api/v1/labs", None).await;
        assert_eq!(status, StatusCode::OK);
        let labs = list["labs"].as_array().expect("labs");
        assert_eq!(labs.len(), crate::lab::builtin().len());
        assert_eq!(labs[0]["name"], "three-way-handshake");
        assert!(labs[0].get("toml").is_none());
        let (status, lab) = call(&app, Method::GET, "/api/v1/labs/why-not-two-way", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(lab["variants"][1]["name"], "two_way");
        assert_eq!(lab["variants"][1]["profile"]["handshake"], "two_way");
        assert!(lab["toml"].as_str().expect("toml").contains("handshake = \"two_way\""));
        let (status, err) = call(&app, Method::GET, "/api/v1/labs/nope", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["error"]["code"], "not_found");
        assert_eq!(err["error"]["message"], "lab nope not found");
    }

    #[tokio::test]
    async fn runs_a_lab_with_or_without_a_body() {
        let (app, _dir) = app().await;
        let (status, run) = call(&app, Method::POST, "/api/v1/labs/three-way-handshake/runs", None).await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        assert_eq!(run["lab"], "three-way-handshake");
        assert_eq!(run["variant"], "default");
        assert_eq!(run["passed"], true);
        assert!(run["ladder"].as_str().expect("ladder").contains("SYN"));
        let check = &run["checks"][0];
        for key in ["expected", "got", "t_ms", "line", "kind", "passed", "message"] {
            assert!(check.get(key).is_some(), "{key} missing in {check}");
        }
        let sid = run["session_id"].as_u64().expect("session_id");
        let (status, session) = call(&app, Method::GET, &format!("/api/v1/sessions/{sid}"), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(session["status"], "live");

        let body = r#"{"variant":"two_way","end":true}"#;
        let (status, run) = call(&app, Method::POST, "/api/v1/labs/why-not-two-way/runs", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        assert_eq!(run["variants"].as_array().map(Vec::len), Some(1));
        assert_eq!(run["variant"], "two_way");
    }

    #[tokio::test]
    async fn bad_requests_name_the_field() {
        let (app, _dir) = app().await;
        let uri = "/api/v1/labs/why-not-two-way/runs";
        let (status, err) = call(&app, Method::POST, uri, Some(r#"{"variant":"one_way"}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"]["message"].as_str().expect("message").starts_with("variant: "), "{err}");
        let (status, err) = call(&app, Method::POST, uri, Some(r#"{"colour":1}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"]["message"].as_str().expect("message").contains("colour"), "{err}");
        let (status, err) = call(&app, Method::POST, "/api/v1/labs/nope/runs", Some("{}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(err["error"]["message"], "lab nope not found");
        let toml = json!({ "toml": "title = \"t\"\nexplanation = \"e\"\nseed = \"x\"\n" }).to_string();
        let (status, err) = call(&app, Method::POST, "/api/v1/labs/runs", Some(&toml)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let message = err["error"]["message"].as_str().expect("message");
        assert!(message.starts_with("toml: line 3, column "), "{message}");
        assert!(message.contains("seed"), "{message}");
    }

    #[test]
    fn openapi_documents_the_lab_routes() {
        let doc = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).expect("json");
        for path in ["/api/v1/labs", "/api/v1/labs/{name}", "/api/v1/labs/{name}/runs", "/api/v1/labs/runs"] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        for schema in ["LabList", "LabInfo", "RunLab", "RunLabToml", "LabRunResult", "LabVariantRun", "LabCheck"] {
            assert!(doc["components"]["schemas"].get(schema).is_some(), "{schema} missing");
        }
    }
}
