//! `--demo` seeds traders and keeps a live market.

mod common;

use std::time::Duration;

#[tokio::test]
async fn demo_market_trades_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = common::started_state(&dir, &[]).await;
    let accounts = tradeplane_platform::demo::seed(&state).await.expect("seed");
    assert_eq!(
        tradeplane_platform::demo::seed(&state)
            .await
            .expect("seeding twice is harmless"),
        accounts
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tradeplane_platform::demo::spawn_market_maker(state.clone(), accounts, stop.clone());
    let mut traded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let trades = state
            .store
            .recent_trades("AAPL", 10)
            .await
            .expect("trades")
            .len()
            + state
                .store
                .recent_trades("BTC-USD", 10)
                .await
                .expect("trades")
                .len();
        let quoted = !state
            .store
            .depth_side("ETH-USD", tradeplane_engine::order::Side::Buy, 1)
            .await
            .expect("depth")
            .is_empty();
        if trades > 0 && quoted {
            traded = true;
            break;
        }
    }
    stop.cancel();
    assert!(
        traded,
        "within 10 s the demo market quotes every book and trades"
    );
    let alice = state
        .store
        .find_user("demo-alice")
        .await
        .expect("q")
        .expect("demo-alice exists");
    assert!(tradeplane_platform::auth::verify_password(
        tradeplane_platform::demo::DEMO_PASSWORD,
        &alice.password_hash
    ));
}
