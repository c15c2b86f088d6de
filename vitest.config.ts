import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Component tests bind loopback ports and write temp files; files run in parallel,
    // tests inside a file one after another.
    pool: "forks",
    // A user's .env in the repository must not reach the services the tests start.
    setupFiles: ["test/support/setup.ts"],
    reporters: ["default", ["json", { outputFile: "reports/vitest.json" }]],
  },
});
