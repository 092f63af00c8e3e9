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
//
// Presence (`channel.presence`): enter/update/leave this client's member (heartbeats every
// `heartbeat_s` while entered, enters again with the last data on a new socket or when a
// heartbeat answers not_found, sends only the latest data after a `rate_limited`, leaves on
// close), `members()`, and `subscribe()` to the members: a `members` snapshot, then the
// presence log's changes above its seq, in order (see Presence below and docs/sdk.md).

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
// A channel's presence log is the channel `<name>@presence` (docs/protocol.md, Presence).
const PRESENCE_SUFFIX = "@presence";
// What the server tells members to heartbeat at, until it says otherwise (seconds).
const DEFAULT_HEARTBEAT_S = 15;

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
    this._feeds = new Map(); // channel -> PresenceFeed (this client watches its presence)
    this._members = new Map(); // "<channel>\n<instance or ''>" -> Membership
    this._socketMembers = new Map(); // channel -> Membership entered over the socket
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
    // Leave presence first (the frames go out before the close; HTTP members with a
    // keepalive fetch): watchers see the leave at once, not after $disconnect or a TTL.
    for (const member of [...this._members.values()]) member._leaveNow();
    this._closed = true;
    for (const sub of this._routes.values()) sub._fail(new SwitchboardError("client_closed", "The client was closed."));
    this._routes.clear();
    for (const feed of this._feeds.values()) feed._fail(new SwitchboardError("client_closed", "The client was closed."));
    this._feeds.clear();
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
    for (const feed of this._feeds.values()) feed._fail(error);
    this._feeds.clear();
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
        // A new connection id, so a new member key: members enter again.
        for (const member of this._socketMembers.values()) member._gone();
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
      .filter((sub) => sub._live && !sub._internal && sub._activeAt > sub._checkedAt && now - sub._activeAt >= wait)
      .sort((a, b) => a._activeAt - b._activeAt);
  }

  /** Subscriptions quiet for `idleCheck` ms, the longest unchecked first: a keep-alive
   * ping asks for their heads too. */
  _quietSubs(now) {
    const wait = this.options.idleCheck;
    if (!(wait > 0)) return [];
    return [...this._routes.values()]
      .filter((sub) => sub._live && !sub._internal && now - sub._activeAt >= wait)
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
    // A channel's presence log, followed for its PresenceFeed.
    const base = !sub && typeof frame.channel === "string" && frame.channel.endsWith(PRESENCE_SUFFIX)
      ? frame.channel.slice(0, -PRESENCE_SUFFIX.length) : null;
    const feed = base !== null ? this._feeds.get(base) : undefined;
    if (frame.type === "message" || frame.type === "messages" || frame.type === "subscribed") {
      if (feed) {
        if (frame.type === "messages") {
          for (const item of Array.isArray(frame.messages) ? frame.messages : []) feed._change({ channel: frame.channel, ...item });
        } else if (frame.type === "message") {
          feed._change(frame);
        }
        return;
      }
      if (!sub) return;
      sub._activeAt = Date.now();
      if (frame.type === "subscribed") {
        sub._live = true;
        sub._failures = 0;
        sub._slices = null;
        sub._push({ kind: "subscribed", frame });
      } else if (sub._internal) {
        // A route that only watches presence: the channel's messages are dropped.
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
    if (frame.type === "members") {
      this._feeds.get(frame.channel)?._snapshot(frame);
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
    // An error without a ref about a channel this client is a member of answers a heartbeat
    // (the only presence frame sent without one).
    const member = frame.type === "error" && frame.ref === undefined ? this._socketMembers.get(frame.channel) : undefined;
    if (member && ["not_found", "forbidden", "unauthorized"].includes(frame.code)) {
      if (frame.code === "not_found") { // expired: enter again
        member.stats.expired++;
        member._gone();
      }
      else if (frame.code === "unauthorized" && this.auth) this._renewToken();
      else member._refused(errorOf(frame));
      return;
    }
    if (frame.type === "error" && feed) {
      feed._resync(); // about the presence log itself: take a fresh snapshot
      return;
    }
    // An error with another ref is about an earlier subscribe, or a publish whose caller
    // stopped waiting: not about the subscription as it stands.
    if (frame.type === "error" && sub && !(typeof frame.ref === "string" && frame.ref !== sub._subscribeRef)) {
      const error = errorOf(frame);
      if (error.code === "unauthorized" && this.auth) {
        this._renewToken();
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

  /** A fresh token from `auth`, then a new socket with it (which resubscribes). */
  _renewToken() {
    Promise.resolve().then(() => this.auth()).then(
      (t) => { this.token = t; this._ws?.close(1000, "new token"); },
      (e) => {
        this._ws?.close(1000, "no fresh token");
        this._failForGood(credentialFailure(e) ?? new SwitchboardError("unavailable", `Could not renew the token: ${e?.message ?? e}`));
      });
  }

  /** Subscribe from `from` (default: the subscription's position); with presence when the
   * channel's presence is watched. */
  _sendSubscribe(sub, from = undefined) {
    sub._subscribeRef = `s${++this._refs}`;
    const frame = { action: "subscribe", ref: sub._subscribeRef, channel: sub.channel, from: from ?? sub.resumeFrom() };
    if (this.options.batch) frame.batch = true;
    const feed = this._feeds.get(sub.channel);
    if (feed) {
      frame.presence = true;
      feed._expectSnapshot();
    }
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

  /** Who is on this channel: enter/update/leave this client's member, members(),
   * subscribe() to changes. */
  get presence() {
    return new Presence(this);
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
  constructor(channel, { from = "now", onMessage, onError, persist = false, storageKey, _internal = false } = {}) {
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
    // True for the route of a channel whose presence only is watched: messages are dropped.
    this._internal = _internal;
    const existing = this.client._routes.get(this.channel);
    if (existing && !existing._internal) {
      throw new SwitchboardError("conflict", `This client already follows ${this.channel}; use one subscription per channel per client.`);
    }
    if (existing) existing._retire(); // a presence watch: this subscription carries it on
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
    if (this._internal) return "now"; // watches presence only: no messages to resume
    return this.position ?? this._start;
  }

  close() {
    if (this._done) return;
    this._done = true;
    if (this.client._routes.get(this.channel) === this) {
      this.client._routes.delete(this.channel);
      const feed = this.client._feeds.get(this.channel);
      if (feed) feed._attach(); // presence is still watched: follow it without the messages
      else this.client._send({ action: "unsubscribe", ref: `u${++this.client._refs}`, channel: this.channel });
    }
    this._push({ kind: "end" });
  }

  /** Leave the route to another subscription (no unsubscribe: the channel stays followed). */
  _retire() {
    this._done = true;
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
      const feed = this.client._feeds.get(this.channel);
      if (feed && feed._route() === undefined) {
        // The messages' position failed, not presence: keep watching it from now.
        if (["offset_expired", "epoch_mismatch", "invalid_offset"].includes(error?.code) && !this.client._closed) feed._attach();
        else feed._fail(error);
      }
      if (this._internal) return;
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

// -- presence -------------------------------------------------------------------------------

/** One watched channel: the members kept from `members` snapshots and the presence log's
 * changes (the same rules as the Python SDK's PresenceState), and the listeners told. */
class PresenceFeed {
  constructor(client, channel) {
    this.client = client;
    this.channel = channel;
    this.log = channel + PRESENCE_SUFFIX;
    this.members = new Map(); // key -> member
    this.synced = false; // a snapshot arrived since the last subscribe was sent
    this.error = null;
    this.stats = { snapshots: 0, changes: 0, duplicates: 0, gaps: 0, resyncs: 0 };
    this._everSynced = false;
    this._epoch = null;
    this._lastSeq = null; // the last change applied; null while waiting for a snapshot
    this._pendingChanges = new Map(); // seq -> change past a hole
    this._early = []; // changes that arrived before the snapshot
    this._listeners = new Set();
    this._filling = false;
  }

  /** The channel's route (a Subscription), if it has one. */
  _route() {
    return this.client._routes.get(this.channel);
  }

  /** Make sure the channel is subscribed (with presence): on its own route if the app does
   * not follow its messages. */
  _attach() {
    const route = this._route();
    if (route) this.client._sendSubscribe(route);
    else new Channel(this.client, this.channel).subscribe({ from: "now", onMessage: () => {}, _internal: true });
  }

  _resync() {
    this.stats.resyncs++;
    const route = this._route();
    if (route) this.client._sendSubscribe(route);
  }

  _expectSnapshot() {
    this._lastSeq = null;
    this._early = [];
    this._pendingChanges.clear();
    this.synced = false;
  }

  _snapshot(frame) {
    if (!Array.isArray(frame.members) || !isOffset(frame.offset)) return;
    const next = new Map();
    for (const m of frame.members) if (m && typeof m.key === "string") next.set(m.key, m);
    const events = [];
    if (!this._everSynced) {
      this.members = new Map();
      for (const m of next.values()) {
        this.members.set(m.key, m);
        events.push(this._event("present", m));
      }
    } else { // after a reconnect: what changed meanwhile
      for (const [key, m] of [...this.members]) {
        if (!next.has(key)) {
          this.members.delete(key);
          events.push(this._event("leave", m));
        }
      }
      for (const [key, m] of next) {
        const before = this.members.get(key);
        this.members.set(key, m);
        if (!before) events.push(this._event("enter", m));
        else if (JSON.stringify(before.data) !== JSON.stringify(m.data)) events.push(this._event("update", m));
      }
    }
    this.stats.snapshots++;
    this._epoch = epochOf(frame.offset);
    this._lastSeq = seqOf(frame.offset);
    const early = this._early;
    this._early = [];
    for (const m of early) this._receive(m);
    events.push(...this._drain());
    this.synced = this._everSynced = true;
    events.push(this._event("sync", null));
    this._emit(events);
    this._checkGap();
  }

  _change(message) {
    if (this._lastSeq === null) {
      this._early.push(message);
      return;
    }
    this._receive(message);
    this._emit(this._drain());
    this._checkGap();
  }

  // Changes at or below the snapshot's seq are in it already; later ones wait for their turn.
  _receive(m) {
    if (m.epoch !== this._epoch || m.seq <= this._lastSeq || this._pendingChanges.has(m.seq)) {
      this.stats.duplicates++;
      return;
    }
    this._pendingChanges.set(m.seq, m);
  }

  _drain() {
    const events = [];
    let m;
    while ((m = this._pendingChanges.get(this._lastSeq + 1)) !== undefined) {
      this._pendingChanges.delete(m.seq);
      this._lastSeq = m.seq;
      this.stats.changes++;
      const event = this._apply(m);
      if (event) events.push(event);
    }
    return events;
  }

  _apply(message) {
    const change = message.data;
    if (!change || typeof change !== "object" || typeof change.key !== "string") return null;
    const before = this.members.get(change.key);
    if (change.headers?.operation === "delete") {
      if (!before) return null;
      this.members.delete(change.key);
      return this._event("leave", before);
    }
    const value = change.value && typeof change.value === "object" ? change.value : {};
    const member = {
      key: change.key,
      client_id: typeof value.client_id === "string" ? value.client_id : null,
      data: value.data && typeof value.data === "object" ? value.data : {},
      entered: before ? before.entered : message.ts ?? null,
      updated: message.ts ?? null,
      via: before ? before.via : null,
    };
    this.members.set(change.key, member);
    if (!before) return this._event("enter", member);
    if (JSON.stringify(before.data) === JSON.stringify(member.data)) return null;
    return this._event("update", member);
  }

  _event(action, member) {
    return { action, member, members: Object.freeze(Object.fromEntries(this.members)) };
  }

  _emit(events) {
    for (const event of events) for (const listener of [...this._listeners]) listener._deliver(event);
  }

  _checkGap() {
    if (this._lastSeq === null || this._filling || !this._pendingChanges.size || this._pendingChanges.has(this._lastSeq + 1)) return;
    this._filling = true;
    this._fill().finally(() => { this._filling = false; });
  }

  /** Read the missing changes from the presence log's history; after reads that bring
   * nothing, subscribe again for a fresh snapshot. */
  async _fill() {
    const log = new Channel(this.client, this.log);
    for (let failures = 0; this._lastSeq !== null && this._pendingChanges.size && !this._pendingChanges.has(this._lastSeq + 1);) {
      const before = this._lastSeq;
      const until = Math.min(...this._pendingChanges.keys()) - 1;
      try {
        const page = await log.history({ from: offsetOf(this._epoch, before), limit: Math.min(1000, Math.max(1, until - before)) });
        for (const m of page.messages) this._change(m);
      } catch { /* counted as a read that brought nothing */ }
      if (this._lastSeq !== null && this._lastSeq > before) {
        this.stats.gaps++;
        failures = 0;
        continue;
      }
      if (++failures >= 5) {
        this._resync();
        return;
      }
      await sleep(this.client.options.backoffInitial * failures);
    }
  }

  _fail(error) {
    this.error = error;
    for (const listener of [...this._listeners]) listener._end(error);
    this._listeners.clear();
  }

  _listen(listener) {
    if (this.error) {
      listener._end(this.error);
      return;
    }
    this._listeners.add(listener);
    if (this.synced) {
      for (const m of this.members.values()) listener._deliver(this._event("present", m));
      listener._deliver(this._event("sync", null));
    }
  }

  _unlisten(listener) {
    this._listeners.delete(listener);
    if (this._listeners.size) return;
    // The last listener stopped: stop following presence.
    const client = this.client;
    if (client._feeds.get(this.channel) === this) client._feeds.delete(this.channel);
    const route = this._route();
    if (route?._internal) {
      route._done = true;
      route._push({ kind: "end" });
      client._routes.delete(this.channel);
      client._send({ action: "unsubscribe", ref: `u${++client._refs}`, channel: this.channel });
    }
    client._send({ action: "unsubscribe", ref: `u${++client._refs}`, channel: this.log });
  }
}

/**
 * The channel's members as events: `{ action, member, members }`, `action` one of "present"
 * (there when watching began), "enter", "update", "leave", "sync" (member null: `members`
 * is now the complete set; after every snapshot, the first included). `onEvent(event)` (may
 * return a promise: the next event waits for it), `onError(error)`; also async-iterable.
 */
export class PresenceSubscription {
  constructor(channel, { onEvent, onError } = {}) {
    this.client = channel.client;
    this.channel = channel.name;
    this._onEvent = onEvent;
    this._onError = onError;
    this._queue = [];
    this._waiters = [];
    this._done = false;
    this._terminal = null;
    this._running = false;
    const client = this.client;
    client._ensureRunning();
    let feed = client._feeds.get(this.channel);
    if (!feed || feed.error) {
      feed = new PresenceFeed(client, this.channel);
      client._feeds.set(this.channel, feed);
      feed._attach();
    }
    this._feed = feed;
    feed._listen(this);
  }

  /** The current members by key (complete once `synced`). */
  get members() {
    return Object.freeze(Object.fromEntries(this._feed.members));
  }

  get synced() {
    return this._feed.synced && !this._feed.error;
  }

  get stats() {
    return this._feed.stats;
  }

  close() {
    if (this._done) return;
    this._done = true;
    this._feed._unlisten(this);
    for (const w of this._waiters.splice(0)) w();
  }

  _deliver(event) {
    if (this._done) return;
    this._queue.push(event);
    if (this._onEvent) this._run();
    for (const w of this._waiters.splice(0)) w();
  }

  _end(error) {
    if (this._done) return;
    this._done = true;
    this._terminal = error;
    if (this._onError) this._onError(error);
    else if (!this._waiters.length && !this._onEvent) console.error("switchboard:", error);
    for (const w of this._waiters.splice(0)) w();
  }

  async _run() {
    if (this._running) return;
    this._running = true;
    try {
      while (this._queue.length && this._onEvent) await this._onEvent(this._queue.shift());
    } finally {
      this._running = false;
    }
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this._queue.length) { yield this._queue.shift(); continue; }
      if (this._done) {
        if (this._terminal) throw this._terminal;
        return;
      }
      await new Promise((r) => this._waiters.push(r));
    }
  }
}

/** This client as a member of one channel: one loop owns every frame it sends (the same
 * rules as the Python SDK's Membership). Over the socket, or over HTTP with an instance. */
class Membership {
  constructor(client, channel, instance = null) {
    this.client = client;
    this.channel = channel;
    this.instance = instance;
    this.data = {};
    this.version = 0; // of the data last asked for
    this.accepted = 0; // the version the server has
    this.acceptedData = null;
    this.present = false; // the server has this member, as far as we know
    this.member = null;
    this.heartbeatS = DEFAULT_HEARTBEAT_S;
    this.ended = false;
    // expired: heartbeats answered not_found (the member had gone; entered again).
    this.stats = { enters: 0, updates: 0, heartbeats: 0, reenters: 0, expired: 0, rateLimited: 0, coalesced: 0 };
    this._waiters = []; // [version, resolve, reject]
    this._lastBeat = 0;
    this._stop = false;
    this._wake = null; // ends the idle wait (new data, a lost member, a leave)
    this._wakeOnStop = null; // ends a pause (only a leave does)
    this._loop = null;
    this._path = `${new Channel(client, channel)._path}/presence/${encodeURIComponent(instance ?? "")}`;
  }

  want(data) {
    if (this.ended) throw new SwitchboardError("client_closed", `The presence on ${this.channel} has ended; enter again.`);
    if (this.version > this.accepted) this.stats.coalesced++;
    this.version++;
    this.data = data;
    const promise = new Promise((resolve, reject) => this._waiters.push([this.version, resolve, reject]));
    this._poke();
    this._loop ??= this._run();
    return promise;
  }

  _gone() {
    this.present = false;
    this._poke();
  }

  _refused(error) {
    this._end(error);
  }

  async leave(timeout) {
    this._stop = true;
    this._poke();
    this._wakeOnStop?.();
    if (!this._loop) { this._end(null); return; }
    await Promise.race([this._loop, sleep(timeout)]);
    this._end(null);
  }

  /** On close: no waiting. The leave goes out before the socket's close frame. */
  _leaveNow() {
    this._stop = true;
    this._poke();
    this._wakeOnStop?.();
    if (this.present && !this.ended) {
      if (this.instance === null) this.client._send({ action: "presence", channel: this.channel, op: "leave" });
      else {
        const headers = this.client.token ? { Authorization: `Bearer ${this.client.token}` } : {};
        fetch(this.client.url + this._path, { method: "DELETE", headers, keepalive: true }).catch(() => {});
      }
      this.present = false;
    }
    this._end(null);
  }

  _poke() {
    if (this._wake) { this._wake(); this._wake = null; }
  }

  /** Sleep; updates made meanwhile wait (coalesced), only a leave cuts it short. */
  async _pause(ms) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, ms));
      this._wakeOnStop = () => { clearTimeout(timer); resolve(); };
      if (this._stop) this._wakeOnStop();
    });
    this._wakeOnStop = null;
  }

  async _send(op, data) {
    if (this.instance === null) {
      return this.client._request({ action: "presence", channel: this.channel, op, ...(data === undefined ? {} : { data }) },
        this.client.options.requestTimeout);
    }
    if (op === "leave") return this.client._http("DELETE", this._path, undefined, { attempts: 1 });
    return this.client._http("PUT", this._path, data === undefined ? undefined : { data }, { attempts: 1 });
  }

  async _run() {
    let attempt = 0;
    try {
      while (!this._stop && !this.ended) {
        if (!this.present || this.accepted < this.version) {
          const version = this.version;
          const data = this.data;
          if (this.present && JSON.stringify(data) === JSON.stringify(this.acceptedData)) {
            this._settle(version); // nothing to send: the server has it already
            continue;
          }
          const op = this.present ? "update" : "enter";
          let reply;
          try {
            reply = await this._send(op, data);
          } catch (e) {
            if (e instanceof SwitchboardError && e.code === "rate_limited") {
              // 2 changes a second per member: wait, then send whatever is latest.
              this.stats.rateLimited++;
              await this._pause(e.retryAfter ?? 500);
            } else if (e instanceof SwitchboardError && !e.retryable && e.code !== "unauthorized") {
              // Refused for good (forbidden, too_large, invalid): this data never lands.
              this._failWaiters(version, e);
              if (!this.present) { this._end(e); return; }
              this.accepted = version; // the member stays, with its earlier data
            } else {
              if (e instanceof SwitchboardError && e.code === "unauthorized" && this.instance === null && this.client.auth) this.client._renewToken();
              await this._pause(jitter(attempt++, this.client.options));
            }
            continue;
          }
          attempt = 0;
          if (op === "enter") {
            this.stats.enters++;
            if (this.accepted > 0) this.stats.reenters++;
          } else {
            this.stats.updates++;
          }
          this.present = true;
          this.accepted = version;
          this.acceptedData = data;
          if (typeof reply?.member === "string") this.member = reply.member;
          if (typeof reply?.heartbeat_s === "number" && reply.heartbeat_s > 0) this.heartbeatS = reply.heartbeat_s;
          this._lastBeat = Date.now();
          this._settle(version);
          continue;
        }
        const due = this._lastBeat + this.heartbeatS * 1000 - Date.now();
        if (due > 0) {
          await new Promise((resolve) => {
            const timer = setTimeout(() => { this._wake = null; resolve(); }, due);
            this._wake = () => { clearTimeout(timer); resolve(); };
          });
          continue;
        }
        this._lastBeat = Date.now();
        if (this.instance === null) {
          // No ref, no reply: a member that is gone is told with a not_found error frame.
          this.client._send({ action: "presence", channel: this.channel, op: "heartbeat" });
          this.stats.heartbeats++;
          continue;
        }
        try {
          await this._send("heartbeat");
          this.stats.heartbeats++;
        } catch (e) {
          if (e instanceof SwitchboardError && e.code === "not_found") { // expired: enter again
            this.stats.expired++;
            this.present = false;
          }
          else if (e instanceof SwitchboardError && !e.retryable) { this._end(e); return; }
        }
      }
      if (this.present && !this.ended) {
        try { await this._send("leave"); } catch { /* gone already, or the socket is */ }
        this.present = false;
      }
    } finally {
      this._end(null);
    }
  }

  _settle(version) {
    this._waiters = this._waiters.filter(([wanted, resolve]) => {
      if (wanted > version) return true;
      resolve(this.member);
      return false;
    });
  }

  _failWaiters(version, error) {
    this._waiters = this._waiters.filter(([wanted, , reject]) => {
      if (wanted > version) return true;
      reject(error);
      return false;
    });
  }

  _end(error) {
    if (this.ended) return;
    this.ended = true;
    this._stop = true;
    this._wakeOnStop?.();
    const failure = error ?? new SwitchboardError("client_closed", `Left presence on ${this.channel}.`);
    for (const [, , reject] of this._waiters) reject(failure);
    this._waiters = [];
    const key = `${this.channel}\n${this.instance ?? ""}`;
    if (this.client._members.get(key) === this) this.client._members.delete(key);
    if (this.instance === null && this.client._socketMembers.get(this.channel) === this) this.client._socketMembers.delete(this.channel);
  }
}

/**
 * `channel.presence`: who is on the channel.
 *   await ch.presence.enter({ role: "agent", state: "thinking" });   // -> member key
 *   await ch.presence.update({ role: "agent", state: "writing" });
 *   await ch.presence.leave();
 *   const members = await ch.presence.members();                     // [{key, client_id, data, ...}]
 *   const sub = ch.presence.subscribe({ onEvent: (e) => render(e.members) });
 * `{ instance: "worker-3" }` as the last argument of enter/update/leave: a member over
 * HTTP under that name instead of the socket.
 */
export class Presence {
  constructor(channel) {
    this.channel = channel;
    this.client = channel.client;
  }

  /** This client's member key over the socket, once entered (else null). */
  get member() {
    const m = this.client._socketMembers.get(this.channel.name);
    return m && m.present ? m.member : null;
  }

  /** The state behind enter (its `stats`, `heartbeatS`), or undefined. */
  membership({ instance = null } = {}) {
    return this.client._members.get(`${this.channel.name}\n${instance ?? ""}`);
  }

  /** Enter with `data` (a JSON object up to 1 KB), or replace it; resolves with the member
   * key once the server has it. Heartbeats follow until leave() or close(). Updates faster
   * than the server's 2 a second are coalesced: the latest is sent when allowed. */
  enter(data = {}, { instance = null } = {}) {
    const client = this.client;
    const key = `${this.channel.name}\n${instance ?? ""}`;
    let m = client._members.get(key);
    if (!m || m.ended) {
      m = new Membership(client, this.channel.name, instance);
      client._members.set(key, m);
      if (instance === null) client._socketMembers.set(this.channel.name, m);
    }
    if (instance === null) client._ensureRunning();
    const wanted = m.want({ ...data });
    const deadline = client.options.publishDeadline;
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new SwitchboardError("unavailable",
        `Presence on ${this.channel.name} could not be sent within ${deadline} ms; the client keeps trying.`)), deadline);
    });
    return Promise.race([wanted, late]).finally(() => clearTimeout(timer));
  }

  update(data, opts = {}) {
    return this.enter(data, opts);
  }

  async leave({ instance = null } = {}) {
    const m = this.membership({ instance });
    if (m) await m.leave(this.client.options.requestTimeout);
  }

  /** The members now: from this client's snapshot when it watches the channel's presence,
   * else GET /v1/channels/{channel}/presence. */
  async members() {
    const feed = this.client._feeds.get(this.channel.name);
    if (feed && feed.synced && !feed.error) return [...feed.members.values()];
    return (await this.client._http("GET", `${this.channel._path}/presence`)).members;
  }

  /** Watch the members: see PresenceSubscription. A function is taken as `onEvent`. */
  subscribe(opts = {}) {
    return new PresenceSubscription(this.channel, typeof opts === "function" ? { onEvent: opts } : opts);
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
