//! `tradeplane-loadgen`: an end-to-end load generator for the Tradeplane platform.
//!
//! It registers trader accounts, funds them through the admin API (cash and units of every
//! default instrument), then, for each concurrency level, runs that many simulated clients, each
//! on its own HTTP/1.1 keep-alive connection, placing a realistic mix of orders (limit orders
//! around a mid price on both sides so trades happen, some IOC/FOK/market, some cancels). Every
//! level is bounded both in requests (`--orders-per-level`) and in time (`--max-seconds`), and
//! the generator only ever talks to loopback addresses.
//!
//! It prints one row per level: requests, successes per second, latency percentiles of the
//! completed requests (any status), 4xx/5xx/transport-error counts, and the server's mean batch
//! size and transaction time for the level and its CPU time per 2xx answer (read from its
//! `/metrics`: `process_cpu_seconds_total`, added up over every replica, around the measured part
//! only).
//!
//! ```text
//! tradeplane-loadgen --url http://127.0.0.1:18080 --admin-user admin \
//!     --admin-password 'a long password' --levels 1,4,16,64 --orders-per-level 2000 \
//!     --max-seconds 20 --accounts 32 [--csv out.csv] [--seed 7]
//! ```
//!
//! The admin password may also come from `LOADGEN_ADMIN_PASSWORD` or, so that one exported
//! variable serves both processes, from the platform's own `ADMIN_PASSWORD` (and the admin
//! name from `ADMIN_USERNAME`). `--help` lists every flag.
//!
//! Modules: [`args`] (command line), [`client`] (loopback HTTP/1.1 connections), [`setup`]
//! (traders), [`workload`] (the order mix), [`metrics`] (the server's `/metrics`), [`report`]
//! (histograms, printed rows, CSV).
//!
//! Errors never panic: refused connections, timeouts and 5xx answers are counted, and a setup
//! failure ends the process with a message and exit status 1.

mod args;
mod client;
mod metrics;
mod report;
mod setup;
mod workload;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use rand::SeedableRng;
use rand::rngs::StdRng;

use args::{Args, Options};
use client::{Conn, Target, resolve};
use metrics::scrape;
use report::{HEADER, Row, csv, format_row};
use setup::{Trader, login, refresh_tokens, set_up_traders};
use workload::{Stats, worker};

/// Runs one concurrency level.
async fn run_level(
    args: &Options,
    target: &Target,
    replicas: &[Target],
    traders: &[Trader],
    run: &str,
    concurrency: usize,
    seed: u64,
) -> (Row, HashMap<String, u64>, Option<String>) {
    let mut metrics_conn = Conn::new(target.clone(), args.timeout);
    let before = scrape(&mut metrics_conn).await;
    let cpu_before = cpu_seconds(args, replicas).await;
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.max_seconds);
    let tokens: Arc<Vec<String>> = Arc::new(traders.iter().map(|t| t.token.clone()).collect());
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        handles.push(tokio::spawn(worker(
            Conn::new(replicas[w % replicas.len()].clone(), args.timeout),
            tokens.clone(),
            StdRng::seed_from_u64(seed ^ ((concurrency as u64) << 32) ^ w as u64),
            format!("{run}-c{concurrency}-w{w}"),
            issued.clone(),
            args.orders_per_level,
            deadline,
        )));
    }
    let mut stats = Stats::default();
    for h in handles {
        match h.await {
            Ok(s) => stats.merge(s),
            Err(e) => {
                stats.transport_errors += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| format!("worker failed: {e}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = scrape(&mut metrics_conn).await;
    let cpu = cpu_seconds(args, replicas).await - cpu_before;
    let lat = &stats.latencies_us;
    let row = Row {
        concurrency,
        requests: stats.ok + stats.status_4xx + stats.status_5xx + stats.transport_errors,
        ok: stats.ok,
        seconds,
        p50_ms: lat.quantile_ms(0.50),
        p90_ms: lat.quantile_ms(0.90),
        p99_ms: lat.quantile_ms(0.99),
        max_ms: lat.max_ms(),
        status_4xx: stats.status_4xx,
        status_5xx: stats.status_5xx,
        errors: stats.transport_errors,
        filled: stats.filled,
        places: stats.places,
        cancels: stats.cancels,
        mean_batch: after.batch_size.mean_since(&before.batch_size),
        mean_tx_ms: after.match_latency.mean_since(&before.match_latency) * 1000.0,
        cpu_us_per_ok: if stats.ok > 0 {
            cpu * 1e6 / stats.ok as f64
        } else {
            0.0
        },
    };
    (row, stats.reject_codes, stats.first_error)
}

/// Every replica's process CPU time, added up: read around the measured part of a level only,
/// so the set-up (registering and logging in traders, with its password hashing) is not counted.
async fn cpu_seconds(args: &Options, replicas: &[Target]) -> f64 {
    let mut total = 0.0;
    for r in replicas {
        total += scrape(&mut Conn::new(r.clone(), args.timeout))
            .await
            .cpu_seconds;
    }
    total
}

async fn run(args: Options) -> Result<(), String> {
    let target = resolve(&args.url).await?;
    let mut replicas = Vec::new();
    for url in &args.urls {
        replicas.push(resolve(url).await?);
    }
    workload::select_markets(&args.symbols)?;
    let run = format!("{:x}", args.seed % 0xFFFF_FFFF);
    eprintln!(
        "loadgen: target {} ({}, {} replica URL(s)), run {run}, {} accounts, symbols {:?}, levels {:?}, {} requests or {}s per level",
        args.url,
        target.addr,
        args.urls.len(),
        args.accounts,
        args.symbols,
        args.levels,
        args.orders_per_level,
        args.max_seconds
    );

    let mut conn = Conn::new(target.clone(), args.timeout);
    let admin = login(&mut conn, &args.admin_user, &args.admin_password).await?;
    let setup = Instant::now();
    let mut traders = set_up_traders(&target, args.timeout, &admin, &run, args.accounts).await?;
    eprintln!(
        "loadgen: registered and funded {} traders in {:.1}s",
        traders.len(),
        setup.elapsed().as_secs_f64()
    );
    let mut tokens_at = Instant::now();

    println!("{HEADER}");
    let mut rows = Vec::new();
    for (i, &concurrency) in args.levels.iter().enumerate() {
        if tokens_at.elapsed() > Duration::from_secs(10 * 60) {
            refresh_tokens(&target, args.timeout, &mut traders).await?;
            tokens_at = Instant::now();
        }
        let (row, codes, first_error) = run_level(
            &args,
            &target,
            &replicas,
            &traders,
            &run,
            concurrency,
            args.seed.wrapping_add(i as u64),
        )
        .await;
        println!("{}", format_row(&row));
        if !codes.is_empty() {
            let mut codes: Vec<_> = codes.into_iter().collect();
            codes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let list: Vec<String> = codes.iter().map(|(c, n)| format!("{c}={n}")).collect();
            eprintln!("loadgen: c={concurrency} non-2xx: {}", list.join(" "));
        }
        if let Some(e) = first_error {
            eprintln!("loadgen: c={concurrency} first transport error: {e}");
        }
        rows.push(row);
    }
    let totals: (u64, u64) = rows
        .iter()
        .fold((0, 0), |acc, r| (acc.0 + r.places, acc.1 + r.cancels));
    eprintln!(
        "loadgen: {} places, {} cancels; 'ok/s' counts 2xx answers; latencies cover every HTTP answer; \
         batch/tx_ms are the server's mean matcher batch size and transaction time over the level; \
         cpu_us is the servers' CPU time per 2xx answer over the level (set-up excluded)",
        totals.0, totals.1
    );
    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&rows)).map_err(|e| format!("writing {path}: {e}"))?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::parse().resolve(std::env::var("ADMIN_PASSWORD").ok()) {
        Ok(a) => a,
        Err(e) => Args::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, e)
            .exit(),
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tradeplane-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
