import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { describe, expect, it, vi } from "vitest";
import { BOOKKEEPING_SYNC_MS, SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import { makeCallback } from "../support/harness.js";
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

describe("SQLite inbox: durability of the worker's bookkeeping", () => {
  it("follows a commit without fsync (a claim) by a FULL one within BOOKKEEPING_SYNC_MS", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-sync-"));
    const path = join(dir, "inbox.db");
    const inbox = new SqliteInbox({ path });
    const reader = new Database(path, { readonly: true });
    const heartbeat = () =>
      reader.prepare("SELECT at FROM heartbeat WHERE id = 1").get() as { at: number } | undefined;
    try {
      await inbox.enqueue(makeCallback() as never, new Date());
      // An enqueue commits FULL itself: nothing else is written after it.
      await new Promise((resolve) => setTimeout(resolve, BOOKKEEPING_SYNC_MS + 200));
      expect(heartbeat()).toBeUndefined();
      await inbox.claim("w:1", 1, 60_000);
      const claimedAt = Date.now();
      // The claim commits NORMAL; the FULL heartbeat commit that makes it durable follows.
      await vi.waitFor(() => expect(heartbeat()?.at).toBeGreaterThanOrEqual(claimedAt), {
        timeout: BOOKKEEPING_SYNC_MS + 1000,
        interval: 50,
      });
    } finally {
      reader.close();
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
