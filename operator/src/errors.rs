//! API errors in words for conditions, Events and logs: the field, the reason and what to do,
//! never a debug dump of `kube::Error`.

use kube::core::Status;

/// A refused request in words: `"<field>: <message> (<code> <reason>). <what to do>"`.
pub fn status_words(s: &Status) -> String {
    let causes: Vec<String> = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| !c.message.is_empty() || !c.field.is_empty())
        .map(|c| {
            if c.field.is_empty() {
                c.message.clone()
            } else if c.message.is_empty() {
                format!("field {}", c.field)
            } else {
                format!("field {}: {}", c.field, c.message)
            }
        })
        .collect();
    let what = if causes.is_empty() {
        if s.message.is_empty() {
            "no message".to_string()
        } else {
            s.message.clone()
        }
    } else {
        causes.join("; ")
    };
    let reason = if s.reason.is_empty() {
        String::new()
    } else {
        format!(" {}", s.reason)
    };
    format!("{what} ({}{reason}). {}", s.code, advice(s))
}

/// What to do about a refused request.
pub fn advice(s: &Status) -> &'static str {
    if is_namespace_terminating(s) {
        return "The namespace is being deleted; the operator creates nothing more in it.";
    }
    match s.code {
        400 => "The request was malformed: an operator bug, please report it with this message.",
        401 => "The operator's credentials were refused: check its ServiceAccount token.",
        403 => {
            "The operator lacks permission: install the chart's ClusterRole (docs/operator.md, RBAC)."
        }
        404 => "The object or its API is missing: check that this cluster serves the API group.",
        409 => {
            "Another writer changed the object at the same time: the operator retries with backoff."
        }
        410 => "The resource version is too old: the operator relists and retries.",
        422 if needs_recreate(s) => {
            "The live object cannot be merged with the desired one: the operator deletes and re-creates it."
        }
        422 => {
            "The API server refused the value: correct the TradingPlatform field it comes from (see the field above)."
        }
        429 => "The API server is throttling requests: the operator retries with backoff.",
        500..=599 => "The API server failed: the operator retries with backoff.",
        _ => "The operator retries with backoff.",
    }
}

/// Any client error in words.
pub fn kube_error_words(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => status_words(s),
        kube::Error::HyperError(err) => {
            format!("cannot reach the API server: {err}; the operator retries with backoff")
        }
        kube::Error::Service(err) => {
            format!("cannot reach the API server: {err}; the operator retries with backoff")
        }
        kube::Error::SerdeError(err) => format!(
            "the API server's answer could not be read: {err}; check that the CRD is the operator's version (crds/tradingplatform.yaml)"
        ),
        other => other.to_string(),
    }
}

/// The request failed because the namespace is being deleted (403 `NamespaceTerminating`, or a
/// 409/403 whose message says so).
pub fn is_namespace_terminating(s: &Status) -> bool {
    let by_cause = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .any(|c| c.reason == "NamespaceTerminating");
    (s.code == 403 || s.code == 409) && (by_cause || s.message.contains("being terminated"))
}

/// A 422 that server-side apply cannot resolve by itself: a list-map key conflict with entries
/// another manager added (`Duplicate value`) or a change to an immutable field. Re-creating the
/// object from the desired state resolves both.
pub fn needs_recreate(s: &Status) -> bool {
    if s.code != 422 {
        return false;
    }
    let texts = std::iter::once(s.message.as_str()).chain(
        s.details
            .iter()
            .flat_map(|d| d.causes.iter())
            .flat_map(|c| [c.message.as_str(), c.reason.as_str()]),
    );
    texts.into_iter().any(|t| {
        t.contains("Duplicate value")
            || t.contains("FieldValueDuplicate")
            || t.contains("field is immutable")
            || t.contains("is immutable")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    fn status(code: u16, reason: &str, message: &str, causes: Vec<StatusCause>) -> Status {
        let mut s = Status::failure(message, reason);
        s.code = code;
        if !causes.is_empty() {
            s.details = Some(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            });
        }
        s
    }

    #[test]
    fn duplicate_port_name_is_named_and_repaired_by_recreate() {
        let s = status(
            422,
            "Invalid",
            "Service \"x\" is invalid: spec.ports[1].name: Duplicate value: \"http\"",
            vec![StatusCause {
                reason: "FieldValueDuplicate".into(),
                message: "Duplicate value: \"http\"".into(),
                field: "spec.ports[1].name".into(),
            }],
        );
        let w = status_words(&s);
        assert!(
            w.starts_with("field spec.ports[1].name: Duplicate value: \"http\" (422 Invalid)"),
            "{w}"
        );
        assert!(w.contains("re-creates"), "{w}");
        assert!(!w.contains("Status {"), "{w}");
        assert!(needs_recreate(&s));
    }

    #[test]
    fn immutable_selector_needs_recreate_but_a_bad_value_does_not() {
        let s = status(
            422,
            "Invalid",
            "Deployment.apps \"x\" is invalid: spec.selector: Invalid value: ...: field is immutable",
            vec![],
        );
        assert!(needs_recreate(&s));
        let s = status(
            422,
            "Invalid",
            "spec.template.spec.containers[0].image: Required value",
            vec![],
        );
        assert!(!needs_recreate(&s));
        assert!(status_words(&s).contains("correct the TradingPlatform field"));
    }

    #[test]
    fn namespace_terminating_is_recognised() {
        let s = status(
            403,
            "Forbidden",
            "services \"x\" is forbidden: unable to create new content in namespace ns because it is being terminated",
            vec![],
        );
        assert!(is_namespace_terminating(&s));
        assert!(status_words(&s).contains("being deleted"));
        let s = status(403, "Forbidden", "cannot patch", vec![]);
        assert!(!is_namespace_terminating(&s));
        assert!(status_words(&s).contains("RBAC"));
    }
}
