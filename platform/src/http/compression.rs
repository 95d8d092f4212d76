//! Response compression: gzip and brotli, negotiated by the request's `Accept-Encoding`
//! (tower-http's [`CompressionLayer`], built with only those two codecs; a client that sends none gets identity bodies, so a
//! Prometheus scrape is compressed only when the scraper asks for it).
//!
//! Compressed: JSON and text bodies of at least [`MIN_BYTES`] (smaller ones gain little and cost
//! CPU). Never: WebSocket upgrades (`101`, whose connection is no longer HTTP), server-sent
//! events (a stream must flush per event), images, gRPC, and responses that already carry a
//! `Content-Encoding`.

use axum::http::{HeaderMap, StatusCode, Version, header};
use tower_http::compression::predicate::{Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Bodies below this many bytes are sent as they are.
pub const MIN_BYTES: u16 = 1024;

/// The layer, with the predicate above. Level `Default`: gzip 6, and brotli 4 (tower-http's
/// on-the-fly default, nginx's too; brotli's best, 11, costs tens of milliseconds per large
/// JSON body).
pub fn layer() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .quality(CompressionLevel::Default)
        .compress_when(SizeAbove::new(MIN_BYTES).and(compressible))
}

/// Whether a response's status and content type allow compressing it.
fn compressible(
    status: StatusCode,
    _version: Version,
    headers: &HeaderMap,
    _extensions: &axum::http::Extensions,
) -> bool {
    if status == StatusCode::SWITCHING_PROTOCOLS || headers.contains_key(header::UPGRADE) {
        return false;
    }
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/javascript"
        || essence == "image/svg+xml"
        || (essence.starts_with("text/") && essence != "text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, t.parse().expect("header"));
        h
    }

    #[test]
    fn json_and_text_compress_streams_upgrades_and_images_do_not() {
        let ext = axum::http::Extensions::new();
        let ok = StatusCode::OK;
        let v = Version::HTTP_11;
        assert!(compressible(ok, v, &with_type("application/json"), &ext));
        assert!(compressible(
            ok,
            v,
            &with_type("text/plain; version=0.0.4"),
            &ext
        ));
        assert!(!compressible(ok, v, &with_type("text/event-stream"), &ext));
        assert!(!compressible(ok, v, &with_type("image/png"), &ext));
        assert!(!compressible(ok, v, &HeaderMap::new(), &ext));
        assert!(!compressible(
            StatusCode::SWITCHING_PROTOCOLS,
            v,
            &with_type("application/json"),
            &ext
        ));
    }
}
