import { runConformanceTests } from "@durable-streams/server-conformance-tests"

// The server under test: tests/conformance/test_conformance.py starts `switchboard dev --port 0`.
runConformanceTests({ baseUrl: process.env.CONFORMANCE_BASE_URL ?? "http://127.0.0.1:4437" })
