//! Snapshot tests of `render` for every file in k8s/examples/. Regenerate with
//! `UPDATE_SNAPSHOTS=1 cargo test -p tradeplane-operator --test render_snapshots`.

use crate::common;

use tradeplane_operator::cli::render_yaml;

#[test]
fn render_matches_snapshots() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut failures = Vec::new();
    for f in common::example_files() {
        let input = std::fs::read_to_string(&f).unwrap();
        let rendered = render_yaml(&input).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let snap = dir.join(format!(
            "{}.rendered.yaml",
            f.file_stem().unwrap().to_string_lossy()
        ));
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&snap, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&snap) {
            Ok(expected) if expected == rendered => {}
            Ok(_) => failures.push(format!("{} differs from {}", f.display(), snap.display())),
            Err(_) => failures.push(format!("missing snapshot {}", snap.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:#?}\nreview and regenerate with UPDATE_SNAPSHOTS=1"
    );
}

#[test]
fn rendered_objects_have_kinds_and_names() {
    for f in common::example_files() {
        let rendered = render_yaml(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for doc in rendered.split("---\n").filter(|d| !d.trim().is_empty()) {
            let v: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
            assert!(v["kind"].is_string() && v["apiVersion"].is_string());
            assert!(v["metadata"]["name"].is_string());
        }
    }
}
