// The agent console: start a run of the example agent, watch it think and write, interrupt or
// steer it, reload or share its link, and inspect any channel. Plain ES module over the
// browser client (switchboard.js); no build step.
//
// A run is the channel `runs:<id>` (see examples/agent and docs/console.md). The page keeps
// one snapshot per run in sessionStorage: the rendered state *and* the offset of the last
// message folded into it, written together, so a reload redraws exactly what was on screen
// and resumes the subscription right after it. A new tab has no snapshot and replays the
// run's log from the start; both end with the same text.

import { Switchboard, SwitchboardError } from "./switchboard.js";

const REQUESTS = "agents:requests";
const SNAPSHOT = (runId) => `switchboard-console:run:${runId}`;
const CHANNEL_NAME = /^[A-Za-z0-9._~@-]+(:[A-Za-z0-9._~@-]+)*$/;
const FINAL = new Set(["done", "interrupted", "failed"]);
const PAGE = 50; // inspector page size
const NO_AGENT_AFTER_MS = 6000;

const $ = (id) => document.getElementById(id);
// The dev server hands local pages a short-lived token (in production, your backend issues
// it with POST /v1/tokens). Without auth (switchboard dev --no-auth) it answers null.
async function devToken() {
  const response = await fetch("/_dev/token", { method: "POST" });
  if (!response.ok) throw new SwitchboardError("unauthorized", "Could not get a token from the dev server.");
  return (await response.json()).token;
}
const sb = new Switchboard(location.origin, { auth: devToken });
// A second client for the inspector, so it can follow the run's own channel as well.
const inspectorClient = new Switchboard(location.origin, { auth: devToken });

// -- plain-words errors -------------------------------------------------------------------

function explain(error) {
  if (error instanceof SwitchboardError) {
    const text = error.message.replace(/^[a-z_]+: /, "");
    switch (error.code) {
      case "unavailable":
        return `Switchboard is not reachable right now (${text}). Is \`switchboard dev\` running? The page keeps retrying.`;
      case "epoch_mismatch":
        return "This channel was deleted and created again, so the old log is gone. Reload the page to read the new one.";
      case "offset_expired":
        return "The oldest messages of this channel have expired (retention); showing what is left.";
      case "not_found":
        return text;
      default:
        return text;
    }
  }
  return String(error?.message ?? error);
}

let toastTimer = null;
function toast(message, kind = "error") {
  const el = $("toast");
  el.replaceChildren(...withCode(message));
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 8000 : 2500);
}

/** Text with `backticked` parts as <code> elements (messages name commands that way). */
function withCode(text) {
  return String(text).split("`").map((part, i) =>
    i % 2 ? Object.assign(document.createElement("code"), { textContent: part })
      : document.createTextNode(part));
}

// -- connection state and latency ------------------------------------------------------------

const conn = { everOpen: false, lostAt: null, resumedFrom: null };

function setConn(state, text) {
  $("conn-state").dataset.state = state;
  $("conn-text").textContent = text;
}

sb.onState((state) => {
  if (state === "closed") {
    conn.lostAt = Date.now();
    setConn("reconnecting", "Reconnecting…");
    return;
  }
  const seq = run?.position ? seqOf(run.position) : null;
  if (conn.everOpen || conn.resumedFrom !== null) {
    const at = conn.everOpen ? seq : conn.resumedFrom;
    setConn("resumed", at ? `Connected · resumed at seq ${at}` : "Connected · resumed");
  } else {
    setConn("connected", "Connected");
  }
  conn.everOpen = true;
});

const latencies = [];
let subscribedAt = 0;
function noteLatency(message) {
  // Replayed messages are old by definition; only time the ones published after we joined.
  if (!message.ts || message.ts < subscribedAt - 250) return;
  latencies.push(Math.max(0, Date.now() - message.ts));
  if (latencies.length > 20) latencies.shift();
  const sorted = [...latencies].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  $("latency").textContent = `${median} ms`;
  $("latency").dataset.ms = String(median);
}

// -- offsets (format documented in docs/protocol.md: <epoch>_<seq, 16 digits>) ------------

const seqOf = (offset) => Number(offset.slice(offset.indexOf("_") + 1));
const offsetAt = (epoch, seq) => `${epoch}_${String(Math.max(0, seq)).padStart(16, "0")}`;

// -- the run model: fold messages into a state that renders the same however it was built --

function newRun(runId) {
  return {
    runId, prompt: null, position: null, status: null, tools: {}, items: [],
    text: "", marks: [], steers: [], applied: [], answerDone: false, final: null,
    agentSeen: false,
  };
}

function fold(state, message) {
  const d = message.data;
  state.position = message.offset;
  if (!d || typeof d !== "object") return;
  const mine = d.from === state.runId;
  if (mine) state.agentSeen = true;
  switch (d.type) {
    case "prompt":
      state.prompt ??= String(d.text ?? "");
      break;
    case "status":
      if (!mine) break;
      state.status = { state: d.state, text: d.text ?? "" };
      if (FINAL.has(d.state)) state.final = { state: d.state, text: d.text ?? "", ts: message.ts };
      break;
    case "thinking":
      if (mine) state.items.push({ kind: "thinking", text: String(d.text ?? ""), ts: message.ts });
      break;
    case "tool_call":
      if (!mine) break;
      state.tools[d.call] = { name: d.name, args: d.args, result: null, ts: message.ts, ms: null };
      state.items.push({ kind: "tool", call: d.call });
      break;
    case "tool_result":
      if (mine && state.tools[d.call]) {
        state.tools[d.call].result = d.result;
        state.tools[d.call].ms = message.ts - state.tools[d.call].ts;
      }
      break;
    case "token":
      if (mine && d.stream === `${state.runId}:answer` && Number.isInteger(d.start) &&
          d.start <= state.text.length && typeof d.text === "string") {
        state.text += d.text.slice(state.text.length - d.start); // trims any overlap
      }
      break;
    case "done":
      if (mine && d.stream === `${state.runId}:answer`) state.answerDone = true;
      break;
    case "steered":
      if (mine) {
        state.marks.push({ at: d.at, text: String(d.text ?? "") });
        state.applied.push(d.steer);
      }
      break;
    case "steer":
      if (d.to === state.runId) state.steers.push({ seq: message.seq, text: String(d.text ?? "") });
      break;
    case "interrupt":
      if (d.to === state.runId) state.interruptRequested = true;
      break;
    default:
      break;
  }
}

// -- rendering -------------------------------------------------------------------------------

const STATE_LABEL = {
  waiting: "Waiting for an agent", thinking: "Thinking", tool: "Calling a tool", writing: "Writing",
  done: "Done", interrupted: "Interrupted", failed: "Failed", interrupting: "Interrupting…",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function runPhase(state) {
  if (state.final) return state.final.state;
  if (state.interruptRequested) return "interrupting";
  const last = state.items.at(-1);
  if (state.status?.state === "writing" || state.text) return "writing";
  if (last?.kind === "tool" && !state.tools[last.call].result) return "tool";
  if (state.status?.state === "thinking") return "thinking";
  return "waiting";
}

function renderRun() {
  if (!run) return;
  const state = run;
  showPrompt(state);
  const phase = runPhase(state);
  const badge = $("run-state");
  badge.dataset.state = phase;
  badge.textContent = phase === "tool" && state.items.at(-1)
    ? `Calling ${state.tools[state.items.at(-1).call].name}` : STATE_LABEL[phase];

  const items = [];
  if (state.prompt !== null) {
    items.push(el("li", { class: "item prompt" }, el("div", { class: "item-label", text: "You" }),
      el("div", { class: "prompt-text", text: state.prompt })));
  }
  for (const item of state.items) {
    if (item.kind === "thinking") {
      items.push(el("li", { class: "item thinking" }, el("div", { class: "item-label", text: "Thinking" }),
        el("p", { text: item.text })));
    } else if (item.kind === "tool") {
      const tool = state.tools[item.call];
      const result = tool.result
        ? el("ul", { class: "hits" }, ...(tool.result.hits ?? []).map((h) =>
          el("li", {}, el("span", { class: "hit-title", text: h.title }), " ",
            el("span", { class: "hit-source mono", text: h.source }),
            el("span", { class: "hit-score", text: Number(h.score).toFixed(2) }))))
        : el("p", { class: "muted running", text: "Running…" });
      items.push(el("li", { class: "item tool" },
        el("div", { class: "item-label" }, "Tool call",
          tool.ms !== null ? el("span", { class: "muted", text: ` · ${tool.ms} ms` }) : null),
        el("code", { class: "call mono", text: `${tool.name}(${JSON.stringify(tool.args)})` }),
        result));
    }
  }
  $("timeline").replaceChildren(...items);

  const card = $("answer-card");
  card.hidden = !state.text && phase !== "writing";
  const answer = $("answer");
  answer.classList.toggle("streaming", !state.answerDone && !state.final);
  answer.replaceChildren(...answerSegments(state));
  answer.dataset.length = String(state.text.length);

  const pending = state.steers.filter((s) => !state.applied.includes(s.seq));
  $("pending-steers").replaceChildren(...pending.map((s) =>
    el("li", { text: `Steer sent: “${s.text}” — the agent applies it before its next token` })));

  const final = $("final");
  final.hidden = !state.final;
  if (state.final) {
    final.dataset.state = state.final.state;
    final.textContent = state.final.text || STATE_LABEL[state.final.state];
  }
  const over = Boolean(state.final);
  $("controls").hidden = over;
  $("steer-input").disabled = over;
  $("steer-send").disabled = over;
  $("interrupt").disabled = over || Boolean(state.interruptRequested);
}

// The prompt box shows the question of the run on screen (after a reload, or in a tab opened
// from the run's link), once per run, so what the user types next is not overwritten.
function showPrompt(state) {
  const box = $("prompt-input");
  if (state.prompt === null || box.dataset.run === state.runId) return;
  box.dataset.run = state.runId;
  box.value = state.prompt;
  fitPrompt();
}

// The compact prompt box (once a run is open) is as tall as its text, up to three lines, and
// always whole lines: a row of padding must not show a slice of the next line.
const MAX_PROMPT_ROWS = 3;
function fitPrompt() {
  const box = $("prompt-input");
  if (!$("composer").classList.contains("compact")) return;
  box.rows = 1;
  while (box.rows < MAX_PROMPT_ROWS && box.scrollHeight > box.clientHeight + 1) box.rows += 1;
}

function answerSegments(state) {
  // The answer's characters stay plain text nodes (textContent is exactly the answer); a
  // steer starts a new highlighted span whose label is drawn by CSS from a data attribute.
  const marks = [...state.marks].filter((m) => m.at <= state.text.length).sort((a, b) => a.at - b.at);
  const nodes = [];
  let cursor = 0;
  let label = null;
  for (const mark of [...marks, { at: state.text.length, text: null }]) {
    const piece = state.text.slice(cursor, mark.at);
    if (label === null) nodes.push(document.createTextNode(piece));
    else nodes.push(el("span", { class: "steered", "data-steer": label }, piece));
    cursor = mark.at;
    label = mark.text;
  }
  return nodes;
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const go = () => { if (renderQueued) { renderQueued = false; renderRun(); } };
  requestAnimationFrame(go);
  setTimeout(go, 100); // background tabs get no animation frames
}

// -- opening a run ------------------------------------------------------------------------------

let run = null; // the state of the run on screen
let runSubscription = null;
let presenceWatch = null; // the run channel's presence: is an agent on it right now?
// "unknown" until the first members snapshot; then "online" (an agent member, `data` its
// state), "gone" (none, though an agent worked on the unfinished run: it died or hung and
// its member expired), "left" (none, the run is over) or "none" (no agent yet).
let agentPresence = { state: "unknown", data: null };
let noAgentTimer = null;

function loadSnapshot(runId) {
  try {
    const saved = sessionStorage.getItem(SNAPSHOT(runId));
    return saved ? JSON.parse(saved) : null;
  } catch {
    return null;
  }
}

function saveSnapshot() {
  try {
    sessionStorage.setItem(SNAPSHOT(run.runId), JSON.stringify(run));
  } catch {
    /* storage full or disabled: a reload then replays from the start, which is also exact */
  }
}

function agentMember(members) {
  return Object.values(members).find((m) => m?.data?.role === "agent") ?? null;
}

function notePresence(event) {
  if (event.action !== "sync" && agentPresence.state === "unknown") return; // before the snapshot
  const member = agentMember(event.members);
  const before = agentPresence.state;
  let state;
  if (member) state = "online";
  else if (run.final) state = "left";
  else if (before === "online" || run.agentSeen) state = "gone";
  else state = "none";
  agentPresence = { state, data: member?.data ?? null };
  if (state === "gone" && before === "online") {
    toast("The agent went away without finishing (its process stopped or hung). A restarted worker picks the run up where it stopped.", "info");
  }
  renderPresence();
}

const PRESENCE_LABEL = {
  starting: "starting", thinking: "thinking", tool: "calling a tool", writing: "writing",
  done: "finishing", interrupted: "finishing", failed: "finishing",
};

function renderPresence() {
  const node = $("agent-presence");
  const { state, data } = agentPresence;
  node.dataset.state = state;
  node.dataset.agentState = data?.state ?? "";
  node.hidden = state === "unknown" || state === "none";
  if (state === "online") {
    const doing = PRESENCE_LABEL[data?.state] ?? String(data?.state ?? "online");
    node.textContent = `Agent online · ${doing}`;
    node.title = data?.text ? `The agent says: ${data.text}` : "An agent is on this run's channel";
  } else if (state === "gone") {
    node.textContent = "Agent gone";
    node.title = "No agent is on this run's channel and the run has not finished: its process stopped or stopped answering.";
  } else if (state === "left") {
    node.textContent = "Agent left";
    node.title = "The agent finished the run and left the channel.";
  }
}

function watchPresence(runId, openedRun) {
  presenceWatch?.close();
  agentPresence = { state: "unknown", data: null };
  renderPresence();
  presenceWatch = sb.channel(`runs:${runId}`).presence.subscribe({
    onEvent: (event) => { if (run === openedRun) notePresence(event); },
    onError: (error) => toast(explain(error)),
  });
}

function openRun(runId) {
  runSubscription?.close();
  clearTimeout(noAgentTimer);
  const snapshot = loadSnapshot(runId);
  run = snapshot ?? newRun(runId);
  conn.resumedFrom = snapshot?.position ? seqOf(snapshot.position) : null;
  $("empty").hidden = true;
  $("run").hidden = false;
  $("composer").classList.add("compact");
  fitPrompt();
  const link = `${location.origin}/?run=${encodeURIComponent(runId)}`;
  $("run-link").textContent = `runs:${runId}`;
  $("run-link").href = link;
  $("run-link").target = "_blank";
  document.title = `runs:${runId} · Switchboard`;
  renderRun();
  subscribedAt = Date.now();
  const openedRun = run;
  runSubscription = sb.channel(`runs:${runId}`).subscribe({
    from: run.position ?? "-1",
    onMessage: (message) => {
      if (run !== openedRun) return;
      fold(run, message);
      saveSnapshot();
      noteLatency(message);
      scheduleRender();
      if (agentPresence.state === "left" || agentPresence.state === "gone" || agentPresence.state === "none") {
        // The run finished (the agent leaves after its final status) or an agent wrote.
        notePresence({ action: "sync", members: presenceWatch?.members ?? {} });
      }
      if (run.agentSeen) clearTimeout(noAgentTimer);
    },
    onError: (error) => toast(explain(error)),
  });
  watchPresence(runId, openedRun);
  if (!run.agentSeen && !run.final) {
    noAgentTimer = setTimeout(() => {
      if (run === openedRun && !run.agentSeen) {
        toast("No agent has picked this run up yet. `make dev` starts one; on its own it is `python -m examples.agent`.");
      }
    }, NO_AGENT_AFTER_MS);
  }
  if (conn.resumedFrom !== null && $("conn-state").dataset.state !== "connecting") {
    setConn("resumed", `Connected · resumed at seq ${conn.resumedFrom}`);
  }
  window.consoleState = () => run; // for tests and the curious
  window.agentPresence = () => agentPresence;
}

function newRunId() {
  const random = crypto.getRandomValues(new Uint8Array(4));
  return `r${Date.now().toString(36)}${[...random].map((b) => b.toString(36).padStart(2, "0")).join("")}`;
}

async function startRun(prompt) {
  const runId = newRunId();
  history.pushState({ run: runId }, "", `/?run=${encodeURIComponent(runId)}`);
  openRun(runId);
  openChannel(`runs:${runId}`, { fresh: true }); // a new id: the channel does not exist yet
  try {
    // The prompt goes on the run's channel first, so a second tab shows it too; then the
    // request, which any worker listening on agents:requests picks up.
    await sb.channel(`runs:${runId}`).publish({ type: "prompt", text: prompt }, { id: `${runId}:prompt` });
    await sb.channel(REQUESTS).publish({ run: runId, prompt }, { id: `${runId}:request` });
  } catch (error) {
    toast(`The run could not be started: ${explain(error)}`);
  }
}


async function sendControl(data, id) {
  if (!run) return;
  try {
    await sb.channel(`runs:${run.runId}`).publish({ to: run.runId, ...data }, id ? { id } : {});
  } catch (error) {
    toast(`Not sent: ${explain(error)}`);
  }
}

// -- the channel inspector ------------------------------------------------------------------------

// `opened` counts openings: work started for an earlier opening (even of the same channel)
// must not touch the list once a newer one began.
// The count is the channel's message count when it was read plus every message with a later
// seq seen since (in the first page or live), so it matches the head however the reads and
// the live messages interleave.
const inspector = { name: null, sub: null, epoch: null, first: null, last: 0, live: 0, opened: 0,
                    countBase: 0, countHead: 0 };

function showCount() {
  const count = inspector.countBase + Math.max(0, inspector.last - inspector.countHead);
  $("inspect-count").textContent = String(count);
}

function formatTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

function messageRow(m) {
  const type = m.data && typeof m.data === "object" && typeof m.data.type === "string" ? m.data.type : null;
  return el("li", { class: "msg", "data-seq": String(m.seq) },
    el("div", { class: "msg-head" },
      el("span", { class: "msg-seq mono", text: `#${m.seq}` }),
      type ? el("span", { class: `chip chip-${type.replace(/[^a-z_]/g, "")}`, text: type }) : null,
      el("time", { class: "msg-time mono", text: formatTime(m.ts), datetime: new Date(m.ts ?? 0).toISOString() }),
      m.id ? el("span", { class: "msg-id mono", title: "idempotency id", text: m.id }) : null),
    el("pre", { class: "msg-data mono", text: compactJson(m.data) }));
}

function compactJson(data) {
  // One line when it reads well on one line (token messages), indented otherwise.
  const flat = JSON.stringify(data);
  return flat.length <= 140 ? flat : JSON.stringify(data, null, 2);
}

function setHead(offset) {
  $("inspect-head").textContent = offset === "-1" || !offset ? "-1 (empty)" : offset;
  $("inspect-head").title = offset && offset !== "-1" ? `seq ${seqOf(offset)}` : "";
}

/**
 * Show a channel in the inspector: its latest page, then live. `fresh` says the channel is
 * known not to exist yet (a run being started): nothing to read, so nothing is asked (a GET
 * would answer 404, which the browser logs as an error).
 */
async function openChannel(name, { fresh = false } = {}) {
  name = name.trim();
  $("publish-result").textContent = "";
  if (!CHANNEL_NAME.test(name) || new TextEncoder().encode(name).length > 256) {
    toast(`“${name}” is not a channel name: use segments of letters, digits and . _ ~ @ - separated by colons, like runs:7f3a.`);
    return;
  }
  inspector.sub?.close();
  Object.assign(inspector, { name, sub: null, epoch: null, first: null, last: 0, live: 0,
                             opened: inspector.opened + 1, countBase: 0, countHead: 0 });
  const opening = inspector.opened;
  $("inspect-channel").value = name;
  $("inspect-list").replaceChildren();
  $("inspect-older").hidden = true;
  $("inspect-live").textContent = "–";
  const channel = inspectorClient.channel(name);
  const notYet = () => {
    setHead(null);
    showCount();
    $("inspect-head").textContent = "no such channel yet";
    $("inspect-empty").hidden = false;
    $("inspect-empty").textContent = `Nothing has been published to ${name} yet. Publish below to create it; it is followed live from now on.`;
    followLive(channel, "-1");
  };
  if (fresh) {
    notYet();
    return;
  }
  let from = "-1";
  try {
    const info = await channel.info();
    if (inspector.opened !== opening) return;
    inspector.epoch = info.epoch;
    inspector.countBase = info.message_count ?? info.head_seq;
    inspector.countHead = info.head_seq;
    setHead(info.head);
    showCount();
    if (info.head_seq > 0) from = offsetAt(info.epoch, info.head_seq - PAGE);
  } catch (error) {
    if (inspector.opened !== opening) return;
    if (error instanceof SwitchboardError && error.code === "not_found") {
      notYet();
      return;
    }
    toast(explain(error));
    return;
  }
  await loadPage(channel, from, false);
  if (inspector.opened !== opening) return;
  followLive(channel, inspector.last ? offsetAt(inspector.epoch, inspector.last) : "now");
  const scroll = $("inspect-scroll");
  scroll.scrollTop = scroll.scrollHeight;
}

async function loadPage(channel, from, older) {
  const opening = inspector.opened;
  let page;
  try {
    page = await channel.history({ from, limit: PAGE });
  } catch (error) {
    if (error instanceof SwitchboardError && error.code === "offset_expired" && error.earliest) {
      page = await channel.history({ from: error.earliest, limit: PAGE });
    } else {
      toast(explain(error));
      return;
    }
  }
  if (inspector.opened !== opening) return; // the inspector was opened again meanwhile
  const messages = older ? page.messages.filter((m) => m.seq < inspector.first) : page.messages;
  const rows = messages.map(messageRow);
  if (older) $("inspect-list").prepend(...rows);
  else $("inspect-list").append(...rows);
  if (messages.length) {
    inspector.epoch = messages[0].epoch;
    inspector.first = Math.min(inspector.first ?? Infinity, messages[0].seq);
    inspector.last = Math.max(inspector.last, messages.at(-1).seq);
    if (!older) {
      setHead(messages.at(-1).offset);
      showCount();
    }
  }
  $("inspect-older").hidden = !(inspector.first > 1);
  $("inspect-empty").hidden = $("inspect-list").children.length > 0;
  $("inspect-empty").textContent = "No messages yet.";
}

function followLive(channel, from) {
  const opening = inspector.opened;
  inspector.sub = channel.subscribe({
    from,
    onMessage: (m) => {
      if (inspector.opened !== opening || m.seq <= inspector.last) return;
      const scroll = $("inspect-scroll");
      const atBottom = scroll.scrollHeight - scroll.scrollTop - scroll.clientHeight < 40;
      $("inspect-list").append(messageRow(m));
      inspector.last = m.seq;
      inspector.first ??= m.seq;
      inspector.epoch = m.epoch;
      inspector.live += 1;
      $("inspect-live").textContent = `${inspector.live} new`;
      $("inspect-empty").hidden = true;
      setHead(m.offset);
      showCount();
      if (atBottom) scroll.scrollTop = scroll.scrollHeight;
    },
    onError: (error) => toast(explain(error)),
  });
}

async function loadOlder() {
  if (!inspector.name || !(inspector.first > 1)) return;
  const scroll = $("inspect-scroll");
  const before = scroll.scrollHeight;
  const from = offsetAt(inspector.epoch, inspector.first - 1 - PAGE);
  await loadPage(inspectorClient.channel(inspector.name), from, true);
  scroll.scrollTop += scroll.scrollHeight - before; // keep the reader's place
}

async function publishFromInspector() {
  const raw = $("publish-data").value;
  let data;
  try {
    data = JSON.parse(raw);
  } catch (error) {
    $("publish-result").dataset.kind = "error";
    $("publish-result").textContent = `That is not valid JSON (${error.message}). Text needs double quotes, e.g. "hello".`;
    return;
  }
  const id = $("publish-id").value.trim();
  try {
    const ack = await inspectorClient.channel(inspector.name).publish(data, id ? { id } : {});
    $("publish-result").dataset.kind = "ok";
    $("publish-result").textContent = ack.duplicate
      ? `Already stored as seq ${ack.seq}: that id was published before, so nothing new was stored.`
      : `Stored as seq ${ack.seq}.`;
  } catch (error) {
    $("publish-result").dataset.kind = "error";
    $("publish-result").textContent = `Not published: ${explain(error)}`;
  }
}

// -- wiring -----------------------------------------------------------------------------------------

function runFromUrl() {
  const id = new URLSearchParams(location.search).get("run");
  return id && /^[A-Za-z0-9._~@-]{1,128}$/.test(id) ? id : null;
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const prompt = $("prompt-input").value.trim();
  if (!prompt) {
    toast("Write a question for the agent first.");
    return;
  }
  startRun(prompt);
});
$("prompt-input").addEventListener("input", fitPrompt);
window.addEventListener("resize", fitPrompt);
$("prompt-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.metaKey || event.ctrlKey)) $("composer").requestSubmit();
});
$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("steer-input").value.trim();
  if (!text) {
    toast("Type how the agent should change course, then press Steer.");
    return;
  }
  $("steer-input").value = "";
  sendControl({ type: "steer", text });
});
$("interrupt").addEventListener("click", () => {
  if (!run) return;
  run.interruptRequested = true;
  scheduleRender();
  sendControl({ type: "interrupt" }, `${run.runId}:interrupt`);
});
$("copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("run-link").href);
    toast("Link copied: open it anywhere to watch this run.", "ok");
  } catch {
    toast(`Copy this link: ${$("run-link").href}`, "ok");
  }
});
$("inspect-run").addEventListener("click", () => { if (run) openChannel(`runs:${run.runId}`); });
$("inspect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  openChannel($("inspect-channel").value);
});
$("inspect-older").addEventListener("click", loadOlder);
$("inspect-scroll").addEventListener("scroll", () => {
  if ($("inspect-scroll").scrollTop === 0 && !$("inspect-older").hidden) loadOlder();
});
$("publish-form").addEventListener("submit", (event) => {
  event.preventDefault();
  publishFromInspector();
});
window.addEventListener("popstate", () => {
  const id = runFromUrl();
  if (id) {
    openRun(id);
    openChannel(`runs:${id}`);
  }
});

const initial = runFromUrl();
if (initial) openRun(initial);
openChannel(initial ? `runs:${initial}` : REQUESTS);
// Follow the request channel on the main socket: it opens the socket (so the connection state
// is live before the first run).
sb.channel(REQUESTS).subscribe({
  from: "now",
  onMessage: () => {},
  onError: (error) => toast(explain(error)),
});
