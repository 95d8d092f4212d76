//! The SQLite reference for `scripts/bench-e2e.sh`: how many single-row `INSERT` transactions
//! per second this machine commits into an SQLite file with the platform's own settings (WAL,
//! `synchronous=FULL`, a 5 s busy timeout), from C concurrent writers — the rate one commit per
//! order would reach. pgbench plays this role for PostgreSQL.
//!
//! ```text
//! tradeplane-sqlite-bench FILE CLIENTS SECONDS
//! ```
//! prints `clients,tps,p50_ms,p99_ms`.

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, clients, seconds] = args.as_slice() else {
        return Err("usage: tradeplane-sqlite-bench FILE CLIENTS SECONDS".into());
    };
    let clients: u32 = clients.parse()?;
    let seconds: f64 = seconds.parse()?;
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{file}?mode=rwc"))?
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(clients.max(1))
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_insert (id INTEGER PRIMARY KEY, account BIGINT NOT NULL, \
         payload TEXT NOT NULL, created_at TEXT NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0i64;
            while Instant::now() < end {
                let started = Instant::now();
                sqlx::query(
                    "INSERT INTO bench_insert (account, payload, created_at) VALUES ($1, $2, datetime('now'))",
                )
                .bind(i64::from(c) * 1_000_000 + n)
                .bind("BTC-USD buy limit 30000.00 0.0100")
                .execute(&pool)
                .await?;
                latencies.push(started.elapsed());
                n += 1;
            }
            Ok::<_, sqlx::Error>(latencies)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{clients},{:.0},{:.3},{:.3}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
