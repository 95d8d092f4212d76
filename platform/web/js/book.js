// One symbol's order book, kept from a snapshot and absolute level events.

import { parse } from './decimal.js';

export class Book {
  constructor() {
    this.clear();
  }

  clear() {
    this.bids = new Map(); // price string → { price, qty, orders, raw, rawQty }
    this.asks = new Map();
  }

  level(l) {
    return { price: l.price, qty: l.qty, orders: l.orders, raw: parse(l.price), rawQty: parse(l.qty) };
  }

  snapshot(s) {
    this.clear();
    for (const l of s.bids) this.bids.set(l.price, this.level(l));
    for (const l of s.asks) this.asks.set(l.price, this.level(l));
  }

  /** Applies a `book` event: the level's new total (zero removes it). */
  apply(d) {
    const side = d.side === 'buy' ? this.bids : this.asks;
    const lvl = this.level(d);
    if (lvl.rawQty === 0n) side.delete(d.price);
    else side.set(d.price, lvl);
  }

  /** Best first, with cumulative quantity. */
  sorted(side, n) {
    const levels = [...(side === 'buy' ? this.bids : this.asks).values()];
    levels.sort((a, b) => (side === 'buy' ? cmp(b.raw, a.raw) : cmp(a.raw, b.raw)));
    let total = 0n;
    return levels.slice(0, n).map((l) => {
      total += l.rawQty;
      return { ...l, total };
    });
  }

  best(side) {
    return this.sorted(side, 1)[0] || null;
  }
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}
