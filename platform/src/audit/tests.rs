use serde_json::json;

use super::*;

const THRESHOLD: Cash = Cash::from_raw(1_000 * SCALE as i128);
use tradeplane_engine::num::SCALE;

fn ctx(details: serde_json::Value) -> RiskContext {
    RiskContext::from_details(&details, THRESHOLD)
}

#[test]
fn every_kind_is_listed_once_with_a_bounded_base_and_tags() {
    for (i, r) in KINDS.iter().enumerate() {
        assert!(r.base <= MAX_SCORE, "{}", r.kind);
        assert!(!r.tags.is_empty(), "{} has no tags", r.kind);
        assert!(
            KINDS[i + 1..].iter().all(|o| o.kind != r.kind),
            "{} twice",
            r.kind
        );
    }
    for kind in [
        "order.approval_requested",
        "order.approved",
        "order.approval_rejected",
        "order.approval_expired",
        "order.approval_cancelled",
    ] {
        assert!(rule_of(kind).is_some(), "{kind} missing");
    }
}

#[test]
fn failed_logins_in_a_row_climb_to_high_risk() {
    let scores: Vec<u8> = (1..=6)
        .map(|n| score("login.failed", &ctx(json!({ "failed_logins": n }))))
        .collect();
    assert_eq!(scores, vec![15, 30, 45, 60, 75, 90]);
    assert!(scores[4] >= HIGH_RISK);
    assert_eq!(
        score("login.failed", &ctx(json!({ "failed_logins": 1000 }))),
        MAX_SCORE
    );
    assert_eq!(score("login.failed", &ctx(json!({}))), 15);
}

#[test]
fn a_login_from_a_new_ip_scores_higher() {
    assert_eq!(score("login", &ctx(json!({}))), 5);
    assert_eq!(score("login", &ctx(json!({ "new_ip": true }))), 45);
    assert_eq!(score("login", &ctx(json!({ "new_ip": false }))), 5);
    assert_eq!(score("login", &ctx(json!({ "new_ip": "yes" }))), 5);
    // A modifier applies only to the kinds that list it.
    assert_eq!(score("order.placed", &ctx(json!({ "new_ip": true }))), 20);
    assert_eq!(
        score("user.registered", &ctx(json!({ "failed_logins": 5 }))),
        5
    );
}

#[test]
fn large_orders_deposits_and_approvals_are_high_risk() {
    let big = json!({ "price": "100", "qty": "10" });
    let small = json!({ "price": "99.99", "qty": "10" });
    assert_eq!(score("order.placed", &ctx(big.clone())), 70);
    assert_eq!(score("order.placed", &ctx(small)), 20);
    assert_eq!(score("order.approved", &ctx(big)), 80);
    assert_eq!(
        score("order.approved", &ctx(json!({ "notional": "1000" }))),
        80
    );
    let raw = 1_000 * SCALE;
    assert_eq!(
        score("account.deposit", &ctx(json!({ "amount_raw": raw }))),
        80
    );
    assert_eq!(
        score("account.deposit", &ctx(json!({ "amount_raw": raw - 1 }))),
        30
    );
    assert_eq!(
        score(
            "account.deposit",
            &ctx(json!({ "symbol": "X", "qty": "20", "cost": "50" }))
        ),
        80
    );
    // A market order states no price: not large by its details alone.
    assert_eq!(
        score(
            "order.placed",
            &ctx(json!({ "price": null, "qty": "1000000" }))
        ),
        20
    );
    // Numbers where decimal strings belong are not read.
    assert_eq!(
        score("order.placed", &ctx(json!({ "price": 1e9, "qty": 1e9 }))),
        20
    );
}

#[test]
fn fixed_kinds_score_their_base_and_unknown_kinds_stand_out() {
    assert_eq!(score("mfa_disabled", &RiskContext::default()), 70);
    assert_eq!(score("market.halted", &RiskContext::default()), 80);
    assert_eq!(score("login.locked", &RiskContext::default()), 80);
    assert_eq!(score("mfa.key_rotated", &RiskContext::default()), 40);
    assert_eq!(score("no.such.kind", &RiskContext::default()), UNKNOWN_BASE);
    assert!(tags_of("no.such.kind").is_empty());
}

#[test]
fn tags_round_trip_through_the_column_and_parse_only_the_vocabulary() {
    for t in Tag::ALL {
        assert_eq!(t.as_str().parse::<Tag>(), Ok(t));
    }
    assert_eq!("AUTH".parse::<Tag>(), Err(UnknownTag));
    assert_eq!("%".parse::<Tag>(), Err(UnknownTag));
    assert_eq!(tags_column(&[Tag::Auth, Tag::Sox]), ",auth,sox,");
    assert_eq!(tags_column(&[]), ",");
    assert_eq!(
        parse_tags_column(",sox,auth,x,sox,"),
        vec![Tag::Sox, Tag::Auth]
    );
    let all = tags_column(&Tag::ALL);
    assert!(all.len() <= 64, "the column's CHECK allows 64: {all}");
}

/// The table in docs/security.md, between its markers, as (kind, base, modifiers, tags).
fn documented() -> Vec<(String, u8, Vec<String>, Vec<String>)> {
    let doc = include_str!("../../../docs/security.md");
    let start = doc
        .find("<!-- audit-kinds:start -->")
        .expect("start marker");
    let end = doc.find("<!-- audit-kinds:end -->").expect("end marker");
    let words = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|w| w.trim().trim_matches('`').to_owned())
            .filter(|w| !w.is_empty() && w != "—")
            .collect()
    };
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "{l}");
            (
                cells[0].trim_matches('`').to_owned(),
                cells[1].parse().expect("base is a number"),
                words(cells[2]),
                words(cells[3]),
            )
        })
        .collect()
}

#[test]
fn the_docs_table_is_the_code_table() {
    let code: Vec<(String, u8, Vec<String>, Vec<String>)> = KINDS
        .iter()
        .map(|r| {
            (
                r.kind.to_owned(),
                r.base,
                r.modifiers.iter().map(|m| m.as_str().to_owned()).collect(),
                r.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            )
        })
        .collect();
    assert_eq!(documented(), code);
}
