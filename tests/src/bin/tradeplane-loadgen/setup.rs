//! Registers, funds and logs in the trader accounts the load is sent as.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::client::{Conn, Target};
use crate::workload::{DEPOSIT_CASH, active, fixed};

/// A funded trader.
#[derive(Debug, Clone)]
pub struct Trader {
    pub username: String,
    pub token: String,
}

/// Logs in and returns the access token.
pub async fn login(conn: &mut Conn, username: &str, password: &str) -> Result<String, String> {
    let body = json!({ "username": username, "password": password });
    let v = conn
        .expect(Method::POST, "/api/v1/auth/login", None, Some(&body), 200)
        .await?;
    v["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("login of {username}: no access_token in answer"))
}

const TRADER_PASSWORD: &str = "loadgen-trader-password";

/// Registers, funds and logs in one trader.
async fn set_up_trader(conn: &mut Conn, admin: &str, username: String) -> Result<Trader, String> {
    let body = json!({ "username": username, "password": TRADER_PASSWORD });
    let user = conn
        .expect(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(&body),
            201,
        )
        .await?;
    let account = user["account_id"]
        .as_i64()
        .ok_or_else(|| format!("register {username}: no account_id in answer"))?;
    let path = format!("/api/v1/admin/accounts/{account}/deposits");
    conn.expect(
        Method::POST,
        &path,
        Some(admin),
        Some(&json!({ "amount": DEPOSIT_CASH })),
        200,
    )
    .await?;
    for m in active() {
        let body = json!({
            "amount": m.deposit_units,
            "symbol": m.symbol,
            "cost": fixed(m.mid_cents, 2),
        });
        conn.expect(Method::POST, &path, Some(admin), Some(&body), 200)
            .await?;
    }
    let token = login(conn, &username, TRADER_PASSWORD).await?;
    Ok(Trader { username, token })
}

/// Registers and funds `n` traders, a few at a time (password hashing is deliberately slow).
pub async fn set_up_traders(
    target: &Target,
    timeout: Duration,
    admin: &str,
    run: &str,
    n: usize,
) -> Result<Vec<Trader>, String> {
    const PARALLEL: usize = 4;
    let mut handles = Vec::new();
    for lane in 0..PARALLEL.min(n) {
        let (target, admin, run) = (target.clone(), admin.to_owned(), run.to_owned());
        handles.push(tokio::spawn(async move {
            let mut conn = Conn::new(target, timeout);
            let mut out = Vec::new();
            for i in (lane..n).step_by(PARALLEL) {
                let trader = set_up_trader(&mut conn, &admin, format!("lg{run}-{i}")).await?;
                out.push((i, trader));
            }
            Ok::<_, String>(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.map_err(|e| format!("setup task failed: {e}"))??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

/// Logs every trader in again (access tokens live 15 minutes).
pub async fn refresh_tokens(
    target: &Target,
    timeout: Duration,
    traders: &mut [Trader],
) -> Result<(), String> {
    let mut conn = Conn::new(target.clone(), timeout);
    for t in traders.iter_mut() {
        t.token = login(&mut conn, &t.username, TRADER_PASSWORD).await?;
    }
    Ok(())
}
