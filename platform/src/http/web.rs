//! The web app: the market view and trading screens at `/`, the API explorer at `/docs`, and
//! their scripts and styles under `/assets/`. The files live in `platform/web/` and are embedded
//! in the binary at compile time (`rust-embed`, also in debug builds), so the platform serves
//! them with nothing else installed and nothing fetched from elsewhere.
//!
//! These responses carry their own Content-Security-Policy (the stack's security headers are
//! only added where a handler set none): scripts, styles, images and connections (HTTP and the
//! WebSocket) from this origin only, no inline script or style, no framing.

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The embedded `platform/web/` folder.
#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// The policy of every web-app response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The media type of an embedded file, by extension (the app ships only these kinds).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Serves one embedded file, with an ETag (its SHA-256) so browsers revalidate cheaply.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return ApiError::NotFound(format!("no asset {path}")).into_response();
    };
    let hash = file.metadata.sha256_hash();
    let etag = format!(
        "\"{}\"",
        hash[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let common = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        // Revalidate every time: asset names are not fingerprinted, and a 304 is cheap.
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        )],
        file.data,
    )
        .into_response()
}

/// `GET /`: the market view and trading app.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /docs`: the API explorer.
pub async fn docs(headers: HeaderMap) -> Response {
    serve("docs.html", &headers)
}

/// `GET /assets/{*path}`: the app's scripts, styles and images.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path.ends_with(".html") {
        return ApiError::NotFound(format!("no asset {path}")).into_response();
    }
    serve(&path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_and_script_is_embedded() {
        for path in [
            "index.html",
            "docs.html",
            "app.css",
            "js/app.js",
            "js/mfa.js",
            "js/approvals.js",
            "js/vendor/qrcode.js",
            "js/docs.js",
        ] {
            assert!(Assets::get(path).is_some(), "{path} is embedded");
        }
    }

    #[test]
    fn pages_load_only_local_scripts_and_styles() {
        for page in ["index.html", "docs.html"] {
            let file = Assets::get(page).expect("page");
            let html = std::str::from_utf8(&file.data).expect("utf-8");
            assert!(!html.contains("<script>"), "{page}: no inline script");
            assert!(!html.contains("<style"), "{page}: no inline style");
            assert!(!html.contains(" style=\""), "{page}: no style attribute");
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{page}: no other origin"
            );
            for src in html
                .split("src=\"")
                .skip(1)
                .chain(html.split("href=\"").skip(1))
            {
                let target = src.split('"').next().unwrap_or_default();
                assert!(
                    target.starts_with('/') || target.starts_with('#'),
                    "{page}: {target}"
                );
            }
        }
    }

    #[test]
    fn media_types_follow_the_extension() {
        assert_eq!(content_type("js/app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
