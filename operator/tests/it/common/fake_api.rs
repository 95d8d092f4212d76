//! A small in-memory Kubernetes API server behind `tower-test`, enough for the reconciler:
//! server-side apply (replace, keep status), merge patch (status; a strategic merge patch is
//! taken as one), JSON patch (finalizers), GET/LIST (label selectors, `limit`/`continue`), POST,
//! DELETE, plus failure injection and a request log. `FakeApi::respond` lets the scale benchmark serve it over HTTP.
//!
//! Like kube-rs's controller-rs fixtures, the reconciler runs against a real `kube::Client`
//! whose transport is a `tower_test::mock` pair; instead of a fixed request script, requests are
//! answered from the store so tests can assert on outcomes and on what was written.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    /// HTTP method.
    pub method: Method,
    /// Path without query.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type.
    pub content_type: String,
    /// Parsed JSON body, if any.
    pub body: Option<Value>,
}

type FailFn = Box<dyn Fn(&Method, &str, &str) -> Option<u16> + Send>;
type RejectFn = Box<dyn Fn(&Method, &str, &str) -> Option<(u16, String, Value)> + Send>;
type Parked = (String, tower_test::mock::SendResponse<Response<Body>>);

/// State of the fake API server.
#[derive(Default)]
pub struct FakeState {
    /// Objects by path (`/apis/apps/v1/namespaces/ns/deployments/x`).
    pub store: BTreeMap<String, Value>,
    /// Every request, in order.
    pub log: Vec<Logged>,
    fail: Option<FailFn>,
    reject: Option<RejectFn>,
    counter: u64,
    /// Watch requests held open (answered by `end_watches`).
    watches: Vec<Parked>,
    /// Field managers owning `spec.replicas`, per object path (a model of server-side apply for
    /// that one field: the field is removed, then defaulted to 1, when its last owner stops
    /// sending it, as the API server does for a Deployment).
    replica_owners: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// When set, a migration Job (`…-migrate-…`) is created already `Complete`, as if its pod had
    /// run at once (a stand-in for the Job controller; tests of the migration gate clear it).
    pub complete_migrations: bool,
}

/// Handle to the fake: shared state plus the client talking to it.
#[derive(Clone)]
pub struct FakeApi {
    /// Shared state.
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeApi {
    /// Starts the fake and returns it with a client connected to it.
    pub fn start() -> (Self, Client) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(FakeState {
            complete_migrations: true,
            ..FakeState::default()
        }));
        let s = state.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let q = parts.uri.query().unwrap_or("");
                if parts.method == Method::GET
                    && (q.contains("watch=true") || q.contains("watch=1"))
                {
                    s.lock()
                        .unwrap()
                        .watches
                        .push((parts.uri.path().to_string(), send));
                    continue;
                }
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let resp = s.lock().unwrap().handle(parts, &bytes);
                send.send_response(resp);
            }
        });
        (Self { state }, Client::new(service, "default"))
    }

    /// Puts an object at `path`.
    pub fn put(&self, path: &str, obj: Value) {
        self.state
            .lock()
            .unwrap()
            .store
            .insert(path.to_string(), obj);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.state.lock().unwrap().store.get(path).cloned()
    }

    /// Removes the object at `path`.
    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().store.remove(path);
    }

    /// Edits the object at `path` in place.
    pub fn edit(&self, path: &str, f: impl FnOnce(&mut Value)) {
        let mut st = self.state.lock().unwrap();
        let obj = st.store.get_mut(path).expect("object exists");
        f(obj);
    }

    /// Makes requests matching `f(method, path, content_type)` fail with the returned code.
    pub fn fail_when(&self, f: impl Fn(&Method, &str, &str) -> Option<u16> + Send + 'static) {
        self.state.lock().unwrap().fail = Some(Box::new(f));
    }

    /// Stops injecting failures.
    pub fn heal(&self) {
        let mut st = self.state.lock().unwrap();
        st.fail = None;
        st.reject = None;
    }

    /// Makes requests matching `f(method, path, content_type)` fail with the returned code,
    /// reason and `details` (a Status `details` object, e.g. with `causes`).
    pub fn reject_when(
        &self,
        f: impl Fn(&Method, &str, &str) -> Option<(u16, String, Value)> + Send + 'static,
    ) {
        self.state.lock().unwrap().reject = Some(Box::new(f));
    }

    /// How many watch requests are held open.
    pub fn open_watches(&self) -> usize {
        self.state.lock().unwrap().watches.len()
    }

    /// Answers every held watch with `events` (one JSON watch event per line) and ends them, as
    /// an API server restart does (e.g. `{"type":"ERROR","object":<Status 410>}`).
    pub fn end_watches(&self, events: &[Value]) {
        self.answer_watches(|_| true, events);
    }

    /// Answers the held watches of `collection` (a path such as `/apis/batch/v1/namespaces/ns/jobs`)
    /// with one watch event and ends them; the watcher re-watches from the event's version, as
    /// after a real watch's timeout. Other watches stay open.
    pub fn send_watch_event(&self, collection: &str, event: &Value) {
        self.answer_watches(|path| path == collection, std::slice::from_ref(event));
    }

    /// Answers the held watches whose path `which` selects with `events` and ends them.
    fn answer_watches(&self, which: impl Fn(&str) -> bool, events: &[Value]) {
        let parked: Vec<Parked> = {
            let mut s = self.state.lock().unwrap();
            let (hit, keep) = std::mem::take(&mut s.watches)
                .into_iter()
                .partition(|(path, _)| which(path));
            s.watches = keep;
            hit
        };
        let mut body = Vec::new();
        for e in events {
            body.extend(serde_json::to_vec(e).unwrap());
            body.push(b'\n');
        }
        for (_, send) in parked {
            send.send_response(
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()))
                    .unwrap(),
            );
        }
    }

    /// Makes the fake leave new migration Jobs running (see `complete_migrations`).
    pub fn hold_migrations(&self) {
        self.state.lock().unwrap().complete_migrations = false;
    }

    /// Takes the request log.
    pub fn take_log(&self) -> Vec<Logged> {
        std::mem::take(&mut self.state.lock().unwrap().log)
    }

    /// Answers one request from the store, as the transport of `start` does, for serving the
    /// fake over real HTTP (the scale benchmark). Watch requests are the caller's to hold open.
    pub fn respond(&self, parts: http::request::Parts, body: &[u8]) -> Response<Body> {
        self.state.lock().unwrap().handle(parts, body)
    }
}

/// A 410 Gone watch event, as an API server sends when the resource version is too old.
pub fn gone_event() -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "too old resource version: 1 (100)", "reason": "Expired", "code": 410}})
}

fn status_with(code: u16, message: &str, details: Value) -> Response<Body> {
    let reason = match code {
        403 => "Forbidden",
        409 => "Conflict",
        422 => "Invalid",
        _ => "InternalError",
    };
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code, "details": details
    });
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code
    });
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn ok(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap()))
        .unwrap()
}

/// Splits `/api/v1/namespaces/ns/plural[/name[/sub]]` into (collection, name, subresource).
fn split(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = match segs.first() {
        Some(&"api") => 2,
        Some(&"apis") => 3,
        _ => return None,
    };
    let rest = &segs[base..];
    // namespaces/ns/plural/...
    if rest.len() < 3 || rest[0] != "namespaces" {
        // cluster-wide list, e.g. /apis/g/v/plural
        let coll = segs[..base + 1].join("/");
        return Some((format!("/{coll}"), rest.get(1).map(|s| s.to_string()), None));
    }
    let coll = format!("/{}", segs[..base + 3].join("/"));
    Some((
        coll,
        rest.get(3).map(|s| s.to_string()),
        rest.get(4).map(|s| s.to_string()),
    ))
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            return obj["metadata"]["labels"][k] != v;
        }
        match term.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k] == v,
            None => obj["metadata"]["labels"].get(term).is_some(),
        }
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    if let Value::Object(p) = patch {
        if !target.is_object() {
            *target = json!({});
        }
        let t = target.as_object_mut().unwrap();
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    } else {
        *target = patch.clone();
    }
}

fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    for op in ops.as_array().ok_or("not an array")? {
        let path = op["path"].as_str().ok_or("no path")?;
        let (parent_path, last) = path.rsplit_once('/').ok_or("bad path")?;
        match op["op"].as_str() {
            Some("test") => {
                let cur = doc.pointer(path).cloned().unwrap_or(Value::Null);
                if cur != op["value"] {
                    return Err(format!("test failed at {path}"));
                }
            }
            Some("add") => {
                let parent = doc.pointer_mut(parent_path).ok_or("no parent")?;
                match parent {
                    Value::Array(a) if last == "-" => a.push(op["value"].clone()),
                    Value::Array(a) => {
                        a.insert(last.parse().map_err(|_| "idx")?, op["value"].clone())
                    }
                    Value::Object(o) => {
                        o.insert(last.to_string(), op["value"].clone());
                    }
                    _ => return Err("bad parent".into()),
                }
            }
            Some("remove") => {
                let parent = doc.pointer_mut(parent_path).ok_or("no parent")?;
                match parent {
                    Value::Array(a) => {
                        let i: usize = last.parse().map_err(|_| "idx")?;
                        if i >= a.len() {
                            return Err("index out of range".into());
                        }
                        a.remove(i);
                    }
                    Value::Object(o) => {
                        o.remove(last);
                    }
                    _ => return Err("bad parent".into()),
                }
            }
            other => return Err(format!("unsupported op {other:?}")),
        }
    }
    Ok(())
}

fn set_managed_fields(obj: &mut Value, owners: Option<&std::collections::BTreeSet<String>>) {
    let entries: Vec<Value> = owners
        .into_iter()
        .flatten()
        .map(|m| {
            json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}}})
        })
        .collect();
    obj["metadata"]["managedFields"] = json!(entries);
}

impl FakeState {
    /// Sets the live replica count as the HPA controller would (it then owns the field).
    pub fn hpa_scales(&mut self, path: &str, replicas: i64) {
        let owners = self.replica_owners.entry(path.to_string()).or_default();
        owners.clear();
        owners.insert("kube-controller-manager".to_string());
        let owners = owners.clone();
        if let Some(o) = self.store.get_mut(path) {
            o["spec"]["replicas"] = json!(replicas);
            set_managed_fields(o, Some(&owners));
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn handle(&mut self, parts: http::request::Parts, bytes: &[u8]) -> Response<Body> {
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body: Option<Value> = serde_json::from_slice(bytes).ok().or_else(|| {
            serde_yaml_ng::from_slice(bytes)
                .ok()
                .filter(|v: &Value| !v.is_null())
        });
        self.log.push(Logged {
            method: parts.method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        if let Some(code) = self
            .fail
            .as_ref()
            .and_then(|f| f(&parts.method, &path, &content_type))
        {
            return status(
                code,
                "InternalError",
                &format!("injected failure for {} {path}", parts.method),
            );
        }
        if let Some((code, message, details)) = self
            .reject
            .as_ref()
            .and_then(|f| f(&parts.method, &path, &content_type))
        {
            return status_with(code, &message, details);
        }
        let Some((coll, name, sub)) = split(&path) else {
            return status(404, "NotFound", "unknown path");
        };
        let obj_path = name.as_ref().map(|n| format!("{coll}/{n}"));
        match (parts.method.clone(), obj_path) {
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector").unwrap_or_default();
                let items: Vec<Value> = self
                    .store
                    .iter()
                    .filter(|(k, v)| {
                        k.starts_with(&format!("{coll}/"))
                            && !k[coll.len() + 1..].contains('/')
                            && labels_match(v, &selector)
                    })
                    .map(|(_, v)| v.clone())
                    .collect();
                // Pages as the API server does: `limit` items from the `continue` offset, and a
                // `continue` token while more remain (the store is ordered, so offsets are stable).
                let from: usize = query_param(&query, "continue")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                let limit: usize = query_param(&query, "limit")
                    .and_then(|l| l.parse().ok())
                    .filter(|l| *l > 0)
                    .unwrap_or(usize::MAX);
                let total = items.len();
                let page: Vec<Value> = items.into_iter().skip(from).take(limit).collect();
                let next = from.saturating_add(page.len());
                let mut meta = json!({"resourceVersion": "1"});
                if next < total {
                    meta["continue"] = json!(next.to_string());
                }
                ok(
                    200,
                    &json!({"apiVersion": "v1", "kind": "List", "metadata": meta, "items": page}),
                )
            }
            (Method::GET, Some(p)) => match self.store.get(&p) {
                Some(v) => ok(200, v),
                None => status(404, "NotFound", &format!("{p} not found")),
            },
            (Method::POST, None) => {
                let Some(mut b) = body else {
                    return status(400, "BadRequest", "no body");
                };
                let name = b["metadata"]["name"]
                    .as_str()
                    .unwrap_or("generated")
                    .to_string();
                let p = format!("{coll}/{name}");
                if self.store.contains_key(&p) {
                    return status(409, "AlreadyExists", "exists");
                }
                let n = self.next();
                b["metadata"]["uid"] = json!(format!("uid-{n}"));
                b["metadata"]["resourceVersion"] = json!(n.to_string());
                self.store.insert(p, b.clone());
                ok(201, &b)
            }
            (Method::DELETE, Some(p)) => match self.store.remove(&p) {
                Some(v) => ok(200, &v),
                None => status(404, "NotFound", &format!("{p} not found")),
            },
            (Method::PATCH, Some(p)) => {
                let Some(b) = body else {
                    return status(400, "BadRequest", "no body");
                };
                let n = self.next();
                if content_type.starts_with("application/apply-patch") {
                    let manager = query_param(&query, "fieldManager").unwrap_or_default();
                    let old = self.store.get(&p).cloned();
                    if manager != "tradeplane-operator"
                        && let Some(o) = &old
                    {
                        // Another field manager: a partial apply, merged (enough for the handover).
                        let mut merged = o.clone();
                        merge_patch(&mut merged, &b);
                        if b["spec"].get("replicas").is_some() {
                            self.replica_owners
                                .entry(p.clone())
                                .or_default()
                                .insert(manager);
                        }
                        merged["metadata"]["resourceVersion"] = json!(n.to_string());
                        set_managed_fields(&mut merged, self.replica_owners.get(&p));
                        self.store.insert(p, merged.clone());
                        return ok(200, &merged);
                    }
                    let mut new = b.clone();
                    if coll.ends_with("/deployments") {
                        let owners = self.replica_owners.entry(p.clone()).or_default();
                        if b["spec"].get("replicas").is_some() {
                            owners.clear(); // forced apply takes the field
                            owners.insert(manager);
                        } else {
                            owners.remove(&manager);
                            let kept = old
                                .as_ref()
                                .and_then(|o| o["spec"].get("replicas").cloned());
                            new["spec"]["replicas"] = match kept {
                                Some(r) if !owners.is_empty() => r,
                                _ => json!(1), // removed, then defaulted by the API server
                            };
                        }
                        let owners = owners.clone();
                        set_managed_fields(&mut new, Some(&owners));
                    }
                    let spec_changed = old.as_ref().map(|o| o.get("spec") != b.get("spec"));
                    let meta = &mut new["metadata"];
                    match &old {
                        Some(o) => {
                            meta["uid"] = o["metadata"]["uid"].clone();
                            meta["creationTimestamp"] = o["metadata"]["creationTimestamp"].clone();
                            let generation = o["metadata"]["generation"].as_i64().unwrap_or(1);
                            meta["generation"] = json!(if spec_changed == Some(true) {
                                generation + 1
                            } else {
                                generation
                            });
                            if let Some(s) = o.get("status") {
                                new["status"] = s.clone();
                            }
                            if let Some(f) = o["metadata"].get("finalizers") {
                                new["metadata"]["finalizers"] = f.clone();
                            }
                        }
                        None => {
                            meta["uid"] = json!(format!("uid-{n}"));
                            meta["creationTimestamp"] = json!("2026-11-22T11:00:00Z");
                            meta["generation"] = json!(1);
                            if self.complete_migrations
                                && coll.ends_with("/jobs")
                                && p.contains("-migrate-")
                            {
                                new["status"] = json!({"succeeded": 1, "conditions": [
                                    {"type": "Complete", "status": "True"}]});
                            }
                        }
                    }
                    new["metadata"]["resourceVersion"] = json!(n.to_string());
                    self.store.insert(p, new.clone());
                    return ok(200, &new);
                }
                let Some(existing) = self.store.get_mut(&p) else {
                    return status(404, "NotFound", &format!("{p} not found"));
                };
                // A strategic merge patch (the Lease of leader election) is taken as a merge
                // patch: the same for objects without lists, such as a Lease's spec.
                if content_type.starts_with("application/merge-patch")
                    || content_type.starts_with("application/strategic-merge-patch")
                {
                    if sub.as_deref() == Some("status") {
                        merge_patch(&mut existing["status"], &b["status"]);
                    } else {
                        merge_patch(existing, &b);
                    }
                } else if content_type.starts_with("application/json-patch") {
                    let mut copy = existing.clone();
                    if let Err(e) = json_patch(&mut copy, &b) {
                        return status(422, "Invalid", &e);
                    }
                    *existing = copy;
                } else {
                    return status(415, "UnsupportedMediaType", &content_type);
                }
                existing["metadata"]["resourceVersion"] = json!(n.to_string());
                let v = existing.clone();
                ok(200, &v)
            }
            _ => status(405, "MethodNotAllowed", "unsupported"),
        }
    }
}
