//! Tests of the generated OpenAPI document against the router and the checked-in file.
use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::DOCUMENT;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    serde_json::from_str(&DOCUMENT).expect("the generated document is valid JSON")
}

/// The checked-in copy, so that API changes show in reviews.
const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

/// The served document equals `platform/openapi.json`; `UPDATE_OPENAPI=1` rewrites the file.
#[test]
fn the_checked_in_document_is_the_generated_one() {
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(CHECKED_IN, DOCUMENT.as_str()).expect("write platform/openapi.json");
    }
    let file = std::fs::read_to_string(CHECKED_IN).expect("read platform/openapi.json");
    assert!(
        file == *DOCUMENT,
        "platform/openapi.json differs from the document generated from the code; review the \
         change and run `UPDATE_OPENAPI=1 cargo test -p tradeplane-platform openapi` to update it"
    );
}

/// Path → methods of the document.
fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// Path → methods of `api()`, read from the source of `http/mod.rs`.
fn routed() -> BTreeMap<String, BTreeSet<String>> {
    let source = include_str!("../mod.rs");
    let start = source.find("fn api()").expect("mod.rs has fn api()");
    let body = &source[start..];
    let end = body.find("\n}\n").expect("end of fn api()");
    let body: String = body[..end].split_whitespace().collect();
    for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
        assert!(
            !body.contains(unsupported),
            "api() uses {unsupported}: teach this test to read it"
        );
    }
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for chunk in body.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a quoted route path");
        // The handler expression runs to the `)` that closes `.route(`.
        let mut depth = 1usize;
        let mut handler = String::new();
        for c in rest.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            handler.push(c);
        }
        let methods: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| {
                handler.starts_with(&format!(",{m}(")) || handler.contains(&format!(".{m}("))
            })
            .map(|m| (*m).to_owned())
            .collect();
        assert!(!methods.is_empty(), "no method found for {path}: {handler}");
        routes.entry(path.to_owned()).or_default().extend(methods);
    }
    assert!(routes.len() > 10, "parsed too few routes: {routes:?}");
    routes
}

#[test]
fn document_is_openapi_3_1_with_bearer_auth_and_error_envelope() {
    let doc = document();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(
        error["required"],
        serde_json::json!(["code", "message"]),
        "{error}"
    );
    assert!(error["properties"]["request_id"].is_object());
    let ws = doc["paths"]["/ws"]["get"]["description"]
        .as_str()
        .expect("the WebSocket protocol is described");
    for needle in [
        "subscribe",
        "snapshot",
        "md_seq",
        "unknownSymbol",
        "1001",
        "1008",
    ] {
        assert!(ws.contains(needle), "the /ws description mentions {needle}");
    }
}

#[test]
fn every_operation_is_complete_and_every_ref_resolves() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has a summary"
            );
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|k| k.starts_with('2') || k == "101"),
                "{method} {path} documents its success response"
            );
            // Path parameters are declared.
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| {
                            let p = resolve(&doc, p);
                            p["in"] == "path" && p["name"] == name
                        })
                    });
                    assert!(
                        declared,
                        "{method} {path} declares the path parameter {name}"
                    );
                }
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "refs are used: {}", refs.len());
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local refs: {r}"));
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => doc.pointer(pointer).unwrap_or(v),
        None => v,
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_route_of_api_is_documented_with_its_methods() {
    let routed = routed();
    let documented = documented();
    assert!(
        routed.contains_key("/openapi.json"),
        "the document itself is routed"
    );
    assert_eq!(
        routed, documented,
        "routes of api() in http/mod.rs (left) and paths of platform/openapi.json (right) differ"
    );
}

/// The live router answers every documented path and method (not the fallback 404 or a 405),
/// and refuses the undocumented methods with 405: the document matches what is served.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let config = crate::config::Config::from_vars([
        ("DATABASE_URL".to_owned(), url),
        ("LISTEN_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
    ])
    .expect("config");
    let state = crate::server::build_state(config).await.expect("state");
    state.store.migrate().await.expect("migrate");
    let app = crate::http::router(state);
    for (path, methods) in documented() {
        let uri = format!(
            "/api/v1{}",
            path.replace("{id}", "1").replace("{symbol}", "AAPL")
        );
        for method in METHODS {
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .expect("request");
            let resp = app.clone().oneshot(req).await.expect("infallible");
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let text = String::from_utf8_lossy(&bytes);
            if methods.contains(method) {
                assert_ne!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri}: {text}"
                );
                assert!(
                    !(status == StatusCode::NOT_FOUND && text.contains("no such route")),
                    "{method} {uri} is documented but not routed: {text}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is routed but not documented: {text}"
                );
            }
        }
    }
    let resp = app
        .oneshot(
            Request::builder()
                .uri("/api/v1/openapi.json")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let served: Value = serde_json::from_slice(&bytes).expect("served JSON");
    assert_eq!(served, document());
}
