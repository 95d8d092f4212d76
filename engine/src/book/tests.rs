//! Unit tests of the book's queues and of its undo log: exact positions, counters and totals,
//! so a broken rollback, a dropped log or a misplaced re-insert fails here.

use super::*;

const BID: Side = Side::Buy;
const ASK: Side = Side::Sell;

fn order(id: u64, side: Side, price: i64, remaining: i64) -> RestingOrder {
    RestingOrder {
        id: OrderId(id),
        account: AccountId(id % 3),
        side,
        price: Price::from_raw(price),
        qty: Qty::from_raw(remaining + 5),
        remaining: Qty::from_raw(remaining),
        priority: id,
    }
}

/// Everything observable about a book, to compare before and after.
fn snapshot(b: &Book) -> (Vec<RestingOrder>, Vec<DepthLevel>, Vec<DepthLevel>, usize) {
    (
        b.orders().copied().collect(),
        b.depth(BID, 100),
        b.depth(ASK, 100),
        b.len(),
    )
}

fn ids_at(b: &Book, side: Side, price: i64) -> Vec<u64> {
    b.orders()
        .filter(|o| o.side == side && o.price == Price::from_raw(price))
        .map(|o| o.id.0)
        .collect()
}

fn level(b: &Book, side: Side, price: i64) -> (i64, u32) {
    let l = b.level(side, Price::from_raw(price));
    (l.qty.raw(), l.orders)
}

/// Bids at 100 (ids 1..=5, qty = id) and 99 (6, 7); asks at 101 (8, 9) and 102 (10).
fn book() -> Book {
    let mut b = Book::default();
    for id in 1..=5 {
        b.insert(order(id, BID, 100, id as i64));
    }
    b.insert(order(6, BID, 99, 6));
    b.insert(order(7, BID, 99, 7));
    b.insert(order(8, ASK, 101, 8));
    b.insert(order(9, ASK, 101, 9));
    b.insert(order(10, ASK, 102, 10));
    b
}

/// The `next` the undo log recorded for the last removal.
fn last_removed_next(b: &Book) -> Option<OrderId> {
    match b.undo.as_ref().and_then(|l| l.last()) {
        Some(Undo::Removed { next, .. }) => *next,
        other => panic!("last undo entry is not a removal: {other:?}"),
    }
}

#[test]
fn levels_count_orders_and_quantity() {
    let b = book();
    assert_eq!(level(&b, BID, 100), (15, 5));
    assert_eq!(level(&b, BID, 99), (13, 2));
    assert_eq!(level(&b, ASK, 101), (17, 2));
    assert_eq!(level(&b, ASK, 98), (0, 0));
    assert_eq!(b.best_bid().map(|l| l.price.raw()), Some(100));
    assert_eq!(b.best_ask().map(|l| l.price.raw()), Some(101));
    assert_eq!(b.len(), 10);
    assert!(!b.is_empty());
    assert!(Book::default().is_empty());
    assert_eq!(
        b.orders().map(|o| o.id.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "bids best first then asks best first, each level in time order"
    );
    assert_eq!(b.get(OrderId(4)), Some(&order(4, BID, 100, 4)));
    assert_eq!(b.get(OrderId(11)), None);
}

#[test]
fn remove_anywhere_keeps_the_queue_and_its_counters() {
    let mut b = book();
    assert_eq!(b.remove(OrderId(3)), Some(order(3, BID, 100, 3)));
    assert_eq!(ids_at(&b, BID, 100), [1, 2, 4, 5]);
    assert_eq!(level(&b, BID, 100), (12, 4));
    b.remove(OrderId(1));
    b.remove(OrderId(5));
    assert_eq!(ids_at(&b, BID, 100), [2, 4]);
    assert_eq!(level(&b, BID, 100), (6, 2));
    assert_eq!(b.front(BID).map(|o| o.id.0), Some(2));
    assert_eq!(b.remove(OrderId(3)), None, "already gone");
    assert!(!b.contains(OrderId(3)));
    b.remove(OrderId(2));
    b.remove(OrderId(4));
    assert_eq!(
        b.best_bid().map(|l| l.price.raw()),
        Some(99),
        "empty level dropped"
    );
    assert_eq!(b.depth(BID, 10).len(), 1);
    assert_eq!(b.len(), 5);
}

#[test]
fn fill_front_fills_in_time_priority_and_drops_empty_levels() {
    let mut b = book();
    assert_eq!(b.fill_front(ASK, Qty::from_raw(3)), Qty::from_raw(5));
    assert_eq!(b.get(OrderId(8)).map(|o| o.remaining.raw()), Some(5));
    assert_eq!(level(&b, ASK, 101), (14, 2));
    assert_eq!(
        b.fill_front(ASK, Qty::from_raw(50)),
        Qty::ZERO,
        "fills at most the front"
    );
    assert!(!b.contains(OrderId(8)));
    assert_eq!(b.front(ASK).map(|o| o.id.0), Some(9));
    assert_eq!(b.fill_front(ASK, Qty::from_raw(9)), Qty::ZERO);
    assert_eq!(
        b.best_ask().map(|l| (l.price.raw(), l.orders)),
        Some((102, 1))
    );
    assert_eq!(b.fill_front(BID, Qty::from_raw(1)), Qty::ZERO);
    assert_eq!(b.front(BID).map(|o| o.id.0), Some(2));
    let mut empty = Book::default();
    assert_eq!(empty.fill_front(BID, Qty::from_raw(1)), Qty::ZERO);
    assert_eq!(empty.front(BID), None);
}

#[test]
fn fillable_walks_levels_skips_own_orders_and_stops_at_the_limit() {
    let b = book();
    // Asks: 8 (account 2) 8 @101, 9 (account 0) 9 @101, 10 (account 1) 10 @102.
    let all = |_: Price| true;
    let (q, c) = b.fillable(BID, AccountId(7), Qty::from_raw(20), all);
    assert_eq!(
        (q.raw(), c),
        (
            20,
            notional(Price::from_raw(101), Qty::from_raw(17))
                + notional(Price::from_raw(102), Qty::from_raw(3))
        )
    );
    let (q, _) = b.fillable(BID, AccountId(0), Qty::from_raw(100), all);
    assert_eq!(q.raw(), 18, "account 0's own order is skipped");
    let (q, _) = b.fillable(BID, AccountId(7), Qty::from_raw(100), |p| p.raw() <= 101);
    assert_eq!(q.raw(), 17, "stops at the first unacceptable level");
    let (q, c) = b.fillable(BID, AccountId(7), Qty::from_raw(5), all);
    assert_eq!(
        (q.raw(), c),
        (5, notional(Price::from_raw(101), Qty::from_raw(5)))
    );
    let (q, _) = b.fillable(ASK, AccountId(7), Qty::from_raw(16), all);
    assert_eq!(q.raw(), 15 + 1, "a sell walks the bids from the best");
}

#[test]
fn rollback_undoes_every_kind_of_mutation_exactly() {
    let mut b = book();
    let before = snapshot(&b);
    b.start_undo();
    b.remove(OrderId(3)); // middle of a level
    b.fill_front(BID, Qty::from_raw(1)); // order 1 filled completely
    b.fill_front(BID, Qty::from_raw(1)); // order 2 partly
    b.insert(order(11, BID, 100, 4));
    b.insert(order(12, ASK, 103, 2)); // a new level
    b.fill_front(ASK, Qty::from_raw(8)); // order 8 completely
    b.fill_front(ASK, Qty::from_raw(9)); // order 9: level 101 gone
    b.remove(OrderId(11));
    b.remove(OrderId(7)); // the back of a level
    b.remove(OrderId(6)); // level 99 gone
    assert_ne!(snapshot(&b), before);
    b.rollback_undo();
    assert_eq!(snapshot(&b), before);
    for id in 1..=10 {
        assert_eq!(b.get(OrderId(id)), before.0.iter().find(|o| o.id.0 == id));
    }
    assert!(!b.contains(OrderId(11)) && !b.contains(OrderId(12)));
    // The restored queues keep working in time priority.
    assert_eq!(b.fill_front(BID, Qty::from_raw(1)), Qty::ZERO);
    assert_eq!(b.front(BID).map(|o| o.id.0), Some(2));
    b.insert(order(13, BID, 100, 1));
    assert_eq!(ids_at(&b, BID, 100), [2, 3, 4, 5, 13]);
}

#[test]
fn rollback_gives_back_exactly_what_partial_fills_took() {
    let mut b = book();
    b.start_undo();
    assert_eq!(b.fill_front(ASK, Qty::from_raw(3)), Qty::from_raw(5));
    assert_eq!(b.fill_front(ASK, Qty::from_raw(2)), Qty::from_raw(3));
    b.rollback_undo();
    assert_eq!(b.get(OrderId(8)).map(|o| o.remaining.raw()), Some(8));
    assert_eq!(level(&b, ASK, 101), (17, 2));
}

#[test]
fn rollback_without_a_log_or_after_commit_changes_nothing() {
    let mut b = book();
    b.remove(OrderId(2)); // not recorded: no batch
    let after = snapshot(&b);
    b.rollback_undo();
    assert_eq!(snapshot(&b), after);

    b.start_undo();
    b.remove(OrderId(4));
    b.insert(order(11, ASK, 101, 1));
    b.drop_undo(); // committed
    let committed = snapshot(&b);
    b.rollback_undo();
    assert_eq!(snapshot(&b), committed, "a committed batch stays");
    b.insert(order(12, ASK, 101, 1)); // recorded nowhere
    b.rollback_undo();
    assert!(b.contains(OrderId(12)));
    assert!(b.undo.is_none());
}

#[test]
fn a_second_batch_rolls_back_only_its_own_changes() {
    let mut b = book();
    b.start_undo();
    b.remove(OrderId(1));
    b.drop_undo();
    let committed = snapshot(&b);
    b.start_undo();
    b.remove(OrderId(2));
    b.rollback_undo();
    assert_eq!(snapshot(&b), committed);
}

#[test]
fn a_removal_records_its_successor_and_reinserts_without_walking() {
    let mut b = Book::default();
    for id in 1..=1000 {
        b.insert(order(id, BID, 100, 1));
    }
    let before = snapshot(&b);
    b.start_undo();
    let o = b.remove(OrderId(400)).expect("rests");
    let next = last_removed_next(&b);
    assert_eq!(next, Some(OrderId(401)));
    assert_eq!(b.insert_at_priority(o, next), 0, "started at its successor");
    assert!(snapshot(&b) == before, "re-inserted in place");

    let back = b.remove(OrderId(1000)).expect("rests");
    assert_eq!(last_removed_next(&b), None, "the back has no successor");
    assert_eq!(b.insert_at_priority(back, None), 0);
    assert!(snapshot(&b) == before, "back re-inserted at the back");
    b.start_undo(); // a fresh batch: the manual re-inserts above are not in a log
    b.fill_front(BID, Qty::from_raw(1));
    assert_eq!(last_removed_next(&b), Some(OrderId(2)));
    b.remove(OrderId(700));
    b.rollback_undo();
    assert!(snapshot(&b) == before, "rollback restored the deep level");
}

#[test]
fn insert_at_priority_finds_the_place_without_or_with_a_wrong_hint() {
    let base = {
        let mut b = Book::default();
        for id in [10, 20, 30, 40, 50] {
            b.insert(order(id, BID, 100, 2));
        }
        b.insert(order(60, ASK, 105, 2));
        b
    };
    let o = order(25, BID, 100, 3);
    // No hint: from the back, over 50, 40 and 30.
    let mut b = base.clone();
    assert_eq!(b.insert_at_priority(o, None), 3);
    assert_eq!(ids_at(&b, BID, 100), [10, 20, 25, 30, 40, 50]);
    assert_eq!(level(&b, BID, 100), (13, 6));
    assert_eq!(b.get(OrderId(25)), Some(&o));
    assert_eq!(b.len(), 7);
    // A hint that precedes it, one on another level, one unknown: each ignored.
    for hint in [20, 60, 99] {
        let mut b = base.clone();
        assert_eq!(
            b.insert_at_priority(o, Some(OrderId(hint))),
            3,
            "hint {hint}"
        );
        assert_eq!(
            ids_at(&b, BID, 100),
            [10, 20, 25, 30, 40, 50],
            "hint {hint}"
        );
    }
    // A hint further back than needed: walks from there.
    let mut b = base.clone();
    assert_eq!(b.insert_at_priority(o, Some(OrderId(50))), 2);
    assert_eq!(ids_at(&b, BID, 100), [10, 20, 25, 30, 40, 50]);
    // Exact hint.
    let mut b = base.clone();
    assert_eq!(b.insert_at_priority(o, Some(OrderId(30))), 0);
    assert_eq!(ids_at(&b, BID, 100), [10, 20, 25, 30, 40, 50]);
    // Front, back, and a level that does not exist yet.
    let mut b = base.clone();
    assert_eq!(b.insert_at_priority(order(5, BID, 100, 1), None), 5);
    assert_eq!(b.insert_at_priority(order(55, BID, 100, 1), None), 0);
    assert_eq!(ids_at(&b, BID, 100), [5, 10, 20, 30, 40, 50, 55]);
    assert_eq!(
        b.insert_at_priority(order(7, BID, 98, 4), Some(OrderId(10))),
        0
    );
    assert_eq!(level(&b, BID, 98), (4, 1));
    assert_eq!(b.depth(BID, 5).len(), 2);
    assert_eq!(b.front(BID).map(|o| o.id.0), Some(5));
}

#[test]
fn insert_at_priority_puts_equal_priorities_after_each_other() {
    let mut b = Book::default();
    b.insert(order(1, ASK, 100, 1));
    b.insert(order(3, ASK, 100, 1));
    let mut twin = order(2, ASK, 100, 1);
    twin.priority = 1;
    assert_eq!(b.insert_at_priority(twin, None), 1);
    assert_eq!(ids_at(&b, ASK, 100), [1, 2, 3]);
    // A hint of equal priority is not "after it": the search starts from the back instead.
    let mut b = Book::default();
    b.insert(order(1, ASK, 100, 1));
    b.insert(order(3, ASK, 100, 1));
    assert_eq!(b.insert_at_priority(twin, Some(OrderId(1))), 1);
    assert_eq!(ids_at(&b, ASK, 100), [1, 2, 3]);
}
