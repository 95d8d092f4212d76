//! `tradeplane-bare-http ADDR`: a bare axum "hello" server, the reference that
//! `scripts/bench-http.sh` measures the platform's `/health/live` against (same machine, same
//! run, same tokio multi-threaded runtime, same HTTP/1.1 stack), so the ratio shows what the
//! platform's middleware stack costs per request.

/// The allocator of the platform's image, when the benchmark builds both with it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: tradeplane-bare-http ADDR (e.g. 127.0.0.1:18081)");
        return ExitCode::from(2);
    };
    let listener = match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tradeplane-bare-http: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tradeplane-bare-http: {e}");
            ExitCode::from(1)
        }
    }
}
