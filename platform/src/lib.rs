//! Tradeplane's trading service.
//!
//! Start with [`server::run`]: it reads [`config::Config`], opens the [`store::Store`] and
//! [`cache::Cache`], serves [`http::router`] and drains gracefully on SIGTERM. Health semantics
//! live in [`health`], metrics in [`metrics`], the error envelope in [`error`].

pub mod accounts;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod health;
pub mod http;
pub mod input;
pub mod metrics;
pub mod mfa;
pub mod migrate;
pub mod passwords;
pub mod resilience;
pub mod server;
pub mod sessions;
pub mod slo;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod trading;
