//! Property test generated from the OpenAPI document: random requests to every documented
//! operation (parameters and bodies drawn from the document's schemas, sometimes broken on
//! purpose), through the whole router on SQLite. Whatever the request, the answer is never a
//! 5xx, its status is one the operation documents, and its JSON body is valid against the
//! documented schema of that status.
//!
//! 300 cases by default; `PROPTEST_CASES=N` runs more.

mod common;

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt;
use tradeplane_platform::http::router;
use tradeplane_platform::state::AppState;

const ADMIN: (&str, &str) = ("root", "root-password-long");
const ENV: &[(&str, &str)] = &[
    ("ADMIN_USERNAME", ADMIN.0),
    ("ADMIN_PASSWORD", ADMIN.1),
    ("RATE_LIMIT_PER_SECOND", "1000000"),
    ("RATE_LIMIT_BURST", "1000000"),
    ("LOGIN_RATE_LIMIT_PER_MINUTE", "100000"),
    ("FAILED_LOGIN_LIMIT_PER_HOUR", "100000"),
    // With a key the fuzzer reaches the MFA routes' real paths, not their 503 `mfa_unavailable`.
    (
        "MFA_ENCRYPTION_KEY",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
    ),
];

fn document() -> Value {
    serde_json::from_str(&tradeplane_platform::http::openapi::DOCUMENT).expect("document")
}

fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..8 {
        match v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(p) => v = doc.pointer(p).unwrap_or(v),
            None => break,
        }
    }
    v
}

// ---- values from schemas ----

/// Strings of `pattern` (anchors dropped: the generator matches whole strings).
fn pattern_strategy(pattern: &str) -> BoxedStrategy<String> {
    let inner = pattern.trim_start_matches('^').trim_end_matches('$');
    proptest::string::string_regex(inner)
        .unwrap_or_else(|e| panic!("pattern {pattern}: {e}"))
        .boxed()
}

/// A value valid against `schema`, mostly; `depth` bounds nesting.
fn valid(doc: &Value, schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    let s = deref(doc, schema);
    if let Some(options) = s["oneOf"].as_array().or(s["anyOf"].as_array()) {
        let strategies: Vec<BoxedStrategy<Value>> =
            options.iter().map(|o| valid(doc, o, depth)).collect();
        return proptest::strategy::Union::new(strategies).boxed();
    }
    if let Some(values) = s["enum"].as_array() {
        return prop::sample::select(values.clone()).boxed();
    }
    let types: Vec<String> = match &s["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    };
    let mut options: Vec<BoxedStrategy<Value>> = Vec::new();
    for t in &types {
        options.push(match t.as_str() {
            "null" => Just(Value::Null).boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "integer" => {
                let min = s["minimum"].as_i64().unwrap_or(-5);
                let max = s["maximum"].as_i64().unwrap_or(1_000);
                prop_oneof![4 => (min..=max).boxed(), 1 => any::<i64>().boxed()]
                    .prop_map(Value::from)
                    .boxed()
            }
            "number" => any::<f64>().prop_map(|f| json!(f)).boxed(),
            "string" => match s["pattern"].as_str() {
                // The document's examples are realistic values (configured symbols, prices on
                // the tick), so operations get past "no such thing" now and then.
                Some(p) if s["examples"].is_array() => {
                    let examples = s["examples"].as_array().cloned().unwrap_or_default();
                    prop_oneof![
                        2 => prop::sample::select(examples),
                        1 => pattern_strategy(p).prop_map(Value::String),
                    ]
                    .boxed()
                }
                Some(p) => pattern_strategy(p).prop_map(Value::String).boxed(),
                None if s["format"] == "date-time" => Just(json!("2026-01-02T15:04:05Z")).boxed(),
                None => "[a-zA-Z0-9 _.-]{0,12}".prop_map(Value::String).boxed(),
            },
            "array" if depth > 0 => prop::collection::vec(valid(doc, &s["items"], depth - 1), 0..3)
                .prop_map(Value::Array)
                .boxed(),
            "object" if depth > 0 => object(doc, s, depth - 1),
            _ => Just(Value::Null).boxed(),
        });
    }
    if options.is_empty() {
        // No type: any JSON (e.g. audit details).
        return Just(json!({})).boxed();
    }
    proptest::strategy::Union::new(options).boxed()
}

/// An object with every required property and a random subset of the optional ones.
fn object(doc: &Value, s: &Value, depth: u32) -> BoxedStrategy<Value> {
    let required: Vec<String> = s["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let props: Vec<(String, Value)> = s["properties"]
        .as_object()
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
        .into_iter()
        .map(|(name, schema)| {
            let value = valid(doc, &schema, depth);
            if required.contains(&name) {
                value.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                prop::option::of(value.prop_map(move |v| (name.clone(), v))).boxed()
            }
        })
        .collect();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

/// A value that is valid most of the time and otherwise broken: wrong type, control
/// characters, huge strings, a dropped or extra field.
fn maybe_broken(doc: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let good = valid(doc, schema, 3);
    let broken = prop_oneof![
        Just(json!(null)),
        Just(json!(12.5)),
        Just(json!([])),
        Just(json!({})),
        Just(json!("\u{0}nul")),
        Just(json!("x".repeat(5000))),
        any::<String>().prop_map(Value::String),
    ];
    let mutated = (
        valid(doc, schema, 3),
        "[a-z_]{1,10}",
        prop_oneof![Just(json!(1)), Just(json!("\u{7}"))],
    )
        .prop_map(|(mut v, key, bad)| {
            if let Value::Object(m) = &mut v {
                match m.keys().next().cloned() {
                    Some(first) if key.len() % 2 == 0 => {
                        m.remove(&first);
                    }
                    Some(first) => {
                        m.insert(first, bad);
                    }
                    None => {
                        m.insert(key, bad);
                    }
                }
            }
            v
        });
    prop_oneof![6 => good, 1 => broken, 2 => mutated].boxed()
}

// ---- requests ----

/// One documented operation.
#[derive(Clone, Debug)]
struct Operation {
    method: String,
    path: String,
    op: Value,
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if path == "/ws" {
            continue; // a WebSocket upgrade, tested in tests/ws.rs
        }
        for (method, op) in item.as_object().expect("item") {
            out.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                op: op.clone(),
            });
        }
    }
    out
}

/// Who calls.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    Trader,
    Admin,
    Garbage,
}

/// A concrete request: path, query, body, caller.
#[derive(Clone, Debug)]
struct Call {
    op: usize,
    uri: String,
    body: Option<Value>,
    caller: Caller,
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn call_strategy(doc: &Value, ops: &[Operation]) -> BoxedStrategy<Call> {
    let per_op: Vec<BoxedStrategy<Call>> = ops
        .iter()
        .enumerate()
        .map(|(index, o)| {
            let params: Vec<Value> = o.op["parameters"].as_array().cloned().unwrap_or_default();
            let param_values: Vec<BoxedStrategy<Option<(Value, String)>>> = params
                .iter()
                .map(|p| {
                    let p = deref(doc, p).clone();
                    let value = maybe_broken(doc, &p["schema"]);
                    let required = p["required"] == true;
                    let pair = value.prop_map(move |v| (p.clone(), scalar(&v)));
                    if required {
                        pair.prop_map(Some).boxed()
                    } else {
                        prop::option::of(pair).boxed()
                    }
                })
                .collect();
            let body: BoxedStrategy<Option<Value>> =
                match o.op["requestBody"]["content"]["application/json"]["schema"].clone() {
                    Value::Null => Just(None).boxed(),
                    schema => maybe_broken(doc, &schema).prop_map(Some).boxed(),
                };
            let caller = prop_oneof![
                1 => Just(Caller::Anonymous),
                5 => Just(Caller::Trader),
                3 => Just(Caller::Admin),
                1 => Just(Caller::Garbage),
            ];
            let path = o.path.clone();
            (param_values, body, caller)
                .prop_map(move |(values, body, caller)| {
                    let mut uri = format!("/api/v1{path}");
                    let mut query = Vec::new();
                    for (p, v) in values.into_iter().flatten() {
                        let name = p["name"].as_str().unwrap_or_default();
                        match p["in"].as_str() {
                            Some("path") => uri = uri.replace(&format!("{{{name}}}"), &percent(&v)),
                            _ => query.push(format!("{name}={}", percent(&v))),
                        }
                    }
                    if !query.is_empty() {
                        uri = format!("{uri}?{}", query.join("&"));
                    }
                    Call {
                        op: index,
                        uri,
                        body,
                        caller,
                    }
                })
                .boxed()
        })
        .collect();
    proptest::strategy::Union::new(per_op).boxed()
}

// ---- the property ----

struct World {
    state: AppState,
    trader: String,
    admin: String,
    doc: Value,
    ops: Vec<Operation>,
    validators: std::cell::RefCell<HashMap<String, std::rc::Rc<jsonschema::Validator>>>,
}

impl World {
    fn validator(&self, schema: &Value) -> std::rc::Rc<jsonschema::Validator> {
        let key = schema.to_string();
        if let Some(v) = self.validators.borrow().get(&key) {
            return v.clone();
        }
        let root = json!({"allOf": [schema], "components": self.doc["components"]});
        let v = std::rc::Rc::new(
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&root)
                .expect("schema compiles"),
        );
        self.validators.borrow_mut().insert(key, v.clone());
        v
    }
}

async fn login(state: &AppState, username: &str, password: &str) -> String {
    let (status, body) = common::send(
        state,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

async fn world(dir: &tempfile::TempDir) -> World {
    let state = common::started_state(dir, ENV).await;
    tradeplane_platform::server::ensure_admin(&state)
        .await
        .expect("admin");
    let admin = login(&state, ADMIN.0, ADMIN.1).await;
    let (_, user) = common::send(
        &state,
        "POST",
        "/api/v1/auth/register",
        None,
        Some(json!({"username": "fuzzer", "password": "password-123"})),
    )
    .await;
    let account = user["account_id"].as_i64().expect("account");
    for deposit in [
        json!({"amount": "1000000"}),
        json!({"amount": "1000", "symbol": "AAPL", "cost": "150"}),
        json!({"amount": "10", "symbol": "BTC-USD", "cost": "30000"}),
    ] {
        let (status, body) = common::send(
            &state,
            "POST",
            &format!("/api/v1/admin/accounts/{account}/deposits"),
            Some(&admin),
            Some(deposit),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let trader = login(&state, "fuzzer", "password-123").await;
    let doc = document();
    let ops = operations(&doc);
    World {
        state,
        trader,
        admin,
        doc,
        ops,
        validators: Default::default(),
    }
}

/// Sends one call and checks the answer against the document; returns the status.
async fn check(world: &World, call: &Call) -> Result<StatusCode, TestCaseError> {
    let o = &world.ops[call.op];
    let mut req = Request::builder().method(o.method.as_str()).uri(&call.uri);
    let token = match call.caller {
        Caller::Anonymous => None,
        Caller::Trader => Some(world.trader.clone()),
        Caller::Admin => Some(world.admin.clone()),
        Caller::Garbage => Some("not.a.token".to_owned()),
    };
    if let Some(t) = &token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match &call.body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    };
    let Ok(req) = req else {
        return Ok(StatusCode::BAD_REQUEST); // not expressible as an HTTP request at all
    };
    let resp = router(world.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let shown = String::from_utf8_lossy(&bytes);
    let what = format!(
        "{} {} {:?} as {:?}",
        o.method, call.uri, call.body, call.caller
    );
    prop_assert!(!status.is_server_error(), "{what} -> {status} {shown}");
    let documented = &o.op["responses"][status.as_str()];
    prop_assert!(
        !documented.is_null(),
        "{what} -> {status}, which {} {} does not document: {shown}",
        o.method,
        o.path
    );
    let response = deref(&world.doc, documented);
    // The body must be of a media type the response documents (a route may offer several, as
    // the audit trail's JSON page and NDJSON export), and match that type's schema.
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let content = &response["content"];
    if content.as_object().is_none_or(|c| c.is_empty()) {
        prop_assert!(
            bytes.is_empty(),
            "{what} -> {status}: undocumented body {shown}"
        );
        return Ok(status);
    }
    prop_assert!(
        !content[media].is_null(),
        "{what} -> {status} {content_type}, not a media type the response documents"
    );
    let schema = content[media]["schema"].clone();
    // NDJSON: each line is one value of the schema; JSON: the whole body is; other media types
    // (and entries without a schema) are checked for their type only.
    let bodies: Vec<&[u8]> = match media {
        _ if schema.is_null() => Vec::new(),
        "application/x-ndjson" => bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect(),
        "application/json" => vec![&bytes[..]],
        _ => Vec::new(),
    };
    if bodies.is_empty() {
        return Ok(status);
    }
    let v = world.validator(&schema);
    for raw in bodies {
        let body: Value = serde_json::from_slice(raw).map_err(|e| {
            TestCaseError::fail(format!("{what} -> {status}: not JSON ({e}): {shown}"))
        })?;
        let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
        prop_assert!(
            errors.is_empty(),
            "{what} -> {status}: the body breaks the document: {errors:?}\n{shown}"
        );
    }
    Ok(status)
}

#[test]
fn requests_generated_from_the_document_get_documented_answers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let world = rt.block_on(world(&dir));
    let strategy = call_strategy(&world.doc, &world.ops);
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 300;
    }
    config.failure_persistence = None;
    config.max_shrink_iters = 128;
    let mut runner = TestRunner::new(config);
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<String, u32>::new());
    let result = runner.run(&strategy, |call| {
        let status = rt.block_on(check(&world, &call))?;
        *seen
            .borrow_mut()
            .entry(format!(
                "{} {} {}",
                world.ops[call.op].method,
                world.ops[call.op].path,
                status.as_u16()
            ))
            .or_default() += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    eprintln!("openapi fuzz: {seen:#?}");
    let successes = seen
        .iter()
        .filter(|(k, _)| k.ends_with(" 200") || k.ends_with(" 201") || k.ends_with(" 204"))
        .count();
    assert!(
        successes >= 8,
        "too few operations succeeded at least once: {seen:#?}"
    );
}
