import { runConformanceTests } from "@durable-streams/server-conformance-tests"

// The server under test: tests/conformance/test_conformance.py starts `switchboard dev --port 0`
// with a short long-poll timeout (SWITCHBOARD_LONG_POLL_TIMEOUT_S) and tells the suite here.
runConformanceTests({
  baseUrl: process.env.CONFORMANCE_BASE_URL ?? "http://127.0.0.1:4437",
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_TIMEOUT_MS ?? 20_000),
  // The reserved subscription APIs (webhooks, pull-wake): docs/durable-streams.md.
  subscriptions: true,
})
