//! Helpers shared by the integration tests: example files, CRD schema checks.
#![allow(dead_code)]

pub mod canary_env;
pub mod env;
pub mod fake_api;

use std::path::PathBuf;

use kube::CustomResourceExt;
use serde_json::Value;
use tradeplane_operator::crd::TradingPlatform;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every example TradingPlatform file, sorted.
pub fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("k8s/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("k8s/examples exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    files
}

/// The CRD's openAPIV3Schema as JSON.
pub fn schema() -> Value {
    let crd = TradingPlatform::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("schema json")
}

/// Runs the CRD's CEL rules on a raw object, the way the apiserver does (defaults applied first).
pub fn cel(obj: &Value) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(&schema(), obj, None)
        .map_err(|e| format!("{e:?}"))
}

/// Structural validation of a raw object against the schema: unknown fields (which the apiserver
/// would silently prune), types, required fields, enums, bounds, lengths and patterns.
pub fn structural(obj: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    walk(&schema(), obj, "", &mut errors, true);
    errors
}

fn walk(schema: &Value, v: &Value, path: &str, errors: &mut Vec<String>, root: bool) {
    if schema.get("x-kubernetes-int-or-string").is_some() {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errors.push(format!("{path}: expected int or string"));
        }
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields").is_some()
        && schema.get("properties").is_none()
    {
        return;
    }
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errors.push(format!("{path}: null not allowed"));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{path}: expected {}", ty.unwrap_or("?")));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{path}: {v} not in {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{path}: {n} < minimum {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{path}: {n} > maximum {max}"));
        }
    }
    if let Some(s) = v.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            errors.push(format!("{path}: shorter than {min}"));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            errors.push(format!("{path}: longer than {max}"));
        }
        if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
            let re = regex::Regex::new(p).expect("pattern compiles");
            if !re.is_match(s) {
                errors.push(format!("{path}: {s:?} does not match {p}"));
            }
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            errors.push(format!("{path}: fewer than {min} item(s)"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && items.len() as u64 > max
        {
            errors.push(format!("{path}: more than {max} items"));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                walk(item_schema, item, &format!("{path}[{i}]"), errors, false);
            }
        }
    }
    if let Some(map) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !map.contains_key(req) {
                errors.push(format!("{path}.{req}: required"));
            }
        }
        for (k, child) in map {
            if root && (k == "apiVersion" || k == "kind" || k == "metadata") {
                continue;
            }
            let child_path = format!("{path}.{k}");
            if let Some(s) = props.and_then(|p| p.get(k)) {
                walk(s, child, &child_path, errors, false);
            } else if let Some(ap) = schema.get("additionalProperties") {
                if ap.is_object() {
                    walk(ap, child, &child_path, errors, false);
                }
            } else {
                errors.push(format!(
                    "{child_path}: unknown field (the apiserver would drop it)"
                ));
            }
        }
    }
}

/// Reads a YAML file as JSON.
pub fn yaml_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("readable");
    serde_yaml_ng::from_str(&text).expect("valid yaml")
}
