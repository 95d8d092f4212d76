//! Market data across replicas through Redis pub/sub.
//!
//! Each replica publishes the events its own matcher committed to one Redis channel and
//! re-broadcasts to its WebSocket clients the events other replicas published there. Without
//! Redis (the embedded single-replica setup) the local broadcast is all there is. Delivery is
//! best effort: a lost message shows up to clients as an `md_seq` gap, and they re-subscribe.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{MarketEvent, Trading};

/// The Redis channel market data travels on, under `REDIS_KEY_PREFIX`: the replicas of one
/// platform share it, another platform on the same Redis has its own.
pub fn channel(prefix: &str) -> String {
    format!("{prefix}market-data")
}

/// Starts the publisher and the subscriber tasks; both stop when `stop` is cancelled.
pub fn start(trading: &Trading, client: redis::Client, prefix: &str, stop: CancellationToken) {
    let channel = channel(prefix);
    tokio::spawn(publish(
        trading.clone(),
        client.clone(),
        channel.clone(),
        stop.clone(),
    ));
    tokio::spawn(subscribe(trading.clone(), client, channel, stop));
}

async fn publish(
    trading: Trading,
    client: redis::Client,
    channel: String,
    stop: CancellationToken,
) {
    let mut events = trading.subscribe();
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        let event = match event {
            Ok(e) if e.origin == trading.origin() => e,
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "market-data publisher fell behind; subscribers will see a gap"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Ok(payload) = serde_json::to_string(&*event) else {
            continue;
        };
        if conn.is_none() {
            conn = client.get_multiplexed_async_connection().await.ok();
        }
        if let Some(c) = conn.as_mut() {
            let sent: Result<(), _> = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(payload)
                .query_async(c)
                .await;
            if let Err(e) = sent {
                tracing::warn!(error = %e, "publishing market data to redis failed");
                conn = None;
            }
        }
    }
}

async fn subscribe(
    trading: Trading,
    client: redis::Client,
    channel: String,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(250);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "subscribing to market data failed");
                } else {
                    delay = Duration::from_millis(250);
                    let mut messages = pubsub.on_message();
                    loop {
                        let message = tokio::select! {
                            _ = stop.cancelled() => return,
                            m = messages.next() => m,
                        };
                        let Some(message) = message else { break };
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<MarketEvent>(&payload) {
                            Ok(event) if event.origin != trading.origin() => {
                                trading.republish(Arc::new(event))
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "malformed market-data message on redis")
                            }
                        }
                    }
                    tracing::warn!("market-data subscription lost; reconnecting");
                }
            }
            Err(e) => tracing::debug!(error = %e, "redis unreachable for market data; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}
