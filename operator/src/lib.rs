//! Tradeplane operator: reconciles `TradingPlatform` resources into the Kubernetes objects that
//! run the trading platform. A library so the integration tests and the binary share one code path.

pub mod analysis;
pub mod apply;
pub mod archive_status;
pub mod backup_jobs;
pub mod backup_metrics;
pub mod canary;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod crd_rollout;
pub mod crd_s3;
pub mod errors;
pub mod events;
pub mod feed;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod otel;
pub mod resources;
pub mod restore;
pub mod rollout;
pub mod run;
pub mod schedule;
pub mod tls;
pub mod watch;
