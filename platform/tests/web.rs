//! The web app's routes: pages and assets come from the binary with their strict policy, an
//! unchanged asset revalidates to 304, and the API keeps its own headers.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(
    state: &tradeplane_platform::state::AppState,
    path: &str,
    etag: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().uri(path);
    if let Some(e) = etag {
        req = req.header(header::IF_NONE_MATCH, e);
    }
    let resp = tradeplane_platform::http::router(state.clone())
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

#[tokio::test]
async fn pages_and_assets_are_served_under_their_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    for (path, kind, marker) in [
        ("/", "text/html", "/assets/js/app.js"),
        ("/docs", "text/html", "/assets/js/docs.js"),
        ("/assets/js/app.js", "text/javascript", "import"),
        ("/assets/app.css", "text/css", "--bg"),
    ] {
        let (status, headers, body) = get(&state, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with(kind),
            "{path}"
        );
        assert!(body.contains(marker), "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert_eq!(
            csp,
            tradeplane_platform::http::web::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
        assert_eq!(
            headers[header::X_FRAME_OPTIONS],
            "DENY",
            "the other security headers stay"
        );
        let etag = headers[header::ETAG].to_str().expect("ascii").to_owned();
        let (status, _, body) = get(&state, path, Some(&etag)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_MODIFIED, ""),
            "{path}"
        );
    }
    for missing in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let (status, headers, body) = get(&state, missing, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .expect("ascii")
                .starts_with("application/json")
        );
        assert!(body.contains("not_found"), "{body}");
    }
    let (_, headers, _) = get(&state, "/api/v1/instruments", None).await;
    assert_eq!(
        headers[header::CONTENT_SECURITY_POLICY],
        "default-src 'none'; frame-ancestors 'none'",
        "the API keeps its policy"
    );
}
