import Database from "better-sqlite3";
import type { Callback } from "../../src/callback.js";
import { SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import { uniqueCallback } from "./load.js";

/** Writes `count` distinct callbacks into the SQLite inbox at `path`, through the inbox itself. */
export async function prefillInbox(path: string, count: number): Promise<void> {
  const inbox = new SqliteInbox({ path });
  await Promise.all(
    Array.from({ length: count }, () =>
      inbox.enqueue(JSON.parse(uniqueCallback()) as Callback, new Date()),
    ),
  );
  await inbox.close();
}

/** A done job as the benchmarks read it from the inbox file. */
export interface FinishedJob {
  processToken: string;
  kreditCheckId: string;
  finishedAt: number;
}

/** Reads job counts and finish times straight from the file while the service runs (WAL). */
export function inboxReader(path: string) {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  const done = db.prepare("SELECT COUNT(*) AS n FROM jobs WHERE state = 'done'");
  const total = db.prepare("SELECT COUNT(*) AS n FROM jobs");
  const lastFinished = db.prepare("SELECT MAX(finished_at) AS at FROM jobs WHERE state = 'done'");
  const finished = db.prepare(
    "SELECT process_token AS processToken, kreditcheck_id AS kreditCheckId, finished_at AS finishedAt FROM jobs WHERE state = 'done'",
  );
  return {
    done: () => (done.get() as { n: number }).n,
    total: () => (total.get() as { n: number }).n,
    lastFinishedAt: () => (lastFinished.get() as { at: number | null }).at,
    finishedJobs: () => finished.all() as FinishedJob[],
    close: () => db.close(),
  };
}

/** Polls until `check` is true or `timeoutMs` passes; returns whether it became true. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  return true;
}
