import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Callback } from "../../src/callback.js";
import {
  type FinishedState,
  type Inbox,
  type JobProgress,
  LeaseLostError,
  progressWithFailure,
  StoreUnavailableError,
} from "../../src/inbox/inbox.js";

/** One store under test; every `open` is a new inbox instance on the same data. */
export interface InboxFixture {
  open(): Promise<Inbox>;
  /** Moves the store's notion of time forward (a fake clock, or timestamps backdated in SQL). */
  advance(ms: number): Promise<void>;
  /** The store's current time, for `runAt` values. */
  now(): number;
  dispose(failed: boolean): Promise<void>;
}

let counter = 0;
function callback(overrides: Partial<Callback> = {}): Callback {
  counter += 1;
  return {
    processToken: `pt-${process.pid}-${counter}`,
    kreditCheckId: `kc-${process.pid}-${counter}`,
    status: "SUCCESSFUL",
    clientReference: `CU-${counter}`,
    errorMessage: null,
    ...overrides,
  };
}

const LEASE_MS = 30_000;
const HOUR_MS = 3600 * 1000;

/** The Inbox port's promises, run against every adapter. */
export function defineInboxContract(name: string, createFixture: () => Promise<InboxFixture>) {
  describe(`${name}: the Inbox contract`, () => {
    let fixture: InboxFixture;
    let inbox: Inbox;
    let failed = false;
    const opened: Inbox[] = [];
    const open = async () => {
      const instance = await fixture.open();
      opened.push(instance);
      return instance;
    };

    beforeEach(async ({ onTestFailed }) => {
      failed = false;
      onTestFailed(() => {
        failed = true;
      });
      fixture = await createFixture();
      inbox = await open();
    });
    afterEach(async () => {
      await Promise.allSettled(opened.splice(0).map((instance) => instance.close()));
      await fixture.dispose(failed);
    });

    /** Stores a callback and takes it to `state` (the only due job, so the one claimed). */
    const finish = async (state: FinishedState, sent = callback()): Promise<string> => {
      const { id } = await inbox.enqueue(sent, new Date(fixture.now()));
      const [job] = await inbox.claim("worker-a", 1, LEASE_MS);
      expect(job?.id).toBe(id);
      if (state === "done") await inbox.complete(id, "worker-a", {});
      else await inbox.fail(id, "worker-a", { message: "finapi_forbidden: 403" }, {});
      return id;
    };

    it("stores a callback as a pending job and answers a second one with the same ids as a duplicate", async () => {
      const first = callback();
      const stored = await inbox.enqueue(first, new Date(fixture.now()));
      expect(stored.duplicate).toBe(false);
      const again = await inbox.enqueue({ ...first, clientReference: "changed" }, new Date());
      expect(again).toEqual({ id: stored.id, duplicate: true });
      const job = await inbox.get(stored.id);
      expect(job).toMatchObject({
        processToken: first.processToken,
        kreditCheckId: first.kreditCheckId,
        callback: first,
        state: "pending",
        attempts: 0,
        lockedBy: null,
      });
      expect(await inbox.countByState()).toEqual({ pending: 1, running: 0, done: 0, dead: 0 });
    });

    it("deduplicates the same callback arriving twice in one batch", async () => {
      const same = callback();
      const results = await Promise.all([
        inbox.enqueue(same, new Date()),
        inbox.enqueue(same, new Date()),
        inbox.enqueue(callback(), new Date()),
      ]);
      expect(results[0]?.id).toBe(results[1]?.id);
      expect(results.map((result) => result.duplicate)).toEqual([false, true, false]);
      expect((await inbox.countByState()).pending).toBe(2);
    });

    it("lets a callback with another status replace a stored one that was not successful: the job runs again with it", async () => {
      const first = callback({ status: "FAILED", errorMessage: "Internal error" });
      const id = await finish("done", first);
      const later = new Date(fixture.now() + 1000);
      const successful = { ...first, status: "SUCCESSFUL", errorMessage: null };
      expect(await inbox.enqueue(successful, later)).toEqual({
        id,
        duplicate: false,
        replacedStatus: "FAILED",
      });
      expect(await inbox.get(id)).toMatchObject({
        callback: successful,
        state: "pending",
        attempts: 0,
        lastError: null,
        progress: {},
        receivedAt: later,
        finishedAt: null,
      });
      expect(await inbox.countByState()).toEqual({ pending: 1, running: 0, done: 0, dead: 0 });
      // Now stored SUCCESSFUL: it stands, whatever comes after.
      expect(await inbox.enqueue(first, new Date())).toEqual({ id, duplicate: true });
      expect(await inbox.enqueue(successful, new Date())).toEqual({ id, duplicate: true });
      const [job] = await inbox.claim("worker-b", 1, LEASE_MS);
      expect(job).toMatchObject({ id, callback: successful, attempts: 1 });
    });

    it("keeps a stored callback that is not successful against other statuses, and lets a SUCCESSFUL one take the job from a running attempt once its lease is out", async () => {
      const first = callback({ status: "IN_PROGRESS" });
      const { id } = await inbox.enqueue(first, new Date(fixture.now()));
      // Only SUCCESSFUL is known to be final: a sender's late retry of an earlier status
      // must not replace a later one, so other statuses never replace each other.
      for (const status of ["IN_PROGRESS", "FAILED"]) {
        expect(await inbox.enqueue({ ...first, status }, new Date())).toEqual({
          id,
          duplicate: true,
        });
      }
      const [running] = await inbox.claim("worker-a", 1, LEASE_MS);
      expect(running?.id).toBe(id);
      const replaced = await inbox.enqueue({ ...first, status: "SUCCESSFUL" }, new Date());
      expect(replaced).toMatchObject({ id, duplicate: false, replacedStatus: "IN_PROGRESS" });
      // The attempt on the old callback has lost its lease: it cannot renew (it stops) and
      // its outcome is not written.
      await expect(inbox.renew(id, "worker-a", LEASE_MS)).rejects.toBeInstanceOf(LeaseLostError);
      await expect(inbox.complete(id, "worker-a", {})).rejects.toBeInstanceOf(LeaseLostError);
      // Nobody runs it before that attempt's lease is out: a late delivery of the old bundle
      // would land after the new one.
      expect(await inbox.claim("worker-b", 1, LEASE_MS)).toEqual([]);
      await fixture.advance(LEASE_MS + 1000);
      const [again] = await inbox.claim("worker-b", 1, LEASE_MS);
      expect(again).toMatchObject({ id, callback: { status: "SUCCESSFUL" }, attempts: 1 });
    });

    it("replaces in order when two statuses of one check arrive in one batch", async () => {
      const first = callback({ status: "IN_PROGRESS" });
      const results = await Promise.all([
        inbox.enqueue(first, new Date()),
        inbox.enqueue({ ...first, status: "SUCCESSFUL" }, new Date()),
        inbox.enqueue(first, new Date()),
      ]);
      expect(results[1]).toMatchObject({ duplicate: false, replacedStatus: "IN_PROGRESS" });
      expect(results[2]).toMatchObject({ duplicate: true });
      expect(new Set(results.map((result) => result.id)).size).toBe(1);
      const job = await inbox.get(results[0]?.id ?? "");
      expect(job?.callback.status).toBe("SUCCESSFUL");
    });

    it("stores 200 concurrent enqueues, each once", async () => {
      const callbacks = Array.from({ length: 200 }, () => callback());
      const results = await Promise.all(callbacks.map((each) => inbox.enqueue(each, new Date())));
      expect(new Set(results.map((result) => result.id)).size).toBe(200);
      expect(results.every((result) => !result.duplicate)).toBe(true);
      expect((await inbox.countByState()).pending).toBe(200);
    });

    it("fails only the callback that cannot be stored, not the others of its batch", async () => {
      // A value JSON cannot hold (the HTTP edge refuses such input; this is the store's own guard).
      const unstorable = { ...callback(), extra: 1n } as unknown as Callback;
      const fine = [callback(), callback()];
      const results = await Promise.allSettled([
        inbox.enqueue(fine[0] as Callback, new Date()),
        inbox.enqueue(unstorable, new Date()),
        inbox.enqueue(fine[1] as Callback, new Date()),
      ]);
      expect(results.map((result) => result.status)).toEqual([
        "fulfilled",
        "rejected",
        "fulfilled",
      ]);
      expect((await inbox.countByState()).pending).toBe(2);
    });

    it("tells onEnqueued listeners once a job is stored", async () => {
      let calls = 0;
      const unsubscribe = inbox.onEnqueued(() => {
        calls += 1;
      });
      await inbox.enqueue(callback(), new Date());
      expect(calls).toBeGreaterThanOrEqual(1);
      unsubscribe();
    });

    it("claims a due job with owner, lease and a counted attempt", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      const before = fixture.now();
      const [job] = await inbox.claim("worker-a", 10, LEASE_MS);
      expect(job).toMatchObject({ id, state: "running", lockedBy: "worker-a", attempts: 1 });
      const leaseEnds = job?.lockedUntil?.getTime() ?? 0;
      expect(leaseEnds).toBeGreaterThanOrEqual(before + LEASE_MS - 1000);
      expect(leaseEnds).toBeLessThanOrEqual(fixture.now() + LEASE_MS + 1000);
      expect((await inbox.get(id))?.state).toBe("running");
    });

    it("claims no more than the limit, oldest first", async () => {
      const ids: string[] = [];
      for (let index = 0; index < 3; index++) {
        ids.push((await inbox.enqueue(callback(), new Date())).id);
        await fixture.advance(10);
      }
      const claimed = await inbox.claim("worker-a", 2, LEASE_MS);
      expect(claimed.map((job) => job.id)).toEqual(ids.slice(0, 2));
    });

    it("does not hand a leased job to another worker until the lease expires", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
      await fixture.advance(LEASE_MS - 5000);
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
      await fixture.advance(5001);
      const [taken] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(taken).toMatchObject({ id, lockedBy: "worker-b", attempts: 2 });
    });

    it("keeps a renewed lease past its first expiry", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      await fixture.advance(LEASE_MS - 1000);
      await inbox.renew(id, "worker-a", LEASE_MS);
      await fixture.advance(2000);
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
    });

    it("lets the old owner neither complete, retry, fail, renew nor release a job taken over after its lease expired", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      const [first] = await inbox.claim("worker-a", 10, LEASE_MS);
      expect(first?.takenOverFrom).toBeUndefined();
      await fixture.advance(LEASE_MS + 1);
      // Taken over: the claim says from whom (the only trace a killed worker leaves).
      const [takenOver] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(takenOver).toMatchObject({ id, takenOverFrom: "worker-a", attempts: 2 });
      expect((await inbox.get(id))?.takenOverFrom).toBeUndefined();
      await expect(inbox.complete(id, "worker-a", {})).rejects.toBeInstanceOf(LeaseLostError);
      await expect(inbox.retry(id, "worker-a", 1000, { message: "x" }, {})).rejects.toBeInstanceOf(
        LeaseLostError,
      );
      await expect(inbox.fail(id, "worker-a", { message: "x" }, {})).rejects.toBeInstanceOf(
        LeaseLostError,
      );
      await expect(inbox.renew(id, "worker-a", LEASE_MS)).rejects.toBeInstanceOf(LeaseLostError);
      await expect(inbox.release(id, "worker-a", {})).rejects.toBeInstanceOf(LeaseLostError);
      expect((await inbox.get(id))?.lockedBy).toBe("worker-b");
      await inbox.complete(id, "worker-b", { deliveredSinks: ["file"] });
      const done = await inbox.get(id);
      expect(done).toMatchObject({
        state: "done",
        lockedBy: null,
        progress: { deliveredSinks: ["file"] },
      });
      expect(done?.finishedAt).toBeInstanceOf(Date);
      await expect(inbox.complete(id, "worker-b", {})).rejects.toBeInstanceOf(LeaseLostError);
    });

    it("claims expired leases and due jobs together, oldest first, no more than the limit", async () => {
      const { id: abandoned } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 1, LEASE_MS);
      await fixture.advance(10);
      const { id: second } = await inbox.enqueue(callback(), new Date());
      await fixture.advance(10);
      const { id: third } = await inbox.enqueue(callback(), new Date());
      await fixture.advance(LEASE_MS);
      const claimed = await inbox.claim("worker-b", 2, LEASE_MS);
      expect(claimed.map((job) => [job.id, job.takenOverFrom])).toEqual([
        [abandoned, "worker-a"],
        [second, undefined],
      ]);
      expect((await inbox.get(third))?.state).toBe("pending");
      const [last] = await inbox.claim("worker-b", 2, LEASE_MS);
      expect(last).toMatchObject({ id: third, attempts: 1 });
      expect(last?.takenOverFrom).toBeUndefined();
    });

    it("takes over every expired lease of a stopped worker in one claim, oldest first, the moment the lease ends", async () => {
      const ids: string[] = [];
      for (let index = 0; index < 3; index++) {
        ids.push((await inbox.enqueue(callback(), new Date())).id);
        await fixture.advance(10);
      }
      await inbox.claim("worker-a", 3, LEASE_MS);
      await fixture.advance(LEASE_MS);
      const claimed = await inbox.claim("worker-b", 3, LEASE_MS);
      expect(claimed.map((job) => [job.id, job.takenOverFrom, job.attempts])).toEqual(
        ids.map((id) => [id, "worker-a", 2]),
      );
    });

    it("takes an expired lease before a job due at the same moment but received later", async () => {
      const now = fixture.now();
      const early = await inbox.enqueue(callback(), new Date(now - 2000));
      const late = await inbox.enqueue(callback(), new Date(now - 1000));
      const [first] = await inbox.claim("worker-a", 1, LEASE_MS);
      expect(first?.id).toBe(early.id);
      await fixture.advance(LEASE_MS + 1);
      const [taken] = await inbox.claim("worker-b", 1, LEASE_MS);
      expect(taken).toMatchObject({ id: early.id, takenOverFrom: "worker-a" });
      expect((await inbox.get(late.id))?.state).toBe("pending");
    });

    it("marks a claimed job updated at the claim", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await fixture.advance(60_000);
      const claimedAt = fixture.now();
      await inbox.claim("worker-a", 1, LEASE_MS);
      expect((await inbox.get(id))?.updatedAt.getTime()).toBeGreaterThanOrEqual(claimedAt - 1000);
    });

    it("does not claim a retried job before its runAt, and keeps the error and the progress", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const progress = { bundle: { kreditCheck: { b: 1, a: 2 } }, deliveredSinks: ["file"] };
      await inbox.retry(
        id,
        "worker-a",
        10_000,
        { message: "finapi_unavailable: 503", codes: ["finapi_unavailable"] },
        progress,
      );
      const waiting = await inbox.get(id);
      expect(waiting).toMatchObject({
        state: "pending",
        lockedBy: null,
        lastError: "finapi_unavailable: 503",
        lastErrorCodes: ["finapi_unavailable"],
        progress,
      });
      const runsIn = (waiting?.runAt.getTime() ?? 0) - fixture.now();
      expect(runsIn).toBeGreaterThan(9_000);
      expect(runsIn).toBeLessThanOrEqual(10_000);
      // The codes are kept beside the progress, not in it.
      expect(waiting?.progress).toEqual(progress);
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
      await fixture.advance(10_001);
      const [again] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(again).toMatchObject({ id, attempts: 2, progress });
      // Key order survives the store: the bundle is handed on as finAPI served it.
      expect(JSON.stringify(again?.progress)).toBe(JSON.stringify(progress));
    });

    it("keeps a failure's codes with its text, and drops codes written with another text", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const message =
        "sink_delivery_failed: delivery failed (file: file_sink_write_failed: ENOSPC)";
      const codes = ["sink_delivery_failed", "file_sink_write_failed"];
      await inbox.retry(id, "worker-a", 0, { message, codes }, {});
      const [again] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(again).toMatchObject({ lastError: message, lastErrorCodes: codes, progress: {} });
      // An earlier release hands back the progress it read, codes included, with its own
      // text: here a failure of another sink that starts with the same code.
      const passedOn = JSON.parse(progressWithFailure({}, { message, codes })) as JobProgress;
      const other = "sink_delivery_failed: delivery failed (http: http_sink_unreachable: x)";
      await inbox.fail(id, "worker-b", { message: other }, passedOn);
      expect(await inbox.get(id)).toMatchObject({
        lastError: other,
        lastErrorCodes: null,
        progress: {},
      });
      // Codes not known (a job that gave up after its worker stopped): none stored.
      await inbox.requeue(id);
      await inbox.claim("worker-a", 10, LEASE_MS);
      await inbox.fail(id, "worker-a", { message: "gave up; last error: none recorded" }, {});
      expect((await inbox.get(id))?.lastErrorCodes).toBeNull();
    });

    it("gives a released job back at once, refunding the attempt and keeping its progress and last error", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const failure = { message: "finapi_unavailable: 503", codes: ["finapi_unavailable"] };
      await inbox.retry(id, "worker-a", 0, failure, {});
      await inbox.claim("worker-a", 10, LEASE_MS);
      // Shutdown while a sink was still delivering: the bundle and the sinks that have it stay.
      const progress = { bundle: { kreditCheck: { b: 1, a: 2 } }, deliveredSinks: ["file"] };
      await inbox.release(id, "worker-a", progress, failure);
      const [again] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(again).toMatchObject({
        id,
        attempts: 2,
        lockedBy: "worker-b",
        progress,
        lastError: failure.message,
        lastErrorCodes: failure.codes,
      });
    });

    it("requeues a dead job with a fresh attempt budget, keeping the bundle it fetched and the sinks that have it", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const bundle = { kreditCheck: { b: 1, a: [2, null] }, problems: [] };
      await inbox.fail(
        id,
        "worker-a",
        { message: "sink_delivery_failed: http: 410", codes: ["sink_delivery_failed"] },
        { bundle, deliveredSinks: ["file"], requeuedAt: 1 },
      );
      expect(await inbox.get(id)).toMatchObject({
        state: "dead",
        lastErrorCodes: ["sink_delivery_failed"],
      });
      const before = fixture.now();
      expect(await inbox.requeue(id)).toEqual({ fellBackToFresh: false });
      const requeued = await inbox.get(id);
      expect(requeued).toMatchObject({
        state: "pending",
        attempts: 0,
        finishedAt: null,
        lastError: null,
        lastErrorCodes: null,
        progress: { bundle, deliveredSinks: ["file"] },
      });
      // The bundle as it was written, key order included (sinks get the same bytes).
      expect(JSON.stringify(requeued?.progress.bundle)).toBe(JSON.stringify(bundle));
      // Its age counts from now.
      expect(requeued?.progress.requeuedAt).toBeGreaterThanOrEqual(before - 5000);
      const [claimed] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(claimed?.id).toBe(id);
      // Running: not to be retried.
      expect(await inbox.requeue(id)).toBeNull();
    });

    it("requeues a dead job afresh when asked to, dropping the bundle it kept", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const progress = { bundle: { kreditCheck: null }, deliveredSinks: ["file"] };
      await inbox.fail(id, "worker-a", { message: "postgres_sink_rejected: x" }, progress);
      expect(await inbox.requeue(id, { fresh: true })).toEqual({ fellBackToFresh: false });
      const requeued = await inbox.get(id);
      expect(requeued).toMatchObject({ state: "pending", attempts: 0, lastError: null });
      expect(Object.keys(requeued?.progress ?? {})).toEqual(["requeuedAt"]);
    });

    it("with onlyIfState pending makes a pending job due and leaves a done or dead one as it is", async () => {
      const [pending, done, dead] = [
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
      ];
      await inbox.claim("worker-a", 10, LEASE_MS);
      await inbox.retry(
        pending.id,
        "worker-a",
        HOUR_MS,
        { message: "finapi_unavailable: 503" },
        {},
      );
      await inbox.complete(done.id, "worker-a", { deliveredSinks: ["file"] });
      await inbox.fail(dead.id, "worker-a", { message: "finapi_forbidden: 403" }, {});
      expect(await inbox.requeue(pending.id, { onlyIfState: "pending" })).toEqual({
        fellBackToFresh: false,
      });
      expect((await inbox.claim("worker-b", 10, LEASE_MS)).map((job) => job.id)).toEqual([
        pending.id,
      ]);
      for (const [{ id }, state] of [
        [done, "done"],
        [dead, "dead"],
      ] as const) {
        expect(await inbox.requeue(id, { onlyIfState: "pending" })).toBeNull();
        expect((await inbox.get(id))?.state).toBe(state);
      }
    });

    it("with onlyIfState dead puts a dead job back and leaves a pending, running or done one as it is", async () => {
      // Another operator's retry got there first: the job is pending, running or done since.
      const [dead, deadFresh, pending, done, running] = [
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
        await inbox.enqueue(callback(), new Date()),
      ];
      await inbox.claim("worker-a", 10, LEASE_MS);
      const bundle = { kreditCheck: { a: 1 }, problems: [] };
      await inbox.fail(
        dead.id,
        "worker-a",
        { message: "sink_delivery_failed: x" },
        { bundle, deliveredSinks: ["file"] },
      );
      await inbox.fail(deadFresh.id, "worker-a", { message: "finapi_forbidden: 403" }, {});
      await inbox.retry(
        pending.id,
        "worker-a",
        HOUR_MS,
        { message: "finapi_unavailable: 503" },
        {},
      );
      await inbox.complete(done.id, "worker-a", { deliveredSinks: ["file"] });
      // A dead job is put back as by a plain retry, its kept bundle too; with fresh, afresh.
      expect(await inbox.requeue(dead.id, { onlyIfState: "dead" })).toEqual({
        fellBackToFresh: false,
      });
      expect(await inbox.get(dead.id)).toMatchObject({
        state: "pending",
        attempts: 0,
        progress: { bundle, deliveredSinks: ["file"] },
      });
      expect(await inbox.requeue(deadFresh.id, { onlyIfState: "dead", fresh: true })).toEqual({
        fellBackToFresh: false,
      });
      expect((await inbox.get(deadFresh.id))?.state).toBe("pending");
      for (const [{ id }, state] of [
        [pending, "pending"],
        [done, "done"],
        [running, "running"],
        // Put back above: pending now, so a second operator's conditional retry leaves it.
        [dead, "pending"],
      ] as const) {
        const before = await inbox.get(id);
        expect(await inbox.requeue(id, { onlyIfState: "dead" })).toBeNull();
        expect(await inbox.requeue(id, { onlyIfState: "dead", fresh: true })).toBeNull();
        const after = await inbox.get(id);
        expect(after?.state).toBe(state);
        // Not even made due: a pending job keeps its run_at, a done one its progress.
        expect(after).toEqual(before);
      }
      // The pending one still waits out its backoff (not hurried by the refused retry).
      expect((await inbox.claim("worker-b", 10, LEASE_MS)).map((job) => job.id).sort()).toEqual(
        [dead.id, deadFresh.id].sort(),
      );
    });

    it("requeues a dead job that had fetched nothing, and a done job, as new: fetched and delivered again", async () => {
      const dead = await inbox.enqueue(callback(), new Date());
      const done = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      await inbox.fail(dead.id, "worker-a", { message: "finapi_forbidden: 403" }, {});
      await inbox.complete(done.id, "worker-a", { deliveredSinks: ["file"] });
      for (const { id } of [dead, done]) {
        expect(await inbox.requeue(id)).toEqual({ fellBackToFresh: false });
        const requeued = await inbox.get(id);
        expect(requeued).toMatchObject({ state: "pending", attempts: 0, lastError: null });
        expect(Object.keys(requeued?.progress ?? {})).toEqual(["requeuedAt"]);
      }
    });

    it("makes a pending job waiting for its next attempt due at once, attempts and progress kept", async () => {
      const { id } = await inbox.enqueue(callback(), new Date());
      await inbox.claim("worker-a", 10, LEASE_MS);
      const later = 3_600_000; // a Retry-After of an hour, say
      const progress = { bundle: { kreditCheck: null }, deliveredSinks: ["file"] };
      await inbox.retry(id, "worker-a", later, { message: "http_sink_unavailable: 503" }, progress);
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
      // A fresh start is for finished jobs: a pending one is left as it is.
      expect(await inbox.requeue(id, { fresh: true })).toBeNull();
      expect(await inbox.claim("worker-b", 10, LEASE_MS)).toEqual([]);
      expect(await inbox.requeue(id)).toEqual({ fellBackToFresh: false });
      const [claimed] = await inbox.claim("worker-b", 10, LEASE_MS);
      expect(claimed).toMatchObject({ id, attempts: 2, progress });
    });

    it("knows no job by a string that is not a job id (a typo in the admin API), without an error", async () => {
      await inbox.enqueue(callback(), new Date());
      for (const id of ["no-such-job", "123", "0196f8a2-7c3e-7d1a-9b2c", ""]) {
        expect(await inbox.get(id)).toBeNull();
        expect(await inbox.requeue(id)).toBeNull();
      }
    });

    it("tells when the oldest unfinished job was received, pending or running", async () => {
      expect(await inbox.oldestUnfinished()).toBeNull();
      const first = new Date(fixture.now() - 60_000);
      await inbox.enqueue(callback(), first);
      await inbox.enqueue(callback(), new Date(fixture.now()));
      expect(await inbox.oldestUnfinished()).toEqual(first);
      const [running] = await inbox.claim("worker-a", 1, LEASE_MS);
      expect(running?.receivedAt).toEqual(first);
      expect(await inbox.oldestUnfinished()).toEqual(first);
      await inbox.complete(String(running?.id), "worker-a", {});
      expect((await inbox.oldestUnfinished())?.getTime()).toBeGreaterThan(first.getTime());
    });

    it("counts and lists jobs by state", async () => {
      const ids = [];
      for (let index = 0; index < 4; index++)
        ids.push((await inbox.enqueue(callback(), new Date())).id);
      const [first, second] = await inbox.claim("worker-a", 2, LEASE_MS);
      await inbox.complete(String(first?.id), "worker-a", {});
      await inbox.fail(String(second?.id), "worker-a", { message: "broken" }, {});
      expect(await inbox.countByState()).toEqual({ pending: 2, running: 0, done: 1, dead: 1 });
      expect((await inbox.list({ state: "dead", limit: 10 })).map((job) => job.id)).toEqual([
        second?.id,
      ]);
      expect(await inbox.list({ limit: 3 })).toHaveLength(3);
      expect((await inbox.list({ limit: 10 })).map((job) => job.id).sort()).toEqual(
        [...ids].sort(),
      );
      expect(await inbox.get("00000000-0000-4000-8000-000000000000")).toBeNull();
    });

    it("lists the most recently changed jobs first, whatever their state", async () => {
      for (let index = 0; index < 3; index++) await inbox.enqueue(callback(), new Date());
      await fixture.advance(1_000);
      const [done] = await inbox.claim("worker-a", 1, LEASE_MS);
      await fixture.advance(1_000);
      await inbox.complete(String(done?.id), "worker-a", {});
      await fixture.advance(1_000);
      const [dead] = await inbox.claim("worker-b", 1, LEASE_MS);
      await fixture.advance(1_000);
      await inbox.fail(String(dead?.id), "worker-b", { message: "broken" }, {});
      const latest = await inbox.list({ limit: 2 });
      expect(latest.map((job) => [job.id, job.state])).toEqual([
        [dead?.id, "dead"],
        [done?.id, "done"],
      ]);
      expect((await inbox.list({ limit: 10 })).map((job) => job.state)).toEqual([
        "dead",
        "done",
        "pending",
      ]);
    });

    it("stores and answers a callback even when a listener told of new jobs throws", async () => {
      let calls = 0;
      inbox.onEnqueued(() => {
        calls += 1;
        throw new Error("a listener's own bug");
      });
      // An async one's rejection would be unhandled, which ends the process too.
      inbox.onEnqueued(async () => {
        throw new Error("an async listener's own bug");
      });
      for (let index = 0; index < 2; index++) {
        await expect(inbox.enqueue(callback(), new Date())).resolves.toMatchObject({
          duplicate: false,
        });
      }
      expect(calls).toBeGreaterThanOrEqual(2);
      expect((await inbox.countByState()).pending).toBe(2);
    });

    it("finds the jobs of one check by its processToken, its kreditCheckId or both, latest received first", async () => {
      const shared = callback();
      const t0 = Date.now();
      // One processToken with two checks (a replay by hand), and the same kreditCheckId
      // under another processToken; and a job of another check.
      const first = await inbox.enqueue(shared, new Date(t0));
      const sameToken = await inbox.enqueue(
        callback({ processToken: shared.processToken }),
        new Date(t0 + 1000),
      );
      const sameCheck = await inbox.enqueue(
        callback({ kreditCheckId: shared.kreditCheckId }),
        new Date(t0 + 2000),
      );
      await inbox.enqueue(callback(), new Date(t0 + 3000));
      const ids = (jobs: { id: string }[]) => jobs.map((job) => job.id);
      expect(ids(await inbox.findByCheck({ processToken: shared.processToken }, 10))).toEqual([
        sameToken.id,
        first.id,
      ]);
      expect(ids(await inbox.findByCheck({ kreditCheckId: shared.kreditCheckId }, 10))).toEqual([
        sameCheck.id,
        first.id,
      ]);
      const both = await inbox.findByCheck(
        { processToken: shared.processToken, kreditCheckId: shared.kreditCheckId },
        10,
      );
      expect(ids(both)).toEqual([first.id]);
      expect(both[0]).toMatchObject({
        processToken: shared.processToken,
        kreditCheckId: shared.kreditCheckId,
        state: "pending",
      });
      expect(await inbox.findByCheck({ processToken: shared.processToken }, 1)).toHaveLength(1);
      expect(await inbox.findByCheck({ processToken: "pt-nobody" }, 10)).toEqual([]);
      // The state picks before the limit counts: the older job of the token, now dead,
      // is found with limit 1 although a newer one is pending.
      const [claimed] = await inbox.claim("worker-a", 1, LEASE_MS);
      expect(claimed?.id).toBe(first.id);
      await inbox.fail(first.id, "worker-a", { message: "finapi_forbidden: 403" }, {});
      expect(
        ids(await inbox.findByCheck({ processToken: shared.processToken }, 1, "dead")),
      ).toEqual([first.id]);
      expect(await inbox.findByCheck({ kreditCheckId: shared.kreditCheckId }, 10, "done")).toEqual(
        [],
      );
    });

    it("lists a job without the bundle it keeps, saying that it keeps one", async () => {
      const [kept, none] = [
        (await inbox.enqueue(callback(), new Date())).id,
        (await inbox.enqueue(callback(), new Date())).id,
      ];
      await inbox.claim("worker-a", 10, LEASE_MS);
      // A bundle with a document as the service keeps it (base64): what a list must not load.
      const bundle = { kreditCheck: { a: 1 }, documents: [{ data: "x".repeat(100_000) }] };
      const failure = { message: "sink_delivery_failed: x", codes: ["sink_delivery_failed"] };
      await inbox.fail(kept, "worker-a", failure, { bundle, deliveredSinks: ["file"] });
      await inbox.fail(none, "worker-a", failure, {});
      const listed = await inbox.list({ state: "dead", limit: 10 });
      const byId = new Map(listed.map((job) => [job.id, job]));
      expect(byId.get(kept)).toMatchObject({
        bundleKept: true,
        progress: { deliveredSinks: ["file"] },
        lastErrorCodes: ["sink_delivery_failed"],
      });
      expect(byId.get(kept)?.progress).not.toHaveProperty("bundle");
      expect(JSON.stringify(listed).length).toBeLessThan(5000);
      expect(byId.get(none)).toMatchObject({ bundleKept: false, progress: {} });
      // get() still has it all: the retry resumes from it.
      expect((await inbox.get(kept))?.progress.bundle).toEqual(bundle);
    });

    it("pages through jobs in id order after a cursor, which later updates do not move", async () => {
      const ids: string[] = [];
      for (let index = 0; index < 5; index++) {
        ids.push((await inbox.enqueue(callback(), new Date())).id);
      }
      // Ids made in one millisecond sort in random order among themselves.
      ids.sort();
      const claimed = await inbox.claim("worker-a", 5, LEASE_MS);
      for (const job of claimed) await inbox.fail(job.id, "worker-a", { message: "broken" }, {});
      const start = "00000000-0000-0000-0000-000000000000";
      const first = await inbox.list({ state: "dead", limit: 2, after: start });
      expect(first.map((job) => job.id)).toEqual(ids.slice(0, 2));
      // The first page's jobs are retried and die again: newest updates now, same place.
      for (const job of first) await inbox.requeue(job.id);
      for (const job of await inbox.claim("worker-b", 5, LEASE_MS)) {
        await inbox.fail(job.id, "worker-b", { message: "broken again" }, {});
      }
      const second = await inbox.list({ state: "dead", limit: 2, after: String(first[1]?.id) });
      expect(second.map((job) => job.id)).toEqual(ids.slice(2, 4));
      const last = await inbox.list({ state: "dead", limit: 2, after: String(second[1]?.id) });
      expect(last.map((job) => job.id)).toEqual(ids.slice(4));
      expect(await inbox.list({ state: "dead", limit: 2, after: ids[4] })).toEqual([]);
      expect((await inbox.list({ limit: 10, after: ids[2] })).map((job) => job.id)).toEqual(
        ids.slice(3),
      );
    });

    it("prunes done and dead jobs that finished before the cut-off, each state on its own, and keeps younger ones", async () => {
      const oldDone = await finish("done");
      const oldDead = await finish("dead");
      await fixture.advance(2 * HOUR_MS);
      const youngDone = await finish("done");
      const youngDead = await finish("dead");
      const cutOff = new Date(fixture.now() - HOUR_MS);
      expect(await inbox.prune("done", cutOff, 100)).toBe(1);
      expect(await inbox.get(oldDone)).toBeNull();
      expect((await inbox.get(oldDead))?.state).toBe("dead");
      expect(await inbox.prune("dead", cutOff, 100)).toBe(1);
      expect(await inbox.get(oldDead)).toBeNull();
      expect(await inbox.prune("done", cutOff, 100)).toBe(0);
      expect((await inbox.get(youngDone))?.state).toBe("done");
      expect((await inbox.get(youngDead))?.state).toBe("dead");
    });

    it("never prunes a pending or running job, however old, even when asked to", async () => {
      await finish("done");
      const { id: runningId } = await inbox.enqueue(callback(), new Date());
      expect((await inbox.claim("worker-a", 1, LEASE_MS))[0]?.id).toBe(runningId);
      await inbox.enqueue(callback(), new Date());
      await fixture.advance(2 * HOUR_MS);
      const future = new Date(fixture.now() + 24 * HOUR_MS);
      expect(await inbox.prune("dead", future, 100)).toBe(0);
      expect(await inbox.prune("done", future, 100)).toBe(1);
      for (const state of ["pending", "running"])
        expect(await inbox.prune(state as FinishedState, future, 100)).toBe(0);
      expect(await inbox.countByState()).toEqual({ pending: 1, running: 1, done: 0, dead: 0 });
    });

    it("prunes at most `limit` jobs a call, oldest first, so a backlog goes in several short calls", async () => {
      const ids: string[] = [];
      for (let index = 0; index < 5; index++) {
        ids.push(await finish("done"));
        await fixture.advance(1000);
      }
      const cutOff = new Date(fixture.now());
      expect(await inbox.prune("done", cutOff, 2)).toBe(2);
      const left = async () =>
        (await inbox.list({ state: "done", limit: 10 })).map((job) => job.id).sort();
      expect(await left()).toEqual(ids.slice(2).sort());
      expect(await inbox.prune("done", cutOff, 2)).toBe(2);
      expect(await left()).toEqual(ids.slice(4));
      expect(await inbox.prune("done", cutOff, 2)).toBe(1);
      expect(await inbox.prune("done", cutOff, 2)).toBe(0);
    });

    it("accepts a pruned callback again as a new job: the duplicate check needs the row", async () => {
      const sent = callback();
      const first = await finish("done", sent);
      await fixture.advance(2 * HOUR_MS);
      expect(await inbox.enqueue(sent, new Date())).toEqual({ id: first, duplicate: true });
      expect(await inbox.prune("done", new Date(fixture.now() - HOUR_MS), 100)).toBe(1);
      const again = await inbox.enqueue(sent, new Date());
      expect(again.duplicate).toBe(false);
      expect(again.id).not.toBe(first);
      expect((await inbox.get(again.id))?.state).toBe("pending");
    });

    it("answers ping while open and StoreUnavailableError once closed", async () => {
      await expect(inbox.ping()).resolves.toBeUndefined();
      await inbox.close();
      await expect(inbox.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(inbox.enqueue(callback(), new Date())).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
      await expect(inbox.claim("worker-a", 1, LEASE_MS)).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
    });

    it("keeps every job and its dedupe key across close and reopen", async () => {
      const first = callback();
      const { id } = await inbox.enqueue(first, new Date());
      await inbox.close();
      const reopened = await open();
      expect((await reopened.get(id))?.callback).toEqual(first);
      expect(await reopened.enqueue(first, new Date())).toEqual({ id, duplicate: true });
    });
  });
}
