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
//
// The server's newer frames are handled here, unseen by the app: batched `messages` frames
// (asked for with `batch: true`), a replay paused by the server (`unavailable` with
// `detail.resume`: subscribed again from `detail.offset`), a byte stream's entry sliced over
// several frames (joined; `message.bytes` is a Uint8Array when `encoding` is "base64"), and
// heads in pongs (a subscription quiet for `idleCheck` ms has its channel's head asked for;
// a head past the last message fetches what the fan-out lost from history). A publish
// without an id carries a random `token`, its re-sends say `retry: true` (so an answer lost
// with a socket cannot store it twice), `rate_limited` waits `detail.retry_after_ms`, and a
// publish whose frame is over API Gateway's 32 KB frame limit goes over HTTP.

const DEFAULTS = {
  pingInterval: 120_000,
  pongTimeout: 20_000,
  maxConnectionAge: 6_600_000,
  backoffInitial: 250,
  backoffMax: 15_000,
  requestTimeout: 10_000,
  publishDeadline: 60_000,
  idleCheck: 25_000, // ms a subscription may be quiet before its channel's head is checked; 0: off
  batch: true, // ask for batched `messages` frames
  maxFrameBytes: 32_000, // larger publishes go over HTTP (API Gateway: 1009 over 32 KB)
};
// Channels one ping may ask heads for (the server's limit).
const MAX_PING_CHANNELS = 20;

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
  /** For rate_limited: milliseconds the server asked to wait before retrying. */
  get retryAfter() {
    const ms = this.detail.retry_after_ms;
    return typeof ms === "number" && ms >= 0 ? ms : null;
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
const isOffset = (value) => typeof value === "string" && /^[^_]+_\d+$/.test(value);
const utf8 = new TextEncoder();
/** The size of a frame as sent (UTF-8 bytes of its JSON). */
const frameBytes = (frame) => utf8.encode(JSON.stringify(frame)).length;

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Gives a delivered message its `bytes` (non-enumerable): the entry's bytes as a Uint8Array
 * when `encoding` is "base64" (a Durable Streams byte stream), else null. */
function withBytes(message) {
  if (message && typeof message === "object" && !Object.hasOwn(message, "bytes")) {
    Object.defineProperty(message, "bytes", {
      configurable: true,
      enumerable: false,
      get() {
        let value = null;
        if (this.encoding === "base64" && typeof this.data === "string") {
          try { value = fromBase64(this.data); } catch { value = null; }
        }
        Object.defineProperty(this, "bytes", { value, enumerable: false, configurable: true });
        return value;
      },
    });
  }
  return message;
}
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
    this.stats = {
      connects: 0, reconnects: 0, rotations: 0, pings: 0,
      replayResumes: 0, // replays the server paused and the client continued
      headChecks: 0, // pings that asked for channels' heads
      publishesOverHttp: 0, // publishes whose frame was over the frame limit
    };
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

  /**
   * One request to the HTTP API, retried on network errors, 429 and 5xx (after the server's
   * `retry_after_ms` for 429). Options: `attempts` (default 5), `timeout` (ms), and for a
   * publish carrying a token `retryHeader` (every re-send says X-Switchboard-Retry: true;
   * the first too with `resent`).
   */
  async _http(method, path, body, { attempts = 5, timeout, retryHeader = false, resent = false } = {}) {
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const headers = { "Content-Type": "application/json" };
      if (!this.token && this.auth) this.token = await this.auth();
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      if (retryHeader && resent) headers["X-Switchboard-Retry"] = "true";
      resent = true; // whatever happens next, this attempt may have reached the server
      const abort = timeout ? new AbortController() : null;
      const timer = abort ? setTimeout(() => abort.abort(), timeout) : null;
      let response;
      try {
        response = await fetch(this.url + path, {
          method, headers, body: body === undefined ? undefined : JSON.stringify(body),
          signal: abort?.signal,
        });
      } catch (e) {
        clearTimeout(timer);
        if (attempt + 1 >= attempts) throw new SwitchboardError("unavailable", `Could not reach ${this.url}: ${e}`);
        await sleep(jitter(attempt, this.options));
        continue;
      }
      clearTimeout(timer);
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
      if (!error.retryable || attempt + 1 >= attempts) throw error;
      await sleep(Math.max(jitter(attempt, this.options), error.retryAfter ?? 0));
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
      let finished = false;
      const finish = () => {
        if (finished) return; // once per socket (a failed ping and onclose may both call it)
        finished = true;
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
      // Ping when idle (with the heads of quiet subscriptions, see _dueForHeadCheck).
      const o = this.options;
      const tick = o.idleCheck > 0 ? Math.max(50, o.idleCheck / 5) : Infinity;
      const keepalive = async () => {
        if (this._ws !== ws) return;
        const now = Date.now();
        if (now >= rotateAt) {
          this.stats.rotations++;
          ws.close(1000, "rotating before the connection time limit");
          return;
        }
        const due = this._dueForHeadCheck(now);
        if (due.length || now - lastRx >= o.pingInterval) {
          const subs = (due.length ? due : this._quietSubs(now)).slice(0, MAX_PING_CHANNELS);
          const frame = { action: "ping" };
          if (subs.length) {
            frame.channels = subs.map((sub) => sub.channel);
            this.stats.headChecks++;
          }
          for (const sub of subs) sub._checkedAt = now;
          this.stats.pings++;
          try {
            const pong = await this._request(frame, o.pongTimeout);
            this._reportHeads(pong.heads);
          } catch (e) {
            // An error frame is an answer: the socket is alive, the heads were refused.
            if (!(e instanceof SwitchboardError) || e.code === "unavailable") {
              ws.close(4000, "no pong");
              finish();
              return;
            }
          }
          if (this._ws !== ws) return;
        }
        timer = setTimeout(keepalive, Math.max(50, Math.min(
          o.pingInterval - (Date.now() - lastRx), rotateAt - Date.now(), tick)));
      };
      ws.onopen = () => {
        open = true;
        this._ws = ws;
        this.stats.connects++;
        if (this.stats.connects > 1) this.stats.reconnects++;
        for (const sub of this._routes.values()) {
          sub._live = false;
          sub._slices = null;
          this._sendSubscribe(sub);
        }
        this._resolveConnected(ws);
        this._emit("open");
        timer = setTimeout(keepalive, Math.min(o.pingInterval, tick));
      };
      ws.onmessage = (event) => {
        lastRx = Date.now();
        this._dispatch(event.data);
      };
      ws.onclose = finish;
      ws.onerror = () => { /* onclose follows */ };
    });
  }

  /** Subscriptions quiet for `idleCheck` ms since a frame not yet followed by a head
   * check, the quietest first. */
  _dueForHeadCheck(now) {
    const wait = this.options.idleCheck;
    if (!(wait > 0)) return [];
    return [...this._routes.values()]
      .filter((sub) => sub._live && sub._activeAt > sub._checkedAt && now - sub._activeAt >= wait)
      .sort((a, b) => a._activeAt - b._activeAt);
  }

  /** Subscriptions quiet for `idleCheck` ms, the longest unchecked first: a keep-alive
   * ping asks for their heads too. */
  _quietSubs(now) {
    const wait = this.options.idleCheck;
    if (!(wait > 0)) return [];
    return [...this._routes.values()]
      .filter((sub) => sub._live && now - sub._activeAt >= wait)
      .sort((a, b) => a._checkedAt - b._checkedAt);
  }

  _reportHeads(heads) {
    if (!heads || typeof heads !== "object") return;
    for (const [channel, head] of Object.entries(heads)) {
      const sub = this._routes.get(channel);
      if (sub && typeof head === "string") sub._push({ kind: "head", head });
    }
  }

  _dispatch(raw) {
    let frame;
    try { frame = JSON.parse(raw); } catch { return; }
    if (!frame || typeof frame !== "object") return;
    const sub = this._routes.get(frame.channel);
    if (frame.type === "message" || frame.type === "messages" || frame.type === "subscribed") {
      if (!sub) return;
      sub._activeAt = Date.now();
      if (frame.type === "subscribed") {
        sub._live = true;
        sub._failures = 0;
        sub._slices = null;
        sub._push({ kind: "subscribed", frame });
      } else if (frame.type === "messages") {
        for (const item of Array.isArray(frame.messages) ? frame.messages : []) {
          sub._push({ kind: "message", message: { channel: frame.channel, ...item } });
        }
      } else if (Array.isArray(frame.slice)) {
        const whole = sub._joinSlice(frame);
        if (whole) sub._push({ kind: "message", message: whole });
      } else {
        sub._push({ kind: "message", message: frame });
      }
      return;
    }
    const pending = this._pending.get(frame.ref);
    if (pending) {
      this._pending.delete(frame.ref);
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(errorOf(frame));
      else pending.resolve(frame);
      return;
    }
    // An error with another ref is about an earlier subscribe, or a publish whose caller
    // stopped waiting: not about the subscription as it stands.
    if (frame.type === "error" && sub && !(typeof frame.ref === "string" && frame.ref !== sub._subscribeRef)) {
      const error = errorOf(frame);
      if (error.code === "unauthorized" && this.auth) {
        Promise.resolve().then(() => this.auth()).then(
          (t) => { this.token = t; this._ws?.close(1000, "new token"); },
          (e) => {
            this._ws?.close(1000, "no fresh token");
            this._failForGood(credentialFailure(e) ?? new SwitchboardError("unavailable", `Could not renew the token: ${e?.message ?? e}`));
          });
      } else if (error.code === "unavailable" && error.detail.resume === true && isOffset(error.detail.offset)) {
        // The server paused a replay to stay within its invocation's time: continue from
        // where it got to, unseen by the app.
        this.stats.replayResumes++;
        sub._live = false;
        this._sendSubscribe(sub, error.detail.offset);
      } else if (error.retryable) {
        // A subscribe the server could not handle now: again, after a backoff.
        const ws = this._ws;
        setTimeout(() => {
          if (this._ws === ws && this._routes.get(sub.channel) === sub) this._sendSubscribe(sub);
        }, jitter(sub._failures++, this.options));
      } else {
        this._routes.delete(sub.channel);
        sub._push({ kind: "error", error });
      }
    }
  }

  /** Subscribe from `from` (default: the subscription's position). */
  _sendSubscribe(sub, from = undefined) {
    sub._subscribeRef = `s${++this._refs}`;
    const frame = { action: "subscribe", ref: sub._subscribeRef, channel: sub.channel, from: from ?? sub.resumeFrom() };
    if (this.options.batch) frame.batch = true;
    this._send(frame);
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

  /**
   * Publish one message; resolves with the ack {channel, seq, offset, duplicate}.
   * With an `id` publishing it again stores nothing. Without one it carries a random
   * request token and every re-send says `retry`, so an answer lost with a socket cannot
   * store it twice either. Over the shared socket, or over HTTP when the frame would be over
   * API Gateway's 32 KB frame limit (`maxFrameBytes`). `rate_limited` is retried after the
   * server's `retry_after_ms`, until `publishDeadline`.
   */
  async publish(data, { id } = {}) {
    const client = this.client;
    const o = client.options;
    const key = id !== undefined && id !== null ? { id } : { token: newId() };
    const frame = { action: "publish", channel: this.name, data, ...key };
    const overHttp = frameBytes({ ...frame, retry: true, ref: "r999999999999" }) > o.maxFrameBytes;
    const deadline = Date.now() + o.publishDeadline;
    let sent = false;
    let last = null;
    for (let attempt = 0; ; attempt++) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw last ?? new SwitchboardError("unavailable", `Could not publish to ${this.name}.`);
      const retry = sent && key.token !== undefined;
      sent = true;
      let wait;
      try {
        if (overHttp) {
          client.stats.publishesOverHttp++;
          return await client._http("POST", `${this._path}/messages`, { data, ...key }, {
            attempts: 1, timeout: Math.min(o.requestTimeout, remaining),
            retryHeader: key.token !== undefined, resent: retry,
          });
        }
        return await client._request(retry ? { ...frame, retry: true } : frame, Math.min(o.requestTimeout, remaining));
      } catch (e) {
        if (e instanceof SwitchboardError && !e.retryable) throw e;
        last = e instanceof SwitchboardError ? e
          : new SwitchboardError("unavailable", `The connection dropped while publishing to ${this.name}.`);
        wait = last.code === "rate_limited" && last.retryAfter !== null ? last.retryAfter : jitter(attempt, o);
      }
      await sleep(Math.max(0, Math.min(wait, deadline - Date.now())));
    }
  }

  /** One page of stored messages after `from`: {messages, next, up_to_date}. A byte
   * stream's entries have `encoding: "base64"` and `bytes` (a Uint8Array). */
  async history({ from = "-1", limit = 100 } = {}) {
    const page = await this.client._http("GET", `${this._path}/messages?from=${encodeURIComponent(from)}&limit=${limit}`);
    page?.messages?.forEach(withBytes);
    return page;
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
    this.stats = { delivered: 0, duplicates: 0, gaps: 0, resubscribes: 0, tailGaps: 0 };
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
    this._reported = null; // a head the server reported past the last message we have
    // The connection's bookkeeping: `subscribed` arrived on the current socket; when its
    // last frame arrived and its head was last checked (ms); the last subscribe's ref;
    // retryable refusals in a row; the slices of a byte-stream entry being joined.
    this._live = false;
    this._activeAt = 0;
    this._checkedAt = 0;
    this._subscribeRef = null;
    this._failures = 0;
    this._slices = null;
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

  // Buffered messages past `from` are dropped: the server replays everything after it (after
  // a reconnect that is our position; after a paused replay, the offset it reached, so what
  // came before is kept).
  _subscribed(f) {
    if (this.epoch !== null && f.epoch !== this.epoch) {
      throw new SwitchboardError("epoch_mismatch", `Channel ${this.channel} was deleted and created again; subscribe from "-1".`, { epoch: f.epoch });
    }
    if (this.lastSeq === null) { this.epoch = f.epoch; this.lastSeq = seqOf(f.from); }
    if (this._confirmed) this.stats.resubscribes++;
    this._confirmed = true;
    const start = seqOf(f.from);
    for (const seq of [...this._pendingMsgs.keys()]) if (seq > start) this._pendingMsgs.delete(seq);
    this._reported = null;
  }

  // A pong's head: past the last message we have, it is a message the fan-out gave up on.
  // Of another epoch, the log was replaced: the history read says how (epoch_mismatch or
  // offset_expired).
  _headReported(head) {
    if (!this._confirmed || this.lastSeq === null || !isOffset(head)) return;
    const seq = epochOf(head) === this.epoch ? seqOf(head) : this.lastSeq + 1;
    const have = Math.max(this.lastSeq, ...this._pendingMsgs.keys());
    if (seq > have) this._reported = Math.max(seq, this._reported ?? 0);
  }

  _missing() {
    if (this._pendingMsgs.has(this.lastSeq + 1)) return null;
    if (this._pendingMsgs.size) return { until: Math.min(...this._pendingMsgs.keys()) - 1, reported: false };
    if (this._reported !== null && this._reported > this.lastSeq) return { until: this._reported, reported: true };
    return null;
  }

  async _fill() {
    let failures = 0;
    for (let gap = this._missing(); gap; gap = this._missing()) {
      let page;
      try {
        page = await this._ch.history({ from: this.position, limit: Math.min(1000, Math.max(1, gap.until - this.lastSeq)) });
      } catch (e) {
        if (gap.reported && e.code === "not_found") { this._reported = null; return; }
        throw e;
      }
      for (const m of page.messages) this._receive(m);
      if (this._pendingMsgs.has(this.lastSeq + 1)) {
        if (gap.reported) this.stats.tailGaps++; else this.stats.gaps++;
        return;
      }
      // History holds nothing past our position after all: nothing is missing.
      if (gap.reported) { this._reported = null; return; }
      if (++failures >= 5) throw new SwitchboardError("unavailable", `Messages after ${this.position} are missing from history; subscribe again.`);
      await sleep(this.client.options.backoffInitial * failures);
    }
  }

  /** One slice of a byte-stream entry (`slice: [index, count]`); the whole entry once its
   * last slice arrives. One out of place drops the entry, which the gap logic then reads
   * from history like any lost message. */
  _joinSlice(frame) {
    const [index, count] = frame.slice;
    let partial = this._slices;
    if (index === 0) partial = this._slices = { seq: frame.seq, count, first: frame, parts: [] };
    else if (!partial || partial.seq !== frame.seq || partial.count !== count || partial.parts.length !== index) {
      this._slices = null;
      return null;
    }
    if (frame.encoding === "base64") {
      try { partial.parts.push(fromBase64(frame.data)); } catch { this._slices = null; return null; }
    } else {
      partial.parts.push(String(frame.data));
    }
    if (partial.parts.length < partial.count) return null;
    this._slices = null;
    const { slice: _slice, ...whole } = partial.first;
    if (frame.encoding === "base64") {
      const joined = new Uint8Array(partial.parts.reduce((n, part) => n + part.length, 0));
      let at = 0;
      for (const part of partial.parts) { joined.set(part, at); at += part.length; }
      whole.data = toBase64(joined);
      Object.defineProperty(whole, "bytes", { value: joined, enumerable: false, configurable: true });
    } else {
      whole.data = partial.parts.join("");
    }
    return whole;
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
        if (this._missing()) { await this._fill(); continue; }
        const event = await this._next();
        if (event.kind === "message") this._receive(event.message);
        else if (event.kind === "subscribed") this._subscribed(event.frame);
        else if (event.kind === "head") this._headReported(event.head);
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
    withBytes(m);
    this.lastSeq = m.seq;
    this.stats.delivered++;
    if (this._reported !== null && this.lastSeq >= this._reported) this._reported = null;
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
