//! The dashboard: the files of `web/` (plain ES modules, SVG and CSS) embedded
//! in the binary at compile time, so that `cargo run --release` serves it with
//! no npm or other front-end step.
//!
//! [`fallback`] is the REST router's fallback: `GET /` is `index.html`, other
//! `GET`/`HEAD` paths are looked up in [`FILES`], and everything else, every
//! path under `/api/` included, keeps the REST API's JSON 404 body.
//!
//! Setting `TCPLAB_WEB_DIR` to a folder serves the files from that folder
//! instead, read at each request, so that the dashboard can be edited and
//! reloaded without rebuilding the server.

use std::borrow::Cow;

use axum::http::{Method, Uri, header};
use axum::response::{IntoResponse, Response};

use super::rest::ApiError;

/// Embeds each listed file of `web/` as `(path relative to web/, bytes)`.
macro_rules! web_files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)) as &[u8])),*]
    };
}

/// Every file of the dashboard, embedded: a unit test checks that this list
/// and the files in `web/` are the same, so that a new file cannot be
/// forgotten.
pub static FILES: &[(&str, &[u8])] = web_files!(
    "index.html",
    "style.css",
    "favicon.svg",
    "js/api.js",
    "js/app.js",
    "js/controls.js",
    "js/format.js",
    "js/labs.js",
    "js/ladder.js",
    "js/model.js",
    "js/panels.js",
    "js/plots.js",
);

/// The `content-type` for a file name, by its extension: browsers refuse
/// ES modules served with anything but a JavaScript type.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The relative path a request names (`index.html` for `/`), or `None` for
/// paths that are never the dashboard's: under `/api/`, or with `..`, empty
/// or hidden components.
fn relative_path(path: &str) -> Option<&str> {
    if path == "/api" || path.starts_with("/api/") {
        return None;
    }
    let rel = path.trim_start_matches('/');
    if rel.is_empty() {
        return Some("index.html");
    }
    if rel.split('/').any(|part| part.is_empty() || part.starts_with('.')) {
        return None;
    }
    Some(rel)
}

/// The file's bytes: from `TCPLAB_WEB_DIR` when it is set, else embedded
/// (borrowed, not copied).
fn load(rel: &str) -> Option<Cow<'static, [u8]>> {
    if let Some(dir) = std::env::var_os("TCPLAB_WEB_DIR") {
        return std::fs::read(std::path::Path::new(&dir).join(rel)).ok().map(Cow::Owned);
    }
    FILES.iter().find(|(name, _)| *name == rel).map(|(_, bytes)| Cow::Borrowed(*bytes))
}

/// The REST router's fallback: a dashboard file for `GET`/`HEAD`, otherwise
/// the API's JSON 404 (`{"error":{"code":"not_found",...}}`).
pub async fn fallback(method: Method, uri: Uri) -> Response {
    let not_found = || ApiError::no_route(&method, uri.path()).into_response();
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let Some(rel) = relative_path(uri.path()) else { return not_found() };
    let Some(bytes) = load(rel) else { return not_found() };
    // index.html names the other files; it must be fetched anew after an
    // upgrade, while they may be cached briefly.
    let cache = if rel == "index.html" { "no-cache" } else { "max-age=60" };
    ([(header::CONTENT_TYPE, content_type(rel)), (header::CACHE_CONTROL, cache)], bytes).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `web/`, relative, with `/` separators.
    fn files_on_disk(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        let entries = std::fs::read_dir(dir).expect("read web/");
        for entry in entries {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let rel = format!("{prefix}{name}");
            if entry.file_type().expect("file type").is_dir() {
                files_on_disk(&entry.path(), &format!("{rel}/"), out);
            } else {
                out.push(rel);
            }
        }
    }

    #[test]
    fn every_file_in_web_is_embedded() {
        let mut on_disk = Vec::new();
        files_on_disk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web"), "", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(name, _)| name.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "web/ and FILES in src/api/web.rs differ");
    }

    #[test]
    fn paths_map_to_files_and_api_paths_never_do() {
        assert_eq!(relative_path("/"), Some("index.html"));
        assert_eq!(relative_path("/js/app.js"), Some("js/app.js"));
        assert_eq!(relative_path("/api/v1/nothing"), None);
        assert_eq!(relative_path("/api"), None);
        assert_eq!(relative_path("/../Cargo.toml"), None);
        assert_eq!(relative_path("/js//app.js"), None);
        assert_eq!(relative_path("/.git/config"), None);
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn index_is_served_and_unknown_paths_are_json_404() {
        let response = fallback(Method::GET, Uri::from_static("/")).await;
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let ct = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert_eq!(ct, "text/html; charset=utf-8");
        for (method, uri) in [(Method::GET, "/nope"), (Method::GET, "/api/v1/x"), (Method::POST, "/")] {
            let response = fallback(method, Uri::from_static(uri)).await;
            assert_eq!(response.status(), axum::http::StatusCode::NOT_FOUND, "{uri}");
        }
    }
}
