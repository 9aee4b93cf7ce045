//! The web console on the HTTP port: the bundle `console/` builds
//! (`scripts/console.sh`, checked in under this crate's `console/` so a
//! build of tidewright, and the crate as published, need no Node), embedded
//! in the binary. The page is served at `/`
//! and routes in its URL's hash; everything it shows comes from
//! `/api/v1` with its session cookie.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::http::app::App;

macro_rules! built {
    ($file:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $file))
    };
}

const INDEX: &str = built!("index.html");
const SCRIPT: &str = built!("assets/console.js");
const STYLE: &str = built!("assets/console.css");

/// The page may load only its own script and style, and call only its own
/// origin; no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// A validator per file: browsers ask again each time (`no-cache`) and get
/// 304 until another build of tidewright serves another bundle.
static TAGS: LazyLock<[String; 3]> = LazyLock::new(|| [tag(INDEX), tag(SCRIPT), tag(STYLE)]);

fn tag(content: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { file(&headers, 0) }),
        )
        .route(
            "/assets/console.js",
            get(|headers: HeaderMap| async move { file(&headers, 1) }),
        )
        .route(
            "/assets/console.css",
            get(|headers: HeaderMap| async move { file(&headers, 2) }),
        )
}

/// Any other path a browser asks for (a bookmark, a mistyped link) gets the
/// console, which routes in its URL's hash; other methods get 404.
pub async fn fallback(method: axum::http::Method, headers: HeaderMap) -> Response {
    if method == axum::http::Method::GET {
        file(&headers, 0)
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn file(headers: &HeaderMap, which: usize) -> Response {
    let (content, kind) = match which {
        0 => (INDEX, "text/html; charset=utf-8"),
        1 => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => (STYLE, "text/css; charset=utf-8"),
    };
    let etag = &TAGS[which];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|seen| seen.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], content).into_response()
    };
    let set = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        set.insert(header::ETAG, etag);
    }
    set.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    set.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if which == 0 {
        set.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_the_embedded_script_and_style() {
        assert!(INDEX.contains("src=\"/assets/console.js\""), "{INDEX}");
        assert!(INDEX.contains("href=\"/assets/console.css\""), "{INDEX}");
        assert!(SCRIPT.len() > 1000 && STYLE.len() > 100);
    }

    #[test]
    fn a_browser_holding_the_current_file_gets_304() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&TAGS[1]).expect("tag"),
        );
        assert_eq!(file(&headers, 1).status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        let fresh = file(&headers, 1);
        assert_eq!(fresh.status(), StatusCode::OK);
        assert_eq!(fresh.headers()[header::CACHE_CONTROL], "no-cache");
        let page = file(&HeaderMap::new(), 0);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .expect("ascii")
                .contains("frame-ancestors 'none'")
        );
    }
}
