import { afterEach, describe, expect, it } from "vitest";
import { adminClient } from "../../src/admin/admin-client.js";
import { retryJobs } from "../../src/admin/retry-dead.js";
import { ReceiverError } from "../../src/errors.js";
import type { Bundle, Sink } from "../../src/sinks/sink.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";

/** Refuses each check's first delivery for good (the job dies keeping its bundle), then takes it. */
class RefusesFirstDelivery implements Sink {
  readonly name = "flaky";
  readonly refused = new Set<string>();
  readonly delivered: string[] = [];
  async deliver(bundle: Bundle): Promise<void> {
    const id = String(bundle.callback.kreditCheckId);
    if (!this.refused.has(id)) {
      this.refused.add(id);
      throw new ReceiverError("refused once", { code: "http_sink_rejected", retryable: false });
    }
    this.delivered.push(id);
  }
}

describe("a retry through the admin API racing the worker or the pruner", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("does not call a kept bundle's resend afresh when the worker finishes the job before the answer", async () => {
    const sink = new RefusesFirstDelivery();
    harness = await startHarness({ service: { extraSinks: [sink] } });
    const h = harness;
    const callback = makeCallback();
    const id = String((await h.post(callback)).body.id);
    expect((await h.waitForJob(id, "dead")).progress.bundle).toBeDefined();

    // The worker takes the requeued job and finishes it before the admin API answers:
    // complete() keeps no bundle, as a requeue that could not read it back would not.
    const inbox = h.service.inbox;
    const requeue = inbox.requeue.bind(inbox);
    inbox.requeue = async (jobId, options) => {
      const requeued = await requeue(jobId, options);
      await h.waitForJob(jobId, "done");
      return requeued;
    };
    const retried = await fetch(`${h.service.adminUrl}/admin/jobs/${id}/retry`, {
      method: "POST",
    });
    expect(retried.status).toBe(200);
    // The kept bundle was resent to the sink that had refused it, not fetched anew.
    expect(await retried.json()).toEqual({ requeued: true, id, previousState: "dead" });
    expect(sink.delivered).toEqual([callback.kreditCheckId]);
    expect(h.simulator.stats().calls.kreditcheck).toBe(1);
    const line = h.logs.lines().find((entry) => String(entry.msg).startsWith("job re-queued"));
    expect(line).toMatchObject({
      level: 30,
      jobId: id,
      fresh: false,
      msg: "job re-queued through the admin API",
    });
  }, 30_000);

  /**
   * A service whose pruner deletes a dead job between the admin API's read of it and its
   * requeue; `deadJob(pruned)` makes a dead job, one the pruner then deletes so if `pruned`.
   */
  async function prunedOnRetry() {
    harness = await startHarness({ env: { MAX_ATTEMPTS: "1" } });
    const h = harness;
    const pruneOnRetry = new Set<string>();
    const inbox = h.service.inbox;
    const requeue = inbox.requeue.bind(inbox);
    inbox.requeue = async (jobId, options) => {
      if (pruneOnRetry.has(jobId)) {
        // Retention deletes the dead job that finished first: this one (made first).
        expect(await inbox.prune("dead", new Date(Date.now() + 60_000), 1)).toBe(1);
        expect(await inbox.get(jobId)).toBeNull();
      }
      return requeue(jobId, options);
    };
    const deadJob = async (pruned: boolean) => {
      // finAPI refuses the fetch (403): the job is dead at once.
      h.simulator.failNext("kreditcheck", 1, 403);
      const id = String((await h.post(makeCallback())).body.id);
      await h.waitForJob(id, "dead");
      if (pruned) pruneOnRetry.add(id);
      return id;
    };
    return { h, deadJob };
  }

  const deletedMeanwhile = (id: string) => ({
    error: "job_not_found",
    details: [
      {
        message: `job ${id} was deleted meanwhile, by retention (DEAD_RETENTION_MS, DONE_RETENTION_MS) most likely: nothing was requeued`,
      },
    ],
  });

  it("answers 404, deleted meanwhile, for a job the pruner deletes during its retry, not that a dead job cannot be retried", async () => {
    const { h, deadJob } = await prunedOnRetry();
    for (const query of ["", "?ifState=dead"]) {
      const id = await deadJob(true);
      const retried = await fetch(`${h.service.adminUrl}/admin/jobs/${id}/retry${query}`, {
        method: "POST",
      });
      expect(retried.status).toBe(404);
      expect(await retried.json()).toEqual(deletedMeanwhile(id));
      expect(await h.service.inbox.get(id)).toBeNull();
    }
  }, 30_000);

  it("lists such a job in retry --all-dead's failed as deleted meanwhile, and goes on", async () => {
    const { h, deadJob } = await prunedOnRetry();
    const id = await deadJob(true);
    const next = await deadJob(false);
    const call = adminClient({
      adminUrl: h.service.adminUrl,
      token: undefined,
      source: "ADMIN_URL",
      tokenFrom: "ADMIN_TOKEN",
      timeoutMs: 10_000,
    });
    expect(await retryJobs(call)).toEqual({
      requeued: 1,
      ids: [next],
      failed: [
        {
          id,
          error: `POST /admin/jobs/${id}/retry?ifState=dead → 404: ${JSON.stringify(deletedMeanwhile(id))}`,
        },
      ],
    });
    await h.waitForJob(next, "done");
  }, 30_000);
});
