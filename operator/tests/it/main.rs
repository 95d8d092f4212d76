//! The operator's integration tests, one module per former test file, in one binary: each test
//! binary links the whole operator and its dependencies (~90 MB), and fifteen of them made up
//! most of CI's link time and disk. Run one suite with a filter:
//! `cargo test -p tradeplane-operator --test it crd::`.
//!
//! The scale benchmark stays a binary of its own (`--test scale_bench`, not run by `cargo test`),
//! and so does the OTLP test (`--test otlp`: it needs tracing's process-wide state to itself).

mod common;

mod archive;
mod archive_status;
mod backup_metrics;
mod backup_storage;
mod builders;
mod canary;
mod canary_analysis;
mod canary_overrides;
mod children;
mod controller;
mod crd;
mod events;
mod http_endpoints;
mod migration;
mod render_snapshots;
mod replicas;
mod restore;
mod resync_cache;
mod watch_restart;
