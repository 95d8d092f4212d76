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
        // Every method of every path from one address: more than the default burst.
        ("RATE_LIMIT_BURST".to_owned(), "10000".to_owned()),
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

/// Resolves `$ref`s (to components) until a non-reference is reached.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(p) => v = doc.pointer(p).unwrap_or(v),
            None => break,
        }
    }
    v
}

/// A validator for `schema` in the document's context (its `$ref`s resolve to components).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut root = schema.clone();
    if let Value::Object(m) = &mut root {
        m.insert("components".into(), doc["components"].clone());
    } else {
        root = serde_json::json!({"allOf": [schema], "components": doc["components"]});
    }
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("schema {schema} compiles: {e}"))
}

/// An example of `schema`: its own, or that of what it refers to (arrays: of their items).
fn schema_example(doc: &Value, schema: &Value) -> Option<Value> {
    let s = deref(doc, schema);
    if let Some(e) = s.get("example").or_else(|| s["examples"].get(0)) {
        return Some(e.clone());
    }
    if s["type"] == "array" {
        return schema_example(doc, &s["items"]).map(|e| Value::Array(vec![e]));
    }
    None
}

/// Every JSON request and response body of every operation has an example, and every example
/// (of a body, a response or a component schema) is valid against its schema.
#[test]
fn every_body_has_an_example_that_its_schema_accepts() {
    let doc = document();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let mut media = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                media.extend(c.values().map(|m| ("request".to_owned(), m.clone())));
            }
            for (status, r) in op["responses"].as_object().expect("responses") {
                if let Some(c) = deref(&doc, r)["content"].as_object() {
                    media.extend(c.values().map(|m| (status.clone(), m.clone())));
                }
            }
            for (what, m) in media {
                let example = m
                    .get("example")
                    .cloned()
                    .or_else(|| schema_example(&doc, &m["schema"]))
                    .unwrap_or_else(|| panic!("{method} {path} {what}: no example"));
                let v = validator(&doc, &m["schema"]);
                let errors: Vec<String> = v.iter_errors(&example).map(|e| e.to_string()).collect();
                assert!(
                    errors.is_empty(),
                    "{method} {path} {what}: {example} breaks its schema: {errors:?}"
                );
                checked += 1;
            }
        }
    }
    for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
        let examples: Vec<Value> = schema
            .get("example")
            .cloned()
            .into_iter()
            .chain(schema["examples"].as_array().cloned().unwrap_or_default())
            .collect();
        let v = validator(&doc, schema);
        for e in examples {
            let errors: Vec<String> = v.iter_errors(&e).map(|e| e.to_string()).collect();
            assert!(
                errors.is_empty(),
                "schema {name}: example {e} is invalid: {errors:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 60, "checked {checked} examples");
}

/// The document's decimal patterns accept exactly what the engine parses (up to range, which the
/// description states): everything the server accepts matches, and a matching string is refused
/// only for being out of range.
#[test]
fn decimal_patterns_describe_what_the_engine_parses() {
    use proptest::prelude::*;
    use tradeplane_engine::num::{Cash, NumError, Price, Qty};
    let doc = document();
    let pattern = |name: &str| {
        let s = &doc["components"]["schemas"][name];
        (
            regex::Regex::new(s["pattern"].as_str().expect("pattern")).expect("regex"),
            s["maxLength"].as_u64().expect("maxLength") as usize,
        )
    };
    let (signed, signed_max) = pattern("Decimal");
    let (unsigned, unsigned_max) = pattern("UnsignedDecimal");
    let strings = prop_oneof![
        "-?[0-9]{1,12}(\\.[0-9]{0,12})?",
        "-?0+(\\.0{0,12})?",
        "[-+0-9.eE ]{0,20}",
        any::<String>(),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 2000,
        failure_persistence: None,
        ..Default::default()
    });
    runner
        .run(&strings, |s| {
            let doc_ok = |re: &regex::Regex, max: usize| re.is_match(&s) && s.len() <= max;
            let check = |parsed: Result<(), NumError>, documented: bool| {
                match parsed {
                    Ok(()) => prop_assert!(documented, "{s:?} is accepted but not documented"),
                    Err(NumError::Overflow) => {}
                    Err(e) => prop_assert!(!documented, "{s:?} is documented but refused: {e}"),
                }
                Ok(())
            };
            check(s.parse::<Cash>().map(|_| ()), doc_ok(&signed, signed_max))?;
            check(
                s.parse::<Price>().map(|_| ()),
                doc_ok(&unsigned, unsigned_max),
            )?;
            check(
                s.parse::<Qty>().map(|_| ()),
                doc_ok(&unsigned, unsigned_max),
            )?;
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The configured instruments, as `/instruments` serves them, fit the `Instrument` schema.
#[test]
fn real_instruments_fit_the_instrument_schema() {
    let doc = document();
    let v = validator(
        &doc,
        &serde_json::json!({"$ref": "#/components/schemas/Instrument"}),
    );
    let defaults = tradeplane_engine::instrument::default_instruments();
    assert!(!defaults.is_empty());
    for i in defaults {
        let json = serde_json::to_value(&i).expect("serialize");
        let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{json}: {errors:?}");
        let _: super::Instrument =
            serde_json::from_value(json).expect("the schema type mirrors it");
    }
}

/// `"tif": null` (and any optional order field as null) is refused by the document and by the
/// server (422 `null_field`); omitted, the field takes its default.
#[tokio::test]
async fn optional_order_fields_may_be_omitted_but_not_null_in_the_document_and_the_server() {
    use crate::input::Validate;
    let doc = document();
    let order = serde_json::json!({"$ref": "#/components/schemas/PlaceOrder"});
    let v = validator(&doc, &order);
    let base = serde_json::json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1"});
    assert!(v.is_valid(&base), "omitted optional fields are valid");
    let body: super::super::orders::PlaceOrderBody =
        serde_json::from_value(base.clone()).expect("omitted fields parse");
    body.validate().expect("and are accepted");
    for field in ["tif", "client_order_id", "price"] {
        let mut with_null = base.clone();
        with_null[field] = Value::Null;
        assert!(!v.is_valid(&with_null), "{field}: null breaks the document");
        let body: super::super::orders::PlaceOrderBody =
            serde_json::from_value(with_null).expect("parses");
        let err = body.validate().expect_err(field);
        assert_eq!(err.code(), "null_field", "{field}");
        assert!(err.to_string().contains(field), "{err}");
    }
}

/// The client_order_id rule of the server is the document's pattern (a space is refused by both).
#[test]
fn client_order_id_rule_and_document_agree() {
    let doc = document();
    let schema = &doc["components"]["schemas"]["ClientOrderId"];
    let re = regex::Regex::new(schema["pattern"].as_str().expect("pattern")).expect("regex");
    for id in [
        "a",
        "with space",
        "tab\there",
        "~!#",
        "é",
        "",
        &"x".repeat(64),
        &"x".repeat(65),
    ] {
        assert_eq!(
            crate::input::client_order_id("client_order_id", id).is_ok(),
            re.is_match(id),
            "{id:?}"
        );
    }
    let v = validator(
        &doc,
        &serde_json::json!({"$ref": "#/components/schemas/PlaceOrder"}),
    );
    let mut order = serde_json::json!({"symbol": "AAPL", "side": "buy", "type": "limit", "price": "1", "qty": "1", "client_order_id": "a b"});
    assert!(!v.is_valid(&order), "the document refuses a space");
    order["client_order_id"] = serde_json::json!("a-b");
    assert!(v.is_valid(&order));
}
