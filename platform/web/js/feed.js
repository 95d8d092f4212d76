// The market-data stream over the WebSocket at /api/v1/ws.
//
// Subscribing answers with a `snapshot` (book levels and its `md_seq`); then every `trade`,
// `book` and `status` event of the symbol follows with the next `md_seq`. An event whose
// `md_seq` is not the next one means events were lost: the feed reports a `gap` and subscribes
// again for a fresh snapshot. A closed socket reconnects with backoff and resubscribes.

export class Feed extends EventTarget {
  constructor(url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`) {
    super();
    this.url = url;
    this.symbols = new Set();
    this.seq = new Map(); // symbol → last md_seq applied (absent until its snapshot)
    this.delay = 500;
    this.connect();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  connect() {
    this.ws = new WebSocket(this.url);
    this.ws.addEventListener('open', () => {
      this.delay = 500;
      this.emit('connection', 'live');
      if (this.symbols.size) this.send({ op: 'subscribe', symbols: [...this.symbols] });
    });
    this.ws.addEventListener('message', (m) => this.handle(m.data));
    this.ws.addEventListener('close', () => {
      this.seq.clear();
      this.emit('connection', 'reconnecting');
      setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10_000);
    });
  }

  send(msg) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  subscribe(symbol) {
    this.symbols.add(symbol);
    this.seq.delete(symbol);
    this.send({ op: 'subscribe', symbols: [symbol] });
  }

  unsubscribe(symbol) {
    this.symbols.delete(symbol);
    this.seq.delete(symbol);
    this.send({ op: 'unsubscribe', symbols: [symbol] });
  }

  handle(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === 'error') return this.emit('error', msg);
    if (!this.symbols.has(msg.symbol)) return;
    if (msg.type === 'snapshot') {
      this.seq.set(msg.symbol, msg.md_seq);
      return this.emit('snapshot', msg);
    }
    const last = this.seq.get(msg.symbol);
    if (last === undefined || msg.md_seq <= last) return; // before the snapshot, or already in it
    if (msg.md_seq !== last + 1) {
      this.emit('gap', { symbol: msg.symbol, expected: last + 1, got: msg.md_seq });
      this.seq.delete(msg.symbol);
      this.send({ op: 'subscribe', symbols: [msg.symbol] });
      return;
    }
    this.seq.set(msg.symbol, msg.md_seq);
    this.emit(msg.type, msg);
  }
}
