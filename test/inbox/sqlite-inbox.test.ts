import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker as Thread } from "node:worker_threads";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { StoreUnavailableError } from "../../src/inbox/inbox.js";
import { SCHEMA_VERSION } from "../../src/inbox/sqlite/schema.js";
import {
  BOOKKEEPING_SYNC_MS,
  BUSY_TIMEOUT_MS,
  NO_WAIT_AFTER_BUSY_MS,
  SqliteInbox,
} from "../../src/inbox/sqlite/sqlite-inbox.js";
import { SQL } from "../../src/inbox/sqlite/statements.js";
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

describe("SQLite inbox: claiming expired leases", () => {
  it("takes over the expired leases oldest by runAt when more have expired than the limit", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-"));
    let now = Date.parse("2026-11-26T10:00:00.000Z");
    const inbox = new SqliteInbox({ path: join(dir, "inbox.db"), clock: () => now });
    try {
      const lease = 10_000;
      const ids: string[] = [];
      for (let index = 0; index < 3; index++) {
        ids.push((await inbox.enqueue(makeCallback() as never, new Date(now))).id);
        now += 10;
      }
      // Claimed one at a time, the oldest with the longest lease: by when each lease ends,
      // the newest would come first.
      for (const [index, leaseMs] of [3 * lease, 2 * lease, lease].entries()) {
        await inbox.claim(`w${index}`, 1, leaseMs);
      }
      now += 3 * lease;
      const taken = await inbox.claim("w9", 2, lease);
      expect(taken.map((job) => [job.id, job.takenOverFrom])).toEqual([
        [ids[0], "w0"],
        [ids[1], "w1"],
      ]);
      expect((await inbox.get(ids[2] as string))?.lockedBy).toBe("w2");
    } finally {
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: who may read it", () => {
  it("makes its folder 0750 and its files 0600: they hold callbacks and failed bundles", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-mode-"));
    const path = join(dir, "data", "inbox.db");
    const inbox = new SqliteInbox({ path });
    try {
      await inbox.enqueue(makeCallback() as never, new Date());
      const mode = async (file: string) => (await stat(file)).mode & 0o777;
      expect(await mode(join(dir, "data"))).toBe(0o750 & ~process.umask());
      for (const file of [path, `${path}-wal`, `${path}-shm`]) {
        expect({ file, mode: await mode(file) }).toEqual({ file, mode: 0o600 });
      }
    } finally {
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: every acknowledged callback is fsynced", () => {
  it.each([
    ["a new file", false],
    ["a file opened again (a restart)", true],
  ])(
    "commits each callback with synchronous=FULL from the first one on, on %s",
    async (_, restart) => {
      const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-sync-"));
      const path = join(dir, "inbox.db");
      try {
        if (restart) await new SqliteInbox({ path }).close();
        const inbox = new SqliteInbox({ path });
        // The level the connection is at now: what the last commit used, and the next one.
        const level = () =>
          (inbox as unknown as { db: Database.Database }).db.pragma("synchronous", {
            simple: true,
          });
        const levels: unknown[] = [];
        for (let round = 0; round < 3; round++) {
          await inbox.enqueue(makeCallback() as never, new Date());
          levels.push(level());
          // Bookkeeping in between (a claim) commits without fsync: NORMAL.
          await inbox.claim(`worker:${round}`, 1, 30_000);
          levels.push(level());
        }
        expect(levels).toEqual([2, 1, 2, 1, 2, 1]);
        await inbox.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

describe("SQLite inbox: a write that fails alone in a group commit", () => {
  const nested = (depth: number) => {
    let value: unknown = 1;
    for (let level = 0; level < depth; level++) value = [value];
    return value;
  };

  it("fails only itself, not the callbacks committed with it (a job's progress that cannot be stored)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-alone-"));
    const inbox = new SqliteInbox({ path: join(dir, "inbox.db") });
    try {
      await inbox.enqueue(makeCallback() as never, new Date());
      await inbox.enqueue(makeCallback() as never, new Date());
      const [first, second] = await inbox.claim("worker:1", 2, 30_000);
      // A bundle too deep to serialise, then one deeper than SQLite's json functions read.
      const retried = inbox.retry(String(first?.id), "worker:1", 1000, { message: "x" }, {
        bundle: { kreditCheck: nested(20_000) },
      } as never);
      const arriving = inbox.enqueue(makeCallback() as never, new Date());
      await expect(retried).rejects.toThrow(/inbox write failed/);
      await expect(arriving).resolves.toMatchObject({ duplicate: false });

      await inbox.fail(String(second?.id), "worker:1", { message: "x" }, {
        bundle: { kreditCheck: nested(1500) },
      } as never);
      const requeued = inbox.requeue(String(second?.id));
      const alongside = inbox.enqueue(makeCallback() as never, new Date());
      await expect(requeued).rejects.toThrow(/inbox write failed/);
      await expect(alongside).resolves.toMatchObject({ duplicate: false });
      // A fresh start reads no bundle: that one works.
      expect(await inbox.requeue(String(second?.id), { fresh: true })).toEqual({
        fellBackToFresh: false,
      });
      expect((await inbox.countByState()).pending).toBe(3);
      await inbox.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
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

describe("SQLite inbox: a file locked by another connection", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** An inbox, and a second connection to its file that can take the write lock. */
  async function lockable() {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-busy-"));
    const path = join(dir, "inbox.db");
    const inbox = new SqliteInbox({ path });
    const blocker = new Database(path);
    cleanups.push(async () => {
      blocker.close();
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    });
    return { inbox, blocker, path };
  }

  /** Another process's commit on the file: its write lock held `ms` from another thread. */
  async function commitElsewhere(path: string, ms: number): Promise<{ done: Promise<void> }> {
    const holder = new Thread(
      `const { workerData, parentPort } = require("node:worker_threads");
       const Database = require("better-sqlite3");
       const db = new Database(workerData.path);
       db.exec("BEGIN IMMEDIATE");
       parentPort.postMessage("locked");
       Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.ms);
       db.exec("COMMIT");
       db.close();`,
      { eval: true, workerData: { path, ms } },
    );
    await new Promise((resolve) => holder.once("message", resolve));
    return { done: new Promise((resolve) => holder.once("exit", () => resolve())) };
  }

  it("waits out another process's short commit before a claim or readiness gives up", async () => {
    const { inbox, path } = await lockable();
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    let other = await commitElsewhere(path, 50);
    expect((await inbox.claim("w:1", 1, 60_000)).map((job) => job.id)).toEqual([id]);
    await other.done;
    other = await commitElsewhere(path, 50);
    await expect(inbox.ping()).resolves.toBeUndefined();
    await other.done;
  });

  it("answers readiness's write at once while the lock is held, without waiting for it", async () => {
    const { inbox, blocker } = await lockable();
    blocker.exec("BEGIN IMMEDIATE");
    const startedAt = performance.now();
    await expect(inbox.ping()).rejects.toThrow(/inbox write failed: database is locked/);
    // Not the 5 s busy_timeout, which better-sqlite3 spends on the event loop's thread.
    expect(performance.now() - startedAt).toBeLessThan(500);
    blocker.exec("ROLLBACK");
    await expect(inbox.ping()).resolves.toBeUndefined();
  });

  it("fails a claim at once while the lock is held (the worker claims again at its next poll)", async () => {
    const { inbox, blocker } = await lockable();
    const { id } = await inbox.enqueue(makeCallback() as never, new Date());
    blocker.exec("BEGIN IMMEDIATE");
    const startedAt = performance.now();
    await expect(inbox.claim("w:1", 1, 60_000)).rejects.toThrow(/database is locked/);
    expect(performance.now() - startedAt).toBeLessThan(500);
    blocker.exec("ROLLBACK");
    expect((await inbox.claim("w:2", 1, 60_000)).map((job) => job.id)).toEqual([id]);
  });

  it("waits for the lock once; right after that, writes fail at once instead of blocking the loop again", async () => {
    const { inbox, blocker } = await lockable();
    blocker.exec("BEGIN IMMEDIATE");
    let startedAt = performance.now();
    await expect(inbox.enqueue(makeCallback() as never, new Date())).rejects.toThrow(
      /inbox write failed/,
    );
    // The first write waited for the lock (busy_timeout), as before.
    expect(performance.now() - startedAt).toBeGreaterThanOrEqual(BUSY_TIMEOUT_MS * 0.9);
    startedAt = performance.now();
    await expect(inbox.enqueue(makeCallback() as never, new Date())).rejects.toThrow(
      /inbox write failed/,
    );
    // The next one, within NO_WAIT_AFTER_BUSY_MS, did not wait another busy_timeout.
    expect(performance.now() - startedAt).toBeLessThan(NO_WAIT_AFTER_BUSY_MS);
    // Once the lock is gone, a write goes through at once, still inside that window.
    blocker.exec("ROLLBACK");
    const stored = await inbox.enqueue(makeCallback() as never, new Date());
    expect(stored.duplicate).toBe(false);
    expect(await inbox.countByState()).toMatchObject({ pending: 1 });
  });
});

describe("SQLite inbox: /metrics on a backlog", () => {
  it("reads the oldest unfinished job's age from an index, not by scanning the backlog", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-oldest-"));
    const path = join(dir, "inbox.db");
    await new SqliteInbox({ path }).close();
    const db = new Database(path, { readonly: true });
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN ${SQL.oldestUnfinished}`)
        .all()
        .map((row) => (row as { detail: string }).detail);
      // SEARCH with MIN over the index: one lookup (a SCAN of the table read every job).
      expect(plan.join("\n")).toMatch(
        /SEARCH jobs USING (COVERING )?INDEX jobs_unfinished_received/,
      );
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: admin lists on a week of jobs", () => {
  it("reads the latest jobs of every state and a page of one state from indexes, not by sorting the table", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-lists-"));
    const path = join(dir, "inbox.db");
    await new SqliteInbox({ path }).close();
    const db = new Database(path, { readonly: true });
    const plan = (sql: string) =>
      db
        .prepare(`EXPLAIN QUERY PLAN ${sql}`)
        .all({ limit: 50, state: "done", after: "" })
        .map((row) => (row as { detail: string }).detail);
    try {
      // Sorting every job by updated_at took 2 s on the event loop for 1,000,000 done
      // jobs; each state's latest come from jobs_state_updated in order instead.
      const all = plan(SQL.listAll);
      expect(all.filter((line) => /^SCAN jobs\b/.test(line))).toEqual([]);
      expect(all.filter((line) => line.includes("jobs_state_updated (state=?)"))).toHaveLength(4);
      expect(plan(SQL.listByStateAfter)).toEqual([
        "SEARCH jobs USING INDEX jobs_state_id (state=? AND id>?)",
      ]);
    } finally {
      db.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: its file deleted or replaced while it runs", () => {
  it("acknowledges nothing more (503, readiness too) and still works off the jobs it holds", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-deleted-"));
    const path = join(dir, "inbox.db");
    const inbox = new SqliteInbox({ path });
    try {
      const held = await inbox.enqueue(makeCallback() as never, new Date());
      // Someone clears the data folder.
      for (const file of [path, `${path}-wal`, `${path}-shm`]) await rm(file, { force: true });
      const refused = inbox.enqueue(makeCallback() as never, new Date());
      await expect(refused).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(refused).rejects.toThrow(/inbox\.db was deleted while the service ran/);
      await expect(inbox.ping()).rejects.toThrow(/restart the service/);
      const [job] = await inbox.claim("worker-a", 5, 60_000);
      expect(job?.id).toBe(held.id);
      await inbox.complete(held.id, "worker-a", {});
      expect((await inbox.get(held.id))?.state).toBe("done");
    } finally {
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("notices a file copied over it (a restore) as well", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-replaced-"));
    const path = join(dir, "inbox.db");
    const inbox = new SqliteInbox({ path });
    try {
      await inbox.enqueue(makeCallback() as never, new Date());
      await writeFile(join(dir, "restored.db"), "");
      await rename(join(dir, "restored.db"), path);
      await expect(inbox.enqueue(makeCallback() as never, new Date())).rejects.toThrow(
        /inbox\.db was replaced while the service ran/,
      );
    } finally {
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: an older release starting while a newer one migrates", () => {
  it("refuses the newer schema it finds once the lock is free, instead of writing its own version over it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-race-"));
    const path = join(dir, "inbox.db");
    await new SqliteInbox({ path }).close();
    const newer = SCHEMA_VERSION + 1;
    // "The newer release" in a process of its own: it holds the write lock while it migrates.
    const migrating = spawn(
      process.execPath,
      [
        "-e",
        `const db = new (require("better-sqlite3"))(${JSON.stringify(path)});
         db.exec("BEGIN IMMEDIATE");
         db.exec("CREATE TABLE added_by_newer (x)");
         db.pragma("user_version = ${newer}");
         process.stdout.write("locked\\n");
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700);
         db.exec("COMMIT");`,
      ],
      {
        cwd: fileURLToPath(new URL("../..", import.meta.url)),
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    const exited = once(migrating, "exit");
    try {
      await once(migrating.stdout, "data");
      expect(() => new SqliteInbox({ path })).toThrow(
        new RegExp(`schema version ${newer}, newer than this release understands`),
      );
      await exited;
      const check = new Database(path, { readonly: true });
      expect(check.pragma("user_version", { simple: true })).toBe(newer);
      check.close();
    } finally {
      migrating.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("SQLite inbox: schema upgrades", () => {
  it("upgrades a file written by an earlier release in place and claims its jobs in order", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-inbox-upgrade-"));
    const path = join(dir, "inbox.db");
    // Schema version 2 exactly as released: the pending index on run_at alone.
    const old = new Database(path);
    old.exec(`CREATE TABLE jobs (
       id TEXT PRIMARY KEY, process_token TEXT NOT NULL, kreditcheck_id TEXT NOT NULL,
       callback TEXT NOT NULL,
       state TEXT NOT NULL CHECK (state IN ('pending','running','done','dead')),
       attempts INTEGER NOT NULL DEFAULT 0, run_at INTEGER NOT NULL, locked_by TEXT,
       locked_until INTEGER, last_error TEXT, progress TEXT NOT NULL DEFAULT '{}',
       received_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, finished_at INTEGER,
       UNIQUE (process_token, kreditcheck_id));
     CREATE INDEX jobs_pending_run_at ON jobs (run_at) WHERE state = 'pending';
     CREATE INDEX jobs_running_locked_until ON jobs (locked_until) WHERE state = 'running';
     CREATE INDEX jobs_state_updated ON jobs (state, updated_at);
     CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at INTEGER NOT NULL);
     PRAGMA user_version = 2;`);
    // Three jobs of one group commit: the same run_at, received in the order c, a, b.
    const insert = old.prepare(
      "INSERT INTO jobs (id, process_token, kreditcheck_id, callback, state, run_at, received_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 1000, ?, 1000)",
    );
    for (const [id, receivedAt] of [
      ["c", 1],
      ["a", 2],
      ["b", 3],
    ] as const) {
      insert.run(id, `pt-${id}`, `kc-${id}`, JSON.stringify(makeCallback()), receivedAt);
    }
    // Finished jobs the upgrade must count (later kept by triggers).
    old
      .prepare(
        "INSERT INTO jobs (id, process_token, kreditcheck_id, callback, state, run_at, received_at, updated_at, finished_at) VALUES (?, ?, ?, '{}', ?, 1000, 1, 1000, 1000)",
      )
      .run("d", "pt-d", "kc-d", "done");
    old
      .prepare(
        "INSERT INTO jobs (id, process_token, kreditcheck_id, callback, state, run_at, received_at, updated_at, finished_at) VALUES (?, ?, ?, '{}', ?, 1000, 1, 1000, 1000)",
      )
      .run("x", "pt-x", "kc-x", "dead");
    old.close();
    const inbox = new SqliteInbox({ path });
    try {
      const claimed = [];
      for (let i = 0; i < 3; i++) claimed.push(...(await inbox.claim(`w:${i}`, 1, 60_000)));
      expect(claimed.map((job) => job.id)).toEqual(["c", "a", "b"]);
      expect(await inbox.countByState()).toEqual({ pending: 0, running: 3, done: 1, dead: 1 });
      const check = new Database(path, { readonly: true });
      const indexes = check
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs'")
        .pluck()
        .all();
      expect(check.pragma("user_version", { simple: true })).toBe(SCHEMA_VERSION);
      check.close();
      expect(indexes).toContain("jobs_pending_due");
      expect(indexes).toContain("jobs_unfinished_received");
      // A process of the previous release may still run on this file: its claim, as
      // released, names the old index and must keep working.
      const writer = new Database(path);
      const oldClaim = writer.prepare(
        `SELECT id FROM jobs INDEXED BY jobs_pending_run_at WHERE state = 'pending' AND run_at <= ? ORDER BY run_at, received_at LIMIT 1`,
      );
      expect(oldClaim.all(Date.now())).toEqual([]);
      // Its completions and prunes, as released, keep the finished counts right (triggers).
      writer.prepare("UPDATE jobs SET state = 'done', finished_at = 2000 WHERE id = 'c'").run();
      writer.prepare("DELETE FROM jobs WHERE id IN ('d', 'x')").run();
      writer.close();
      expect(await inbox.countByState()).toEqual({ pending: 0, running: 2, done: 1, dead: 0 });
    } finally {
      await inbox.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
