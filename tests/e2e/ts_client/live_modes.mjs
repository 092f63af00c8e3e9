// The official Durable Streams TypeScript client (@durable-streams/client) against a
// Switchboard server, in one live mode:
//
//   node live_modes.mjs <base url> <long-poll|sse> [count]
//
// An IdempotentProducer writes `count` JSON items ({"n": 0..count-1}) while three readers
// follow the stream live in the given mode:
//   - "full" reads from the beginning until it has every item;
//   - "first" reads from the beginning, saves the offset of the batch that took it past half
//     the items, and stops;
//   - "resumed" then starts from that saved offset and reads until the last item.
// It prints one JSON line (what each reader saw, how many HTTP reads it took, whether the
// client fell back from SSE) and exits 0 when every reader saw its items exactly once, in
// order: full = 0..count-1, first + resumed = 0..count-1 with no overlap.
import { DurableStream, IdempotentProducer, stream } from "@durable-streams/client";

const [base, mode, countArg] = process.argv.slice(2);
const COUNT = Number(countArg ?? 1000);
const DEADLINE_MS = 150_000;
if (!base || !["long-poll", "sse"].includes(mode)) {
  console.error("usage: node live_modes.mjs <base url> <long-poll|sse> [count]");
  process.exit(2);
}

const warnings = [];
const originalWarn = console.warn;
console.warn = (...args) => {
  warnings.push(args.map(String).join(" "));
  originalWarn(...args);
};

const reads = { full: 0, first: 0, resumed: 0 };
const counting = (name) => (input, init) => {
  const url = new URL(typeof input === "string" ? input : input.url);
  if ((init?.method ?? "GET") === "GET" && url.searchParams.get("live")) reads[name] += 1;
  return fetch(input, init);
};

const url = `${base}/v1/stream/ts-${mode}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
const handle = await DurableStream.create({ url, contentType: "application/json" });
const producerErrors = [];
const producer = new IdempotentProducer(handle, `ts-${mode}-producer`, {
  lingerMs: 5,
  onError: (error) => producerErrors.push(String(error)),
});

function reader(name, offset, stopWhen) {
  const controller = new AbortController();
  const seen = [];
  let savedOffset = null;
  const done = new Promise((resolve, reject) => {
    stream({ url, offset, live: mode, signal: controller.signal, fetch: counting(name) })
      .then((response) => {
        response.subscribeJson(async (batch) => {
          for (const item of batch.items) seen.push(item.n);
          if (stopWhen(seen, batch)) {
            savedOffset = batch.offset;
            controller.abort();
            resolve();
          }
        });
      })
      .catch(reject);
  });
  return { seen, done, offset: () => savedOffset, abort: () => controller.abort() };
}

function inOrderOnce(items, from, to) {
  if (items.length !== to - from) return false;
  return items.every((n, i) => n === from + i);
}

const timeout = new Promise((_, reject) =>
  setTimeout(() => reject(new Error(`timed out after ${DEADLINE_MS} ms`)), DEADLINE_MS),
);

const full = reader("full", "-1", (seen) => seen.length >= COUNT);
const first = reader("first", "-1", (seen) => seen.length >= COUNT / 2);

// Write while the readers follow: in small bursts, so the live modes are exercised.
const writing = (async () => {
  for (let n = 0; n < COUNT; n += 1) {
    producer.append(JSON.stringify({ n }));
    if (n % 25 === 24) await new Promise((r) => setTimeout(r, 20));
  }
  await producer.flush();
})();

let resumed = null;
let error = null;
try {
  await Promise.race([first.done, timeout]);
  resumed = reader("resumed", first.offset(), (seen) => seen.length >= COUNT - first.seen.length);
  await Promise.race([Promise.all([writing, full.done, resumed.done]), timeout]);
} catch (e) {
  error = String(e);
} finally {
  full.abort();
  first.abort();
  resumed?.abort();
}

const firstCount = first.seen.length;
const result = {
  mode,
  count: COUNT,
  full: { read: full.seen.length, inOrderOnce: inOrderOnce(full.seen, 0, COUNT), requests: reads.full },
  first: { read: firstCount, inOrderOnce: inOrderOnce(first.seen, 0, firstCount), savedOffset: first.offset(), requests: reads.first },
  resumed: {
    read: resumed?.seen.length ?? 0,
    inOrderOnce: resumed ? inOrderOnce(resumed.seen, firstCount, COUNT) : false,
    requests: reads.resumed,
  },
  fellBackFromSse: warnings.some((w) => w.includes("Falling back to long polling")),
  producerErrors,
  error,
};
console.log(JSON.stringify(result));
const ok =
  !error &&
  result.full.inOrderOnce &&
  result.first.inOrderOnce &&
  result.resumed.inOrderOnce &&
  !result.fellBackFromSse &&
  producerErrors.length === 0;
process.exit(ok ? 0 : 1);
