// Switchboard browser client: a dependency-free ES module.
//
//   import { Switchboard } from "/web/switchboard.js";
//   const sb = new Switchboard("http://127.0.0.1:8765");
//   const sub = sb.channel("runs:7f3a").subscribe({ from: "-1", persist: true,
//     onMessage: (msg) => render(msg) });
//
// Same resume semantics as the Python SDK: one WebSocket per client multiplexes every
// subscription and publish; after any disconnect it reconnects with full-jitter exponential
// backoff and resubscribes from the last offset each subscription handed to the app; seqs
// already seen are dropped; a seq that jumps past the next expected one is held back until
// the missing range is fetched over HTTP. Pings keep an idle socket under API Gateway's
// 10-minute limit and the socket is replaced before its 2-hour limit. With `persist: true`
// the position is kept in sessionStorage, so a page reload resumes where it was.
// Credentials the server refuses end every subscription (onError) and publish with an
// UnauthorizedError / ForbiddenError carrying the server's message, at once: nothing
// reconnects for them (an `auth` callback gets one chance to provide a fresh token).

const DEFAULTS = {
  pingInterval: 120_000,
  pongTimeout: 20_000,
  maxConnectionAge: 6_600_000,
  backoffInitial: 250,
  backoffMax: 15_000,
  requestTimeout: 10_000,
  publishDeadline: 60_000,
};

export class SwitchboardError extends Error {
  constructor(code, message, detail = {}, status = undefined) {
    super(`${code}: ${message}`);
    this.name = "SwitchboardError";
    this.code = code;
    this.detail = detail || {};
    this.status = status;
  }
  /** For offset_expired / epoch_mismatch: the offset to resume from. */
  get earliest() {
    return this.detail.earliest;
  }
  get retryable() {
    return ["unavailable", "internal", "rate_limited"].includes(this.code);
  }
}

/** The credentials are missing, invalid or expired (HTTP 401, a refused socket). */
export class UnauthorizedError extends SwitchboardError {
  constructor(message, detail = {}, status = 401) {
    super("unauthorized", message, detail, status);
    this.name = "UnauthorizedError";
  }
}

/** The credentials are valid but do not allow this (HTTP 403). */
export class ForbiddenError extends SwitchboardError {
  constructor(message, detail = {}, status = 403) {
    super("forbidden", message, detail, status);
    this.name = "ForbiddenError";
  }
}

const errorOf = (payload, status) => {
  const message = payload?.message ?? "Server error.";
  if (payload?.code === "unauthorized") return new UnauthorizedError(message, payload?.detail, status);
  if (payload?.code === "forbidden") return new ForbiddenError(message, payload?.detail, status);
  return new SwitchboardError(payload?.code ?? "internal", message, payload?.detail, status);
};

const NO_CREDENTIALS_HINT =
  "No credentials were given: pass { token } (issued by your backend with POST /v1/tokens) " +
  "or { auth: async () => token } to new Switchboard().";

/** The same error with a hint appended to its message (the server's words first). */
function withHint(error, hint) {
  const text = error.message.replace(/^[a-z_]+: /, "").trimEnd();
  const joined = /[.!?]$/.test(text) ? `${text} ${hint}` : `${text}. ${hint}`;
  return errorOf({ code: error.code, message: joined, detail: error.detail }, error.status);
}

/** A failure to get a token: final (a SwitchboardError that retrying cannot fix, or a
 * broken auth callback), or null when it is transient (the network). */
function credentialFailure(e) {
  if (e instanceof SwitchboardError) return e.retryable || e.code === "unavailable" ? null : e;
  if (e instanceof TypeError) return null; // fetch's network error inside the callback
  return new UnauthorizedError(`The auth callback failed to provide a token: ${e?.message ?? e}`);
}

const seqOf = (offset) => Number(offset.slice(offset.indexOf("_") + 1));
const epochOf = (offset) => offset.slice(0, offset.indexOf("_"));
const offsetOf = (epoch, seq) => `${epoch}_${String(seq).padStart(16, "0")}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jitter = (attempt, o) =>
  Math.random() * Math.min(o.backoffMax, o.backoffInitial * 2 ** Math.min(attempt, 30));

function wsUrlFor(url) {
  const u = new URL(url);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  u.pathname = u.pathname.replace(/\/$/, "") + "/ws";
  return u.toString();
}

export class Switchboard {
  /**
   * @param {string} url HTTP base URL (defaults to the page's origin).
   * @param {object} [opts] token, wsUrl, auth (async () => token), and timing options.
   */
  constructor(url = globalThis.location?.origin, opts = {}) {
    this.url = url.replace(/\/$/, "");
    this.options = { ...DEFAULTS, ...opts };
    this.token = opts.token ?? null;
    this.auth = opts.auth ?? null;
    this.wsUrl = opts.wsUrl ?? wsUrlFor(this.url);
    this.stats = { connects: 0, reconnects: 0, rotations: 0, pings: 0 };
    this._routes = new Map(); // channel -> Subscription
    this._pending = new Map(); // ref -> {resolve, reject, timer}
    this._refs = 0;
    this._ws = null;
    this._connected = null; // promise resolved when a socket is open
    this._closed = false;
    this._running = false;
    this._fatal = null; // the credential error that ended the last attempt to connect
    this._generation = 0; // which run of the connection loop is the current one
    this._listeners = new Set();
  }

  channel(name) {
    return new Channel(this, name);
  }

  /** Observe connection state changes: fn("open" | "closed" | "failed", error). "failed":
   * the server refused the credentials; nothing reconnects until the next request. */
  onState(fn) {
    this._listeners.add(fn);
    return () => this._listeners.delete(fn);
  }

  close() {
    this._closed = true;
    for (const sub of this._routes.values()) sub._fail(new SwitchboardError("client_closed", "The client was closed."));
    this._routes.clear();
    this._ws?.close(1000, "client closed");
  }

  /** The current socket (tests close it to simulate failures). */
  get socket() {
    return this._ws;
  }

  // -- HTTP ------------------------------------------------------------------------------

  async _http(method, path, body) {
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const headers = { "Content-Type": "application/json" };
      if (!this.token && this.auth) this.token = await this.auth();
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      let response;
      try {
        response = await fetch(this.url + path, {
          method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        if (attempt >= 4) throw new SwitchboardError("unavailable", `Could not reach ${this.url}: ${e}`);
        await sleep(jitter(attempt, this.options));
        continue;
      }
      if (response.ok) return response.status === 204 ? null : response.json();
      let payload = null;
      try { payload = (await response.json()).error; } catch { /* not a Switchboard body */ }
      let error = errorOf(payload ?? { code: "internal", message: `HTTP ${response.status}` }, response.status);
      if (error.code === "unauthorized" && this.auth && !refreshed) {
        refreshed = true;
        this.token = await this.auth();
        continue;
      }
      if (error.code === "unauthorized" && !this.token && !this.auth) error = withHint(error, NO_CREDENTIALS_HINT);
      if (!error.retryable || attempt >= 4) throw error;
      await sleep(jitter(attempt, this.options));
    }
  }

  // -- the socket ------------------------------------------------------------------------

  _ensureRunning() {
    if (this._closed) throw new SwitchboardError("client_closed", "The client was closed.");
    if (!this._running) {
      this._running = true;
      this._fatal = null; // a new attempt (the credentials may have been fixed meanwhile)
      this._generation++;
      this._newConnectedPromise();
      this._run().catch((e) => this._failForGood(
        new SwitchboardError("internal", `The client's connection failed: ${e?.message ?? e}`)));
    }
  }

  _newConnectedPromise() {
    this._connected = new Promise((resolve, reject) => {
      this._resolveConnected = resolve;
      this._rejectConnected = reject;
    });
    this._connected.catch(() => { /* seen by whoever awaits it; never an unhandled rejection */ });
  }

  async _run() {
    let failures = 0;
    let refreshed = false; // a token was fetched for the refusal being handled
    const generation = this._generation;
    while (!this._closed && generation === this._generation) {
      let url = this.wsUrl;
      try {
        if (!this.token && this.auth) this.token = await this.auth();
      } catch (e) {
        const error = credentialFailure(e);
        if (error) { this._failForGood(error); return; }
        await sleep(jitter(failures++, this.options));
        continue;
      }
      if (this.token) url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
      const opened = Date.now();
      const wasOpen = await this._serve(url);
      if (this._closed || generation !== this._generation) break;
      if (!wasOpen) {
        // A browser is not told why a handshake failed; if it was the credentials, waiting
        // never helps: ask the HTTP API, and fail now with its reason.
        const refused = await this._whyRefused();
        if (refused) {
          if (refused.code === "unauthorized" && this.auth && !refreshed) {
            refreshed = true;
            this.token = null; // the next round asks the auth callback
            continue;
          }
          this._failForGood(refused);
          return;
        }
      } else {
        refreshed = false;
      }
      if (wasOpen && Date.now() - opened > this.options.backoffMax) failures = 0;
      await sleep(jitter(failures, this.options));
      failures++;
    }
  }

  /** Why the server refuses these credentials, in its own words, or null if it does not
   * (or cannot be asked). One request, no retries. */
  async _whyRefused() {
    const channel = this._routes.keys().next().value ?? "_";
    const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
    let response;
    try {
      response = await fetch(`${this.url}${new Channel(this, channel)._path}`, { headers });
    } catch {
      return null; // unreachable: a network problem, retried as usual
    }
    if (response.status !== 401 && response.status !== 403) return null;
    let payload = null;
    try { payload = (await response.json()).error; } catch { /* not a Switchboard body */ }
    const error = errorOf(payload ?? {
      code: response.status === 401 ? "unauthorized" : "forbidden",
      message: `The server refused the connection (HTTP ${response.status}).`,
    }, response.status);
    return error.code === "unauthorized" && !this.token && !this.auth
      ? withHint(error, NO_CREDENTIALS_HINT) : error;
  }

  /** End the attempt to connect: every subscription and waiting request gets `error` now;
   * a later publish or subscribe starts a new attempt. */
  _failForGood(error) {
    this._fatal = error;
    this._running = false;
    this._generation++; // the loop that was running stops
    for (const sub of this._routes.values()) sub._push({ kind: "error", error });
    this._routes.clear();
    for (const [ref, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(error);
      this._pending.delete(ref);
    }
    this._rejectConnected?.(error);
    this._emit("failed", error);
  }

  /** One socket's life; resolves when it closes (true if it ever opened). */
  _serve(url) {
    return new Promise((done) => {
      const ws = new WebSocket(url);
      let open = false;
      let lastRx = Date.now();
      let timer = null;
      const rotateAt = Date.now() + this.options.maxConnectionAge * (0.9 + Math.random() * 0.1);
      const finish = () => {
        clearTimeout(timer);
        if (this._ws === ws) this._ws = null;
        if (open) {
          this._newConnectedPromise();
          this._emit("closed");
        }
        for (const [ref, p] of this._pending) {
          clearTimeout(p.timer);
          p.reject(new ConnectionLost());
          this._pending.delete(ref);
        }
        done(open);
      };
      const keepalive = async () => {
        if (this._ws !== ws) return;
        const now = Date.now();
        if (now >= rotateAt) {
          this.stats.rotations++;
          ws.close(1000, "rotating before the connection time limit");
          return;
        }
        if (now - lastRx >= this.options.pingInterval) {
          this.stats.pings++;
          try {
            await this._request({ action: "ping" }, this.options.pongTimeout);
          } catch {
            ws.close(4000, "no pong");
            finish();
            return;
          }
        }
        timer = setTimeout(keepalive, Math.max(50, Math.min(
          this.options.pingInterval - (Date.now() - lastRx), rotateAt - Date.now())));
      };
      ws.onopen = () => {
        open = true;
        this._ws = ws;
        this.stats.connects++;
        if (this.stats.connects > 1) this.stats.reconnects++;
        for (const sub of this._routes.values()) this._sendSubscribe(sub);
        this._resolveConnected(ws);
        this._emit("open");
        timer = setTimeout(keepalive, this.options.pingInterval);
      };
      ws.onmessage = (event) => {
        lastRx = Date.now();
        this._dispatch(event.data);
      };
      ws.onclose = finish;
      ws.onerror = () => { /* onclose follows */ };
    });
  }

  _dispatch(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    const sub = this._routes.get(frame.channel);
    if (frame.type === "message") { sub?._push({ kind: "message", message: frame }); return; }
    if (frame.type === "subscribed") { sub?._push({ kind: "subscribed", frame }); return; }
    const pending = this._pending.get(frame.ref);
    if (pending) {
      this._pending.delete(frame.ref);
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(errorOf(frame));
      else pending.resolve(frame);
      return;
    }
    if (frame.type === "error" && sub) {
      const error = errorOf(frame);
      if (error.code === "unauthorized" && this.auth) {
        Promise.resolve().then(() => this.auth()).then(
          (t) => { this.token = t; this._ws?.close(1000, "new token"); },
          (e) => {
            this._ws?.close(1000, "no fresh token");
            this._failForGood(credentialFailure(e) ?? new SwitchboardError("unavailable", `Could not renew the token: ${e?.message ?? e}`));
          });
      } else if (error.retryable) {
        this._sendSubscribe(sub);
      } else {
        this._routes.delete(sub.channel);
        sub._push({ kind: "error", error });
      }
    }
  }

  _sendSubscribe(sub) {
    this._send({ action: "subscribe", ref: `s${++this._refs}`, channel: sub.channel, from: sub.resumeFrom() });
  }

  _send(frame) {
    if (this._ws && this._ws.readyState === WebSocket.OPEN) this._ws.send(JSON.stringify(frame));
  }

  async _request(frame, timeout) {
    this._ensureRunning();
    const ws = await Promise.race([
      this._connected,
      sleep(timeout).then(() => { throw new SwitchboardError("unavailable", `Could not connect to ${this.wsUrl}.`); }),
    ]);
    const ref = `r${++this._refs}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new ConnectionLost("timeout"));
      }, timeout);
      this._pending.set(ref, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ ...frame, ref }));
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(new ConnectionLost(String(e)));
      }
    });
  }

  _emit(state, detail) {
    for (const fn of this._listeners) {
      try { fn(state, detail); } catch { /* a listener must not break the client */ }
    }
  }
}

class ConnectionLost extends Error {}

const newId = () =>
  globalThis.crypto?.randomUUID?.().replaceAll("-", "") ??
  `${Date.now().toString(16)}${Math.random().toString(16).slice(2)}`;

export class Channel {
  constructor(client, name) {
    this.client = client;
    this.name = name;
    this._path = `/v1/channels/${encodeURIComponent(name).replaceAll("%3A", ":").replaceAll("%40", "@")}`;
  }

  /** Publish over the shared socket; retries reuse one id, so nothing is stored twice. */
  async publish(data, { id = newId() } = {}) {
    const o = this.client.options;
    const deadline = Date.now() + o.publishDeadline;
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.client._request(
          { action: "publish", channel: this.name, data, id }, o.requestTimeout);
        return ack;
      } catch (e) {
        if (e instanceof SwitchboardError && !e.retryable && e.code !== "unavailable") throw e;
        if (Date.now() > deadline) throw e instanceof SwitchboardError ? e : new SwitchboardError("unavailable", `Could not publish to ${this.name}.`);
      }
      await sleep(jitter(attempt, o));
    }
  }

  /** One page of stored messages after `from`: {messages, next, up_to_date}. */
  history({ from = "-1", limit = 100 } = {}) {
    return this.client._http("GET", `${this._path}/messages?from=${encodeURIComponent(from)}&limit=${limit}`);
  }

  info() { return this.client._http("GET", this._path); }
  create({ retention } = {}) { return this.client._http("PUT", this._path, retention ? { retention } : {}); }
  delete() { return this.client._http("DELETE", this._path); }

  /**
   * Follow the channel exactly once, in order, across reconnects.
   * @param {object} opts from ("now" | "-1" | offset), onMessage(msg) (may return a promise;
   *   the next message waits for it), onError(err), persist (true = sessionStorage),
   *   storageKey.
   * Also async-iterable: `for await (const msg of sub)`.
   */
  subscribe(opts = {}) {
    return new Subscription(this, opts);
  }
}

export class Subscription {
  constructor(channel, { from = "now", onMessage, onError, persist = false, storageKey } = {}) {
    this.client = channel.client;
    this.channel = channel.name;
    this._ch = channel;
    this.stats = { delivered: 0, duplicates: 0, gaps: 0, resubscribes: 0 };
    this._storageKey = persist ? (storageKey ?? `switchboard:position:${channel.name}`) : null;
    const stored = this._storageKey ? globalThis.sessionStorage?.getItem(this._storageKey) : null;
    this._start = stored ?? from;
    this.epoch = null;
    this.lastSeq = null;
    if (this._start !== "-1" && this._start !== "now") {
      this.epoch = epochOf(this._start);
      this.lastSeq = seqOf(this._start);
    }
    this._confirmed = false;
    this._pendingMsgs = new Map();
    this._events = [];
    this._wake = null;
    this._done = false;
    this._onMessage = onMessage;
    this._onError = onError;
    this._iterWaiters = [];
    this._buffer = []; // delivered messages waiting for an async iterator
    if (this.client._routes.has(this.channel)) {
      throw new SwitchboardError("conflict", `This client already follows ${this.channel}; use one subscription per channel per client.`);
    }
    this.client._routes.set(this.channel, this);
    this.client._ensureRunning();
    this.client._sendSubscribe(this);
    this._pump();
  }

  /** Offset of the last message handed to the app (persist it to resume later). */
  get position() {
    return this.epoch !== null && this.lastSeq !== null ? offsetOf(this.epoch, this.lastSeq) : null;
  }

  resumeFrom() {
    return this.position ?? this._start;
  }

  close() {
    if (this._done) return;
    this._done = true;
    if (this.client._routes.get(this.channel) === this) {
      this.client._routes.delete(this.channel);
      this.client._send({ action: "unsubscribe", ref: `u${++this.client._refs}`, channel: this.channel });
    }
    this._push({ kind: "end" });
  }

  _fail(error) {
    this._push({ kind: "error", error });
  }

  _push(event) {
    this._events.push(event);
    if (this._wake) { this._wake(); this._wake = null; }
  }

  async _next() {
    while (this._events.length === 0) await new Promise((r) => { this._wake = r; });
    return this._events.shift();
  }

  // The recovery state machine, the same rules as the Python SDK's Recovery class.
  _receive(m) {
    if (this.epoch !== null && m.epoch !== this.epoch) {
      throw new SwitchboardError("epoch_mismatch", `Channel ${this.channel} was deleted and created again; subscribe from "-1".`, { epoch: m.epoch });
    }
    if (this.lastSeq === null) { this.epoch = m.epoch; this.lastSeq = m.seq - 1; }
    if (m.seq <= this.lastSeq || this._pendingMsgs.has(m.seq)) { this.stats.duplicates++; return; }
    this._pendingMsgs.set(m.seq, m);
  }

  _subscribed(f) {
    if (this.epoch !== null && f.epoch !== this.epoch) {
      throw new SwitchboardError("epoch_mismatch", `Channel ${this.channel} was deleted and created again; subscribe from "-1".`, { epoch: f.epoch });
    }
    if (this.lastSeq === null) { this.epoch = f.epoch; this.lastSeq = seqOf(f.from); }
    if (this._confirmed) this.stats.resubscribes++;
    this._confirmed = true;
    this._pendingMsgs.clear();
  }

  async _fill() {
    let failures = 0;
    while (this._pendingMsgs.size && !this._pendingMsgs.has(this.lastSeq + 1)) {
      const until = Math.min(...this._pendingMsgs.keys()) - 1;
      const page = await this._ch.history({ from: this.position, limit: Math.min(1000, Math.max(1, until - this.lastSeq)) });
      for (const m of page.messages) this._receive(m);
      if (this._pendingMsgs.has(this.lastSeq + 1)) { this.stats.gaps++; return; }
      if (++failures >= 5) throw new SwitchboardError("unavailable", `Messages after ${this.position} are missing from history; subscribe again.`);
      await sleep(this.client.options.backoffInitial * failures);
    }
  }

  async _pump() {
    try {
      while (!this._done) {
        let m;
        while ((m = this._pendingMsgs.get(this.lastSeq + 1)) !== undefined) {
          this._pendingMsgs.delete(m.seq);
          await this._deliver(m);
          if (this._done) return;
        }
        if (this._pendingMsgs.size) { await this._fill(); continue; }
        const event = await this._next();
        if (event.kind === "message") this._receive(event.message);
        else if (event.kind === "subscribed") this._subscribed(event.frame);
        else if (event.kind === "error") throw event.error;
        else if (event.kind === "end") break;
      }
    } catch (error) {
      this._done = true;
      if (this.client._routes.get(this.channel) === this) this.client._routes.delete(this.channel);
      this._terminal = error;
      if (this._onError) this._onError(error);
      else if (!this._iterWaiters.length && !this._onMessage) console.error("switchboard:", error);
    }
    for (const w of this._iterWaiters.splice(0)) w();
  }

  async _deliver(m) {
    this.lastSeq = m.seq;
    this.stats.delivered++;
    if (this._onMessage) await this._onMessage(m);
    else {
      this._buffer.push(m);
      for (const w of this._iterWaiters.splice(0)) w();
    }
    // Saved after the handler returns: a reload resumes after the last message processed.
    if (this._storageKey) globalThis.sessionStorage?.setItem(this._storageKey, this.position);
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this._buffer.length) { yield this._buffer.shift(); continue; }
      if (this._done) {
        if (this._terminal) throw this._terminal;
        return;
      }
      await new Promise((r) => this._iterWaiters.push(r));
    }
  }
}

/** Rebuilds streamed text from token messages, trimming overlap by character offset. */
export class TextAssembler {
  constructor(stream = null) {
    this.stream = stream;
    this.text = "";
    this.done = false;
    this.error = null;
  }

  /** Returns the new text this message adds ("" if none). */
  feed(data) {
    if (!data || typeof data !== "object" || !["token", "done"].includes(data.type)) return "";
    if (this.stream === null && typeof data.stream === "string") this.stream = data.stream;
    if (data.stream !== this.stream || this.done || !Number.isInteger(data.start)) return "";
    if (data.type === "done") {
      this.done = true;
      this.error = typeof data.error === "string" ? data.error : null;
      return "";
    }
    if (typeof data.text !== "string" || data.start > this.text.length) return "";
    const delta = data.text.slice(this.text.length - data.start);
    this.text += delta;
    return delta;
  }
}

/**
 * Follow a token stream until its done marker; resolves with the whole text.
 * onDelta(delta, text) is called as it grows. With `persist: true` both the position and the
 * text so far live in sessionStorage, so a page reload mid-stream picks up where it was.
 */
export function readText(channel, { stream = null, from = "-1", onDelta, persist = false, storageKey } = {}) {
  const assembler = new TextAssembler(stream);
  const key = storageKey ?? `switchboard:position:${channel.name}`;
  const textKey = `${key}:text`;
  if (persist) {
    const saved = globalThis.sessionStorage?.getItem(textKey);
    if (saved) Object.assign(assembler, JSON.parse(saved));
  }
  return new Promise((resolve, reject) => {
    const sub = channel.subscribe({
      from, persist, storageKey: key,
      onMessage: (m) => {
        const delta = assembler.feed(m.data);
        if (persist && (delta || assembler.done)) {
          globalThis.sessionStorage?.setItem(textKey, JSON.stringify(
            { stream: assembler.stream, text: assembler.text }));
        }
        if (delta && onDelta) onDelta(delta, assembler.text);
        if (assembler.done) {
          sub.close();
          if (assembler.error) reject(new Error(`the producer failed: ${assembler.error}`));
          else resolve(assembler.text);
        }
      },
      onError: reject,
    });
  });
}
