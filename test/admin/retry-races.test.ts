import { afterEach, describe, expect, it } from "vitest";
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

describe("a retry through the admin API racing the worker", () => {
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
});
