import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import { defineInboxContract } from "./inbox-contract.js";

defineInboxContract("SQLite", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-"));
  let now = Date.parse("2026-11-26T10:00:00.000Z");
  const clock = () => now;
  return {
    open: async () => new SqliteInbox({ path: join(dir, "inbox.db"), clock }),
    advance: async (ms) => {
      now += ms;
    },
    now: clock,
    dispose: async (failed) => {
      if (!failed) await rm(dir, { recursive: true, force: true });
    },
  };
});
