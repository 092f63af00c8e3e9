import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["conformance.test.ts"],
    // Long-poll tests wait up to the server's timeout; the suite sets its own per-test limits.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
})
