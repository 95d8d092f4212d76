//! The operator and the platform agree: what the operator renders for every example
//! TradingPlatform is accepted by the platform's real command line and configuration parser.

use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use serde_yaml_ng::Value;
use tradeplane_platform::cli::{Cli, Command};
use tradeplane_platform::config::Config;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../k8s/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("k8s/examples exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "minimal, production and development examples: {files:?}"
    );
    files
}

fn rendered(path: &PathBuf) -> Vec<Value> {
    let yaml = std::fs::read_to_string(path).expect("example readable");
    let out = tradeplane_operator::cli::render_yaml(&yaml)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn backup_cronjob_runs_a_command_the_platform_accepts() {
    let mut cronjobs = 0;
    let mut s3_examples = 0;
    for path in examples() {
        for obj in rendered(&path).iter().filter(|o| kind(o) == "CronJob") {
            cronjobs += 1;
            let container =
                &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
            let mut argv = strings(&container["command"]);
            argv.extend(strings(&container["args"]));
            assert!(
                argv.first()
                    .is_some_and(|b| b.ends_with("tradeplane-platform")),
                "{}: the CronJob runs the platform binary: {argv:?}",
                path.display()
            );
            let cli = Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{}: {argv:?} does not parse: {e}", path.display()));
            let Some(Command::Backup(args)) = cli.command else {
                panic!("{}: not a backup command: {argv:?}", path.display())
            };
            assert!(args.action.is_none(), "takes a backup, not verify");
            assert_eq!(
                args.result_file.as_deref(),
                Some(std::path::Path::new("/dev/termination-log")),
                "{}: the result goes to the termination message the operator reads",
                path.display()
            );
            let dest = args.dest.as_deref().unwrap_or_default();
            if dest.starts_with("s3://") {
                s3_dest_is_understood(&path, dest, container);
                s3_examples += 1;
            } else {
                assert_eq!(dest, "/backups", "{}", path.display());
                let mounts = &container["volumeMounts"];
                assert!(
                    mounts
                        .as_sequence()
                        .is_some_and(|m| m.iter().any(|m| m["mountPath"] == "/backups")),
                    "{}: the backup volume is mounted at --dest",
                    path.display()
                );
            }
            let env: Vec<&str> = container["env"]
                .as_sequence()
                .map(|e| e.iter().filter_map(|x| x["name"].as_str()).collect())
                .unwrap_or_default();
            assert!(env.contains(&"DATABASE_URL"), "{}: {env:?}", path.display());
        }
    }
    assert!(cronjobs > 0, "at least one example enables backups");
    assert!(s3_examples > 0, "at least one example backs up to S3");
}

/// The platform parses the `--dest` URL and builds an object-store client from exactly the
/// `AWS_*` variables the operator sets (literal values; Secret-backed ones get a stand-in).
fn s3_dest_is_understood(path: &std::path::Path, dest: &str, container: &Value) {
    use tradeplane_platform::backup::{Location, Reference};
    let vars: Vec<(String, String)> = container["env"]
        .as_sequence()
        .map(|e| {
            e.iter()
                .filter_map(|x| {
                    let name = x["name"].as_str()?.to_owned();
                    let value = x["value"].as_str().unwrap_or("from-a-secret").to_owned();
                    Some((name, value))
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, _) in vars.iter().filter(|(n, _)| n.starts_with("AWS_")) {
        assert!(
            name.to_ascii_lowercase()
                .parse::<object_store::aws::AmazonS3ConfigKey>()
                .is_ok(),
            "{}: the platform's S3 client does not read {name}",
            path.display()
        );
    }
    let Ok(Reference::Place(Location::S3(target))) = Reference::parse_with(dest, vars) else {
        panic!("{}: {dest} is not a bucket place", path.display())
    };
    tradeplane_platform::backup::s3::Bucket::connect(&target)
        .unwrap_or_else(|e| panic!("{}: {dest}: {e}", path.display()));
}

#[test]
fn deployment_probes_and_configmap_match_the_platform() {
    let mut archived = 0;
    for path in examples() {
        let objects = rendered(&path);
        let deployment = objects
            .iter()
            .find(|o| kind(o) == "Deployment")
            .expect("a Deployment");
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        for (probe, path_want) in [
            ("startupProbe", "/health/startup"),
            ("livenessProbe", "/health/live"),
            ("readinessProbe", "/health/ready"),
        ] {
            assert_eq!(
                container[probe]["httpGet"]["path"],
                path_want,
                "{}: {probe}",
                path.display()
            );
        }
        let ports: Vec<i64> = container["ports"]
            .as_sequence()
            .map(|p| {
                p.iter()
                    .filter_map(|x| x["containerPort"].as_i64())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            ports.contains(&8080),
            "{}: the platform listens on 8080: {ports:?}",
            path.display()
        );

        // The ConfigMap is loaded with envFrom: every key must be a variable the platform
        // accepts with that value, or the pods would crash-loop on start.
        let cm = objects
            .iter()
            .find(|o| kind(o) == "ConfigMap")
            .expect("a ConfigMap");
        let mut vars: Vec<(String, String)> = cm["data"]
            .as_mapping()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            !vars.is_empty(),
            "{}: the ConfigMap carries settings",
            path.display()
        );
        vars.push(("DATABASE_URL".into(), "postgres://u@db/tradeplane".into()));
        vars.push((
            "JWT_SECRET".into(),
            "0123456789abcdef0123456789abcdef".into(),
        ));
        // The container's own literal variables (the archive's, with `spec.backup.archive`)
        // must be accepted too; a Secret-backed key gets a valid stand-in.
        for e in container["env"].as_sequence().into_iter().flatten() {
            let Some(name) = e["name"].as_str() else {
                continue;
            };
            match (e["value"].as_str(), name) {
                (Some(v), _) => vars.push((name.to_owned(), v.to_owned())),
                (None, "BACKUP_ENCRYPTION_KEY") => vars.push((
                    name.to_owned(),
                    "ERERERERERERERERERERERERERERERERERERERERERE=".to_owned(),
                )),
                _ => {}
            }
        }
        let config = Config::from_vars(vars.clone())
            .unwrap_or_else(|e| panic!("{}: ConfigMap {vars:?} is refused: {e}", path.display()));
        if vars.iter().any(|(k, _)| k == "ARCHIVE_DEST") {
            assert!(
                config.archive.is_some(),
                "{}: archiving is on",
                path.display()
            );
            archived += 1;
        }
    }
    assert!(archived > 0, "at least one example archives the change log");
}

/// The restore Job of `spec.restore` runs a point-in-time restore the platform's command line
/// accepts, from the source the spec names.
#[test]
fn restore_job_runs_a_restore_the_platform_accepts() {
    let mut jobs = 0;
    for path in examples() {
        for obj in rendered(&path).iter().filter(|o| {
            kind(o) == "Job"
                && o["metadata"]["labels"]["app.kubernetes.io/component"].as_str()
                    == Some("restore")
        }) {
            jobs += 1;
            let container = &obj["spec"]["template"]["spec"]["containers"][0];
            let mut argv = strings(&container["command"]);
            argv.extend(strings(&container["args"]));
            let cli = Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{}: {argv:?} does not parse: {e}", path.display()));
            let Some(Command::Restore(args)) = cli.command else {
                panic!("{}: not a restore command: {argv:?}", path.display())
            };
            assert!(args.backup.starts_with("s3://"), "{argv:?}");
            assert!(
                args.until.is_some() || args.until_seq.is_some(),
                "{}: a point in time: {argv:?}",
                path.display()
            );
            s3_dest_is_understood(&path, &args.backup, container);
        }
    }
    assert!(
        jobs > 0,
        "at least one example restores into a new TradingPlatform"
    );
}

/// The backup command's result line (its termination message in the Job) is what the
/// operator's backup metrics parse.
#[test]
fn the_backup_result_line_is_what_the_operator_reads() {
    let line = tradeplane_platform::backup::result_file::RunResult {
        operation: "backup".into(),
        success: true,
        exit_code: 0,
        finished_at: 1_795_312_809.5,
        duration_seconds: 8.25,
        size_bytes: 123_456,
        rows: 789,
        backup: Some("s3://b/p/tradeplane-backup-20261122T020001.000Z.tpb".into()),
        error: None,
    }
    .to_line();
    let got =
        tradeplane_operator::backup_metrics::parse_message(&line).expect("the operator parses it");
    assert!(got.success);
    assert_eq!(
        (got.size_bytes, got.rows, got.duration_seconds),
        (123_456, 789, 8.25)
    );
    assert!(line.len() < 4096, "fits a termination message");
}
