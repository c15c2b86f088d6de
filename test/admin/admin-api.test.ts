import { execFile } from "node:child_process";
import { rename, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const run = promisify(execFile);

/** The status of a GET to the admin port with the Host header a name would give it. */
function statusAddressedTo(adminUrl: string, host: string, path: string): Promise<number> {
  const { hostname, port } = new URL(adminUrl);
  return new Promise<number>((resolve, reject) => {
    request({ host: hostname, port, path, headers: { Host: host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    })
      .on("error", reject)
      .end();
  });
}

describe("admin port", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  const admin = (path: string, init: RequestInit = {}) =>
    fetch(`${harness?.service.adminUrl}${path}`, init);
  /** POSTs `body` (JSON text unless another Content-Type is given) to the admin API. */
  const post = (path: string, body: string, contentType = "application/json") =>
    admin(path, { method: "POST", headers: { "Content-Type": contentType }, body });

  it("answers liveness and readiness, and readiness turns 503 when the inbox cannot be written", async () => {
    harness = await startHarness();
    expect(await (await admin("/healthz")).json()).toEqual({ status: "ok" });
    const ready = await admin("/readyz");
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      ready: true,
      checks: { inbox: "ok", worker: "ok", shutdown: "ok" },
    });
    const up = await (await admin("/metrics")).text();
    expect(up).toMatch(/^kreditcheck_inbox_up 1$/m);
    expect(up).toMatch(/^kreditcheck_jobs\{state="pending"\} 0$/m);
    await harness.service.inbox.close();
    const notReady = await admin("/readyz");
    expect(notReady.status).toBe(503);
    expect(((await notReady.json()) as { checks: { inbox: string } }).checks.inbox).toMatch(
      /cannot write/,
    );
    // Metrics say so too, instead of the last counts frozen as if all were well.
    const down = await (await admin("/metrics")).text();
    expect(down).toMatch(/^kreditcheck_inbox_up 0$/m);
    expect(down).not.toMatch(/^kreditcheck_jobs\{/m);
    // The jobs API says what is wrong and when to ask again, not a bare 500.
    for (const path of ["/admin/jobs", "/admin/jobs/01234567-89ab-4def-8123-456789abcdef"]) {
      const answer = await admin(path);
      expect(answer.status).toBe(503);
      expect(answer.headers.get("retry-after")).toBe("5");
      expect(await answer.json()).toEqual({
        error: "store_unavailable",
        details: [{ message: "inbox is closed" }],
      });
    }
  });

  it("says in kreditcheck_inbox_writable when the inbox cannot be written, which kreditcheck_inbox_up does not", async () => {
    harness = await startHarness();
    const h = harness;
    const scrape = async () => (await admin("/metrics")).text();
    const path = h.config.store.sqlitePath;
    expect(await scrape()).toMatch(/^kreditcheck_inbox_writable 1$/m);

    // An operator moves the file away under the running service: callbacks are refused.
    await rename(path, `${path}.moved`);
    expect((await h.post(makeCallback())).status).toBe(503);
    let metrics = await scrape();
    expect(metrics).toMatch(/^kreditcheck_inbox_writable 0$/m);
    expect(metrics).toMatch(/^kreditcheck_inbox_up 1$/m);
    await rename(`${path}.moved`, path);
    expect(await scrape()).toMatch(/^kreditcheck_inbox_writable 1$/m);

    // Another connection holds the write lock.
    const blocker = new Database(path);
    try {
      blocker.exec("BEGIN IMMEDIATE");
      metrics = await scrape();
      expect(metrics).toMatch(/^kreditcheck_inbox_writable 0$/m);
      expect(metrics).toMatch(/^kreditcheck_inbox_up 1$/m);
      blocker.exec("ROLLBACK");
    } finally {
      blocker.close();
    }
    expect(await scrape()).toMatch(/^kreditcheck_inbox_writable 1$/m);
    expect((await h.post(makeCallback())).status).toBe(202);
  });

  it("answers 409 for a retry that cannot be done, naming the job's state as it is then", async () => {
    // Every finAPI call fails with 503: after its first attempt the job waits a minute.
    harness = await startHarness({
      simulator: { rate5xx: 1 },
      env: { BACKOFF_BASE_MS: "60000", BACKOFF_MAX_MS: "60000" },
    });
    const { id } = (await harness.post(makeCallback())).body;
    const inbox = harness.service.inbox;
    await waitFor(
      async () => (await inbox.get(String(id)))?.lastError != null,
      "the first attempt failed",
    );
    const retryFresh = () => admin(`/admin/jobs/${id}/retry?fresh=true`, { method: "POST" });
    const pendingMessage =
      "job is pending: it is retried with what it fetched (retry it without fresh to make it due now); fresh applies to dead and done jobs";
    const refused = await retryFresh();
    expect(refused.status).toBe(409);
    expect(await refused.json()).toEqual({
      error: "job_not_retryable",
      details: [{ message: pendingMessage }],
    });
    // Read as dead, pending by the time of the retry (another operator retried it between):
    // the answer names what the job is now.
    const get = inbox.get.bind(inbox);
    inbox.get = async (jobId) => {
      inbox.get = get;
      const job = await get(jobId);
      return job && { ...job, state: "dead" };
    };
    const raced = await retryFresh();
    expect(raced.status).toBe(409);
    expect(await raced.json()).toMatchObject({ details: [{ message: pendingMessage }] });
  });

  it("refuses to retry a running job, saying whose lease it is and until when", async () => {
    // finAPI answers slowly: the job is running while the operator asks.
    harness = await startHarness({ simulator: { latencyMs: 3000 } });
    const { id } = (await harness.post(makeCallback())).body;
    const inbox = harness.service.inbox;
    const running = await waitFor(async () => {
      const job = await inbox.get(String(id));
      return job?.state === "running" ? job : undefined;
    }, "the job running");
    const refused = await admin(`/admin/jobs/${id}/retry`, { method: "POST" });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toEqual({
      error: "job_not_retryable",
      details: [
        {
          message: `job is running (leased by ${running.lockedBy} until ${running.lockedUntil?.toISOString()}); only dead, done or pending jobs can be retried: a running one finishes or fails first, and one whose worker stopped is taken over by another when that lease ends`,
        },
      ],
    });
  });

  it("answers a retry with the state the job was in: a done job's retry is a replay", async () => {
    harness = await startHarness();
    const callback = makeCallback();
    const { id } = (await harness.post(callback)).body;
    await harness.waitForJob(String(id), "done");
    const replayed = await admin(`/admin/jobs/${id}/retry`, { method: "POST" });
    expect(await replayed.json()).toEqual({ requeued: true, id, previousState: "done" });
    await harness.waitForJob(String(id), "done");
  });

  it("shows the counters moving in /metrics after a replayed callback", async () => {
    harness = await startHarness();
    const metricValue = async (line: RegExp) => {
      const text = await (await admin("/metrics")).text();
      return Number(
        text
          .split("\n")
          .find((row) => line.test(row))
          ?.split(" ")
          .pop() ?? 0,
      );
    };
    expect(await metricValue(/^kreditcheck_callbacks_received_total\{outcome="accepted"\}/)).toBe(
      0,
    );
    const callback = makeCallback();
    await harness.post(callback);
    await harness.post(callback);
    await harness.waitForBundle(String(callback.kreditCheckId));
    await waitFor(
      async () =>
        (await metricValue(/^kreditcheck_job_duration_seconds_count\{outcome="done"\}/)) === 1,
      "job metric",
    );
    expect(await metricValue(/^kreditcheck_callbacks_received_total\{outcome="accepted"\}/)).toBe(
      1,
    );
    expect(await metricValue(/^kreditcheck_callbacks_received_total\{outcome="duplicate"\}/)).toBe(
      1,
    );
    expect(await metricValue(/^kreditcheck_jobs\{state="done"\}/)).toBe(1);
    expect(await metricValue(/^kreditcheck_token_requests_total\{outcome="success"\}/)).toBe(1);
    expect(
      await metricValue(
        /^kreditcheck_finapi_request_duration_seconds_count\{endpoint="token",status="200"\}/,
      ),
    ).toBe(1);
    expect(
      await metricValue(
        /^kreditcheck_finapi_request_duration_seconds_count\{endpoint="dac",status="200"\}/,
      ),
    ).toBe(3);
    expect(
      await metricValue(/^kreditcheck_sink_deliveries_total\{sink="file",result="success"\}/),
    ).toBe(1);
    expect(await metricValue(/^process_cpu_user_seconds_total/)).toBeGreaterThan(0);
    await harness.post("{broken");
    expect(await metricValue(/^kreditcheck_callbacks_received_total\{outcome="invalid"\}/)).toBe(1);
  });

  it("shows every series it can count at 0 from the start, so the first dead job raises increase()", async () => {
    harness = await startHarness();
    const text = await (await admin("/metrics")).text();
    for (const series of [
      'kreditcheck_job_failures_total{code="finapi_forbidden",outcome="dead"} 0',
      'kreditcheck_job_failures_total{code="attempt_interrupted",outcome="retry"} 0',
      'kreditcheck_callbacks_received_total{outcome="store_unavailable"} 0',
      'kreditcheck_sink_deliveries_total{sink="file",result="failure"} 0',
      'kreditcheck_token_requests_total{outcome="failure"} 0',
      'kreditcheck_jobs_pruned_total{state="dead"} 0',
      'kreditcheck_prune_runs_total{result="failure"} 0',
      'kreditcheck_job_duration_seconds_count{outcome="dead"} 0',
    ]) {
      expect(text.split("\n")).toContain(series);
    }
  });

  it("does not count a delivery cut short by shutdown as the sink's failure", async () => {
    let started!: () => void;
    const deliveryStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    harness = await startHarness({
      env: { SHUTDOWN_TIMEOUT_MS: "100" },
      service: {
        extraSinks: [
          {
            name: "slow",
            deliver: (_bundle, { signal }) =>
              new Promise((_resolve, reject) => {
                started();
                signal?.addEventListener("abort", () => reject(signal.reason));
              }),
          },
        ],
      },
    });
    const { service } = harness;
    await harness.post(makeCallback());
    await deliveryStarted;
    await harness.close();
    harness = undefined;
    const text = await service.metrics.registry.metrics();
    expect(text).toContain('kreditcheck_job_duration_seconds_count{outcome="released"} 1');
    expect(text).toContain('kreditcheck_sink_deliveries_total{sink="slow",result="failure"} 0');
  });

  it("counts failed attempts in /metrics by error code: retried, and dead with the code that names the fix", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0" } });
    const failures = async () =>
      (await (await admin("/metrics")).text())
        .split("\n")
        .filter((line) => line.startsWith("kreditcheck_job_failures_total{"))
        .filter((line) => !line.endsWith(" 0"))
        .sort();
    harness.simulator.failNext("kreditcheck", 1, 503);
    const retried = makeCallback();
    await harness.post(retried);
    await harness.waitForBundle(String(retried.kreditCheckId));
    harness.simulator.failNext("dac", 1, 403);
    await harness.post(makeCallback());
    await waitFor(async () => (await failures()).length === 2, "both failures counted");
    expect(await failures()).toEqual([
      'kreditcheck_job_failures_total{code="finapi_forbidden",outcome="dead"} 1',
      'kreditcheck_job_failures_total{code="finapi_unavailable",outcome="retry"} 1',
    ]);
  });

  it("shows clientReference as null for a callback without one: every job has the same fields", async () => {
    harness = await startHarness({ service: { worker: false } });
    const { clientReference: _left, ...without } = makeCallback();
    const { id } = (await harness.post(without)).body;
    const shown = (await (await admin(`/admin/jobs/${id}`)).json()) as Record<string, unknown>;
    expect(shown).toHaveProperty("clientReference", null);
  });

  it("pages through jobs in id order: each page's next is its last id, no job twice, none left out", async () => {
    harness = await startHarness({ service: { worker: false } });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(String((await harness.post(makeCallback())).body.id));
    const page = async (after: string) =>
      (await (await admin(`/admin/jobs?limit=2&after=${after}`)).json()) as {
        jobs: { id: string }[];
        next: string | null;
      };
    const seen: string[] = [];
    let after: string | null = "00000000-0000-0000-0000-000000000000";
    while (after !== null) {
      const current = await page(after);
      seen.push(...current.jobs.map((job) => job.id));
      if (current.next !== null) expect(current.next).toBe(current.jobs.at(-1)?.id);
      after = current.next;
    }
    expect(seen).toEqual([...ids].sort());
  });

  it("finds a check's jobs by processToken or kreditCheckId, and refuses a parameter it does not know", async () => {
    harness = await startHarness({ service: { worker: false } });
    const asked = makeCallback();
    const { id } = (await harness.post(asked)).body;
    await harness.post(makeCallback());
    const find = async (query: string) =>
      ((await (await admin(`/admin/jobs?${query}`)).json()) as { jobs: { id: string }[] }).jobs;
    expect((await find(`processToken=${asked.processToken}`)).map((job) => job.id)).toEqual([id]);
    expect((await find(`kreditCheckId=${asked.kreditCheckId}`)).map((job) => job.id)).toEqual([id]);
    expect(await find(`processToken=${asked.processToken}&state=done`)).toEqual([]);
    // Ignored, this would have answered every job, looking like a match.
    const misspelt = await admin(`/admin/jobs?processtoken=${asked.processToken}`);
    expect(misspelt.status).toBe(400);
    expect(await misspelt.json()).toEqual({
      error: "invalid_query",
      details: [
        {
          field: "processtoken",
          message:
            "no such parameter; the list takes state, limit, after, processToken, kreditCheckId",
        },
      ],
    });
    const paged = await admin(
      `/admin/jobs?processToken=${asked.processToken}&after=00000000-0000-0000-0000-000000000000`,
    );
    expect(paged.status).toBe(400);
    const unsafe = await admin("/admin/jobs?processToken=..%2Fx");
    expect(unsafe.status).toBe(400);
  });

  it("shows in /metrics how long the oldest undelivered callback has waited", async () => {
    let now = Date.parse("2026-12-02T10:00:00Z");
    harness = await startHarness({ service: { worker: false, clock: () => now } });
    const age = async () =>
      /^kreditcheck_oldest_unfinished_job_age_seconds (\S+)$/m.exec(
        await (await admin("/metrics")).text(),
      )?.[1];
    expect(await age()).toBe("0");
    await harness.post(makeCallback());
    now += 90_000;
    await harness.post(makeCallback());
    now += 30_000;
    // The first callback, received two minutes ago, is still pending (the worker is off).
    expect(await age()).toBe("120");
    // The inbox fails: the age goes on growing instead of reading 0 (which would clear an
    // "oldest job too old" alert just as the store fails).
    await harness.service.inbox.close();
    now += 60_000;
    expect(await age()).toBe("180");
  });

  it("shows no age, rather than 0, when the inbox could not be read since the start", async () => {
    harness = await startHarness({ service: { worker: false } });
    await harness.service.inbox.close();
    const metrics = await (await admin("/metrics")).text();
    // NaN (prom-client spells it Nan; Prometheus reads either): no alert threshold passes
    // or clears on it, where 0 would read as "nothing waiting".
    expect(metrics).toMatch(/^kreditcheck_oldest_unfinished_job_age_seconds nan$/im);
  });

  it("guards the jobs API with ADMIN_TOKEN but leaves health and metrics open", async () => {
    harness = await startHarness({
      env: { ADMIN_TOKEN: "admin-token-123" },
      service: { worker: false },
    });
    expect((await admin("/admin/jobs")).status).toBe(401);
    expect(
      (await admin("/admin/jobs", { headers: { Authorization: "Bearer wrong-token" } })).status,
    ).toBe(401);
    expect(
      (await admin("/admin/jobs", { headers: { Authorization: "Bearer admin-token-123" } })).status,
    ).toBe(200);
    expect((await admin("/healthz")).status).toBe(200);
    expect((await admin("/metrics")).status).toBe(200);
    // With a token, metrics and readiness answer any name: Prometheus and load balancers
    // reach the port by a name of their own.
    const adminUrl = harness.service.adminUrl;
    expect(await statusAddressedTo(adminUrl, "prometheus.example", "/metrics")).toBe(200);
    expect(await statusAddressedTo(adminUrl, "lb.example", "/readyz")).toBe(200);
    // Refusals are logged with their reason, never with the token given.
    const refusals = harness.logs.lines().filter((line) => line.msg === "admin request refused");
    expect(refusals.map((line) => [line.path, line.reason])).toEqual([
      ["/admin/jobs", "no admin token"],
      ["/admin/jobs", "wrong admin token"],
    ]);
    expect(harness.logs.text()).not.toContain("wrong-token");
  });

  it("the CLI, refused for its token, says which token it sent", async () => {
    harness = await startHarness({
      env: { ADMIN_TOKEN: "admin-token-123" },
      service: { worker: false },
    });
    const env: NodeJS.ProcessEnv = { ...process.env, ADMIN_URL: harness.service.adminUrl };
    delete env.ADMIN_TOKEN;
    const refusal = (args: string[], extra: Record<string, string> = {}) =>
      run(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
        env: { ...env, ...extra },
      }).then(
        () => "",
        (error: { stderr: string }) => error.stderr,
      );
    expect(await refusal(["jobs", "--token", "wrong-token-1"])).toContain(
      "(the token given with --token)",
    );
    expect(await refusal(["jobs"], { ADMIN_TOKEN: "wrong-token-2" })).toContain(
      "(the token in ADMIN_TOKEN)",
    );
    expect(await refusal(["jobs"])).toContain(
      "(no token was sent: set ADMIN_TOKEN or pass --token)",
    );
    // An empty --token sends no Authorization header, and says so.
    expect(await refusal(["jobs", "--token", ""])).toContain("(no token was sent");
  });

  it("without ADMIN_TOKEN answers the jobs API, metrics and readiness only for loopback host names (no DNS rebinding)", async () => {
    harness = await startHarness({ service: { worker: false } });
    const port = new URL(harness.service.adminUrl).port;
    const statusFor = (host: string, path = "/admin/jobs") =>
      statusAddressedTo(harness?.service.adminUrl ?? "", host, path);
    // What a page on attacker.example sends once its name points at 127.0.0.1.
    expect(await statusFor(`attacker.example:${port}`)).toBe(403);
    // Names that only begin or end like loopback are anyone's to point at 127.0.0.1.
    for (const host of [
      `localhost.attacker.example:${port}`,
      `127.0.0.1.attacker.example:${port}`,
      `evil-localhost:${port}`,
      `x127.0.0.1:${port}`,
    ]) {
      expect({ host, status: await statusFor(host) }).toEqual({ host, status: 403 });
    }
    for (const host of [
      `localhost:${port}`,
      `localhost.:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
    ]) {
      expect({ host, status: await statusFor(host) }).toEqual({ host, status: 200 });
    }
    // Metrics (job counts, error codes) and readiness (the store's error) are guarded too;
    // liveness, which says only "ok", is not.
    expect(await statusFor(`attacker.example:${port}`, "/metrics")).toBe(403);
    expect(await statusFor(`attacker.example:${port}`, "/readyz")).toBe(403);
    expect(await statusFor(`attacker.example:${port}`, "/healthz")).toBe(200);
    expect(await statusFor(`localhost:${port}`, "/metrics")).toBe(200);
    expect(await statusFor(`127.0.0.1:${port}`, "/readyz")).toBe(200);
  });

  it("without ADMIN_TOKEN refuses what a web page of another site sends, logging at most 20 refusals a minute", async () => {
    harness = await startHarness({ service: { worker: false } });
    const { body } = await harness.post(makeCallback());
    const id = String(body.id);
    // A "simple" cross-site POST (no preflight) from a page the operator has open.
    const crossSite = await admin(`/admin/jobs/${id}/retry`, {
      method: "POST",
      headers: { Origin: "https://evil.example", "Content-Type": "text/plain" },
    });
    expect(crossSite.status).toBe(403);
    expect(((await crossSite.json()) as { error: string }).error).toBe("forbidden");
    const site = (value: string) => admin("/admin/jobs", { headers: { "Sec-Fetch-Site": value } });
    expect((await site("cross-site")).status).toBe(403);
    expect((await site("same-site")).status).toBe(403);
    // Metrics and readiness too: a page could read them as it could read the jobs.
    expect((await admin("/metrics", { headers: { Origin: "https://evil.example" } })).status).toBe(
      403,
    );
    expect((await admin("/readyz", { headers: { "Sec-Fetch-Site": "cross-site" } })).status).toBe(
      403,
    );
    // Typed into the address bar, or the admin port's own origin: allowed.
    expect((await site("none")).status).toBe(200);
    expect((await site("same-origin")).status).toBe(200);
    for (let index = 0; index < 30; index++) expect((await site("cross-site")).status).toBe(403);
    const logged = harness.logs.lines().filter((line) => line.msg === "admin request refused");
    expect(logged).toHaveLength(20);
    // Never cached: the API answers with bank data.
    expect((await admin("/admin/jobs")).headers.get("cache-control")).toBe("no-store");
    // A job id copied in upper case is the same job.
    expect((await admin(`/admin/jobs/${id.toUpperCase()}`)).status).toBe(200);
  });

  it("lists, shows and retries a dead job until it is delivered", async () => {
    harness = await startHarness({ simulator: { forbidden: true } });
    const callback = makeCallback();
    const { body } = await harness.post(callback);
    const id = String(body.id);
    await harness.waitForJob(id, "dead");

    const list = (await (await admin("/admin/jobs?state=dead")).json()) as {
      jobs: { id: string }[];
      counts: Record<string, number>;
    };
    expect(list.jobs.map((job) => job.id)).toEqual([id]);
    expect(list.counts.dead).toBe(1);
    const shown = (await (await admin(`/admin/jobs/${id}`)).json()) as Record<string, unknown>;
    expect(shown).toMatchObject({
      id,
      state: "dead",
      attempts: 1,
      kreditCheckId: callback.kreditCheckId,
      callback,
    });
    expect(String(shown.lastError)).toContain("data_intelligence:manager");
    // The codes it names, for selecting jobs (retry --all-dead --code): the job's own here.
    expect(shown.lastErrorCodes).toEqual([String(shown.lastError).split(":")[0]]);

    harness.simulator.setFaults({ forbidden: false });
    const retried = await admin(`/admin/jobs/${id}/retry`, { method: "POST" });
    expect(retried.status).toBe(200);
    expect(
      harness.logs.lines().find((line) => line.msg === "job re-queued through the admin API"),
    ).toMatchObject({
      jobId: id,
      processToken: callback.processToken,
      kreditCheckId: callback.kreditCheckId,
      previousState: "dead",
    });
    await harness.waitForBundle(String(callback.kreditCheckId));
    const done = (await (await admin(`/admin/jobs/${id}`)).json()) as Record<string, unknown>;
    await harness.waitForJob(id, "done");
    expect(
      (await (await admin(`/admin/jobs/${id}`)).json()) as Record<string, unknown>,
    ).toMatchObject({
      state: "done",
      lastError: null,
      lastErrorCodes: null,
      bundleFetched: true,
      deliveredSinks: ["file"],
    });
    expect(done.id).toBe(id);

    // Retrying a done job fetches and delivers it again from scratch.
    const callsBefore = harness.simulator.stats().calls.kreditcheck;
    expect((await admin(`/admin/jobs/${id}/retry`, { method: "POST" })).status).toBe(200);
    await waitFor(
      () => harness?.simulator.stats().calls.kreditcheck === callsBefore + 1,
      "a new fetch",
    );
    await harness.waitForJob(id, "done");
    expect((await admin(`/admin/jobs/${id}/retry`, { method: "PUT" })).status).toBe(404);
    expect((await admin("/admin/jobs/no-such-job")).status).toBe(404);
  });

  it("fetches one check directly without enqueueing it, and replays a callback", async () => {
    harness = await startHarness({
      service: { worker: false },
      env: { FETCH_DOCUMENTS: "account_pdf" },
    });
    const fetched = await post(
      "/admin/checks/fetch",
      JSON.stringify({ processToken: "pt-direct", kreditCheckId: "kc-direct" }),
    );
    expect(fetched.status).toBe(200);
    const bundle = (await fetched.json()) as {
      kreditCheck: unknown;
      dacReports: Record<string, unknown>;
      documents: { name: string; contentType: string; base64: string }[];
    };
    expect(bundle.kreditCheck).toBeTruthy();
    expect(Object.keys(bundle.dacReports)).toHaveLength(3);
    // Documents as base64, as the http and stdout sinks carry them.
    expect(bundle.documents).toEqual([
      { name: "account_pdf", contentType: "application/pdf", base64: expect.any(String) },
    ]);
    const pdf = Buffer.from(bundle.documents[0]?.base64 ?? "", "base64");
    expect(pdf.subarray(0, 5).toString()).toBe("%PDF-");
    expect(await harness.service.inbox.list({ limit: 10 })).toEqual([]);

    const badFetch = await post(
      "/admin/checks/fetch",
      JSON.stringify({ processToken: "../etc", kreditCheckId: "x" }),
    );
    expect(badFetch.status).toBe(400);

    const replayed = await post("/admin/callbacks", JSON.stringify(makeCallback()));
    expect(replayed.status).toBe(202);
    expect(await harness.service.inbox.list({ limit: 10 })).toHaveLength(1);
    // Read as the public route reads a callback: a repeated key and a body that is not
    // JSON are refused as there, and nothing is stored.
    const repeated = await post(
      "/admin/callbacks",
      '{"processToken":"pt-a","kreditCheckId":"kc-a","kreditCheckId":"kc-b","status":"SUCCESSFUL"}',
    );
    expect(repeated.status).toBe(400);
    expect(await repeated.json()).toMatchObject({
      error: "duplicate_key",
      details: [{ field: "kreditCheckId" }],
    });
    const notJson = await post("/admin/callbacks", JSON.stringify(makeCallback()), "text/plain");
    expect(notJson.status).toBe(415);
    expect(await harness.service.inbox.list({ limit: 10 })).toHaveLength(1);

    // A replay answers like the public route when the store fails: 503, Retry-After.
    await harness.service.inbox.close();
    const refused = await post("/admin/callbacks", JSON.stringify(makeCallback()));
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
  });
});

/** Runs the CLI as `npm run cli --` does, against the admin API at `adminUrl`. */
function cliAgainst(adminUrl: string) {
  return (...args: string[]) =>
    run(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
      env: { ...process.env, ADMIN_URL: adminUrl },
    });
}

describe("npm run cli", () => {
  it("retry --all-dead --code puts back the jobs that died of that error, once it is fixed", async () => {
    const harness = await startHarness({ simulator: { forbidden: true } });
    const cli = cliAgainst(harness.service.adminUrl);
    try {
      const callbacks = [makeCallback(), makeCallback()];
      const ids: string[] = [];
      for (const callback of callbacks) ids.push(String((await harness.post(callback)).body.id));
      const dead = await Promise.all(ids.map((id) => harness.waitForJob(id, "dead")));
      const code = String(dead[0]?.lastError).split(":")[0] ?? "";
      expect(code).toMatch(/^[a-z_]+$/);

      // A code of the service that no dead job has: said so, nothing requeued, no error.
      const none = await cli("retry", "--all-dead", "--code", "stdout_closed");
      expect(JSON.parse(none.stdout)).toEqual({ requeued: 0, ids: [], failed: [] });
      expect(none.stderr).toBe(
        `kreditcheck-receiver cli: no dead job has code stdout_closed. The dead jobs' codes: ${code}.\n`,
      );
      // A typo: the known codes, a non-zero exit, and the jobs left dead.
      const typo = await cli("retry", "--all-dead", "--code", "finapi_forbiden").catch(
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      expect(typo).toMatchObject({ code: 2, stdout: "" });
      expect(typo.stderr).toContain(
        "kreditcheck-receiver cli: warning: --code finapi_forbiden is none of the service's error codes (did you mean finapi_forbidden?)",
      );
      expect(typo.stderr).toContain(
        `kreditcheck-receiver cli: no dead job has code finapi_forbiden; nothing was requeued. Did you mean finapi_forbidden? The dead jobs' codes: ${code}. The service's error codes: `,
      );
      expect(typo.stderr).toContain("http_sink_rejected, http_sink_unavailable");
      for (const id of ids) expect((await harness.service.inbox.get(id))?.state).toBe("dead");

      harness.simulator.setFaults({ forbidden: false });
      const result = JSON.parse((await cli("retry", "--all-dead", "--code", code)).stdout) as {
        ids: string[];
      };
      expect(result.ids.sort()).toEqual([...ids].sort());
      for (const callback of callbacks) await harness.waitForBundle(String(callback.kreditCheckId));

      await expect(cli("retry", ids[0] ?? "", "--all-dead")).rejects.toMatchObject({ code: 2 });
      // An empty variable must not widen the run to every dead job.
      await expect(cli("retry", "--all-dead", "--code", "")).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining("is not an error code"),
      });
      await expect(cli("retry", ids[0] ?? "", "--code", code)).rejects.toMatchObject({ code: 2 });
      // A done job with --fresh: the API is asked for a fresh start.
      const fresh = JSON.parse((await cli("retry", ids[0] ?? "", "--fresh")).stdout);
      expect(fresh).toEqual({ requeued: true, id: ids[0], previousState: "done", fresh: true });
      // Anything but true or false is refused, not taken for a plain retry.
      const unclear = await fetch(
        `${harness.service.adminUrl}/admin/jobs/${ids[1]}/retry?fresh=1`,
        {
          method: "POST",
        },
      );
      expect(unclear.status).toBe(400);
      const badCursor = await fetch(`${harness.service.adminUrl}/admin/jobs?after=../x`);
      expect(badCursor.status).toBe(400);
    } finally {
      await harness.close();
    }
  });

  it("retry --all-pending --code makes the jobs backing off after an outage due now, once finAPI is back", async () => {
    // Every data call answers 503, and a failed job waits at least a minute before its next try.
    const harness = await startHarness({
      simulator: { rate5xx: 1 },
      env: { BACKOFF_BASE_MS: "60000", BACKOFF_MAX_MS: "600000", FINAPI_RETRIES: "0" },
    });
    const cli = cliAgainst(harness.service.adminUrl);
    try {
      const callbacks = [makeCallback(), makeCallback()];
      const ids: string[] = [];
      for (const callback of callbacks) ids.push(String((await harness.post(callback)).body.id));
      const backingOff = async () =>
        (await Promise.all(ids.map((id) => harness.service.inbox.get(id)))).every(
          (job) => job?.state === "pending" && job.attempts === 1,
        );
      await waitFor(backingOff, "both jobs failed once and wait");
      // Not the code they failed with: nothing is hurried, and the run says which they have.
      const none = await cli("retry", "--all-pending", "--code", "stdout_closed");
      expect(JSON.parse(none.stdout)).toEqual({
        requeued: 0,
        ids: [],
        failed: [],
        noLongerPending: 0,
      });
      expect(none.stderr).toBe(
        "kreditcheck-receiver cli: no pending job has code stdout_closed. The pending jobs' codes: finapi_unavailable.\n",
      );
      await expect(cli("retry", "--all-pending", "--fresh")).rejects.toMatchObject({ code: 2 });

      harness.simulator.setFaults({ rate5xx: 0 });
      const result = JSON.parse(
        (await cli("retry", "--all-pending", "--code", "finapi_unavailable")).stdout,
      ) as { ids: string[]; failed: unknown[] };
      expect(result.ids.sort()).toEqual([...ids].sort());
      expect(result.failed).toEqual([]);
      // Long before their backoff of a minute or more.
      for (const callback of callbacks) await harness.waitForBundle(String(callback.kreditCheckId));
      // A job that finished between the list and its retry is left as it is, not replayed.
      await harness.waitForJob(String(ids[0]), "done");
      const late = await fetch(
        `${harness.service.adminUrl}/admin/jobs/${ids[0]}/retry?ifState=pending`,
        { method: "POST" },
      );
      expect(late.status).toBe(409);
      expect(await late.json()).toEqual({
        error: "job_not_retryable",
        details: [{ message: "job is done, not pending (ifState=pending): left as it is" }],
      });
      expect((await harness.service.inbox.get(String(ids[0])))?.state).toBe("done");
      // Misspelt, it is refused rather than ignored (which would replay the done job).
      const misspelt = await fetch(
        `${harness.service.adminUrl}/admin/jobs/${ids[0]}/retry?ifstate=pending`,
        { method: "POST" },
      );
      expect(misspelt.status).toBe(400);
      expect(await misspelt.json()).toEqual({
        error: "invalid_query",
        details: [{ field: "ifstate", message: "no such parameter; a retry takes fresh, ifState" }],
      });
    } finally {
      await harness.close();
    }
  });

  it("retry --all-dead --code takes a module sink's own code, with a warning that it is none of the service's", async () => {
    const harness = await startHarness({
      env: { SINKS: "file,module:test/fixtures/own-code-sink.mjs" },
    });
    const cli = cliAgainst(harness.service.adminUrl);
    try {
      const id = String((await harness.post(makeCallback())).body.id);
      const dead = await harness.waitForJob(id, "dead");
      expect(dead.lastErrorCodes).toEqual(["sink_delivery_failed", "queue_full"]);
      // Its own code mistyped: the service's list cannot know it, the dead jobs' codes do.
      const typo = await cli("retry", "--all-dead", "--code", "queue_ful").catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(typo).toMatchObject({ code: 2 });
      expect(typo.stderr).toContain(
        "no dead job has code queue_ful; nothing was requeued. Did you mean queue_full? The dead jobs' codes: queue_full, sink_delivery_failed. The service's error codes: ",
      );
      // Dead on its first attempt (retryable: false), with the module's own words.
      expect(dead.attempts).toBe(1);
      expect(dead.lastError).toBe(
        "sink_delivery_failed: delivery failed (queue: queue_full: the queue is full) Fix: empty the queue, then retry the job",
      );
      const retried = await cli("retry", "--all-dead", "--code", "queue_full");
      expect(JSON.parse(retried.stdout)).toEqual({ requeued: 1, ids: [id], failed: [] });
      expect(retried.stderr).toBe(
        "kreditcheck-receiver cli: warning: --code queue_full is none of the service's error codes; looking for dead jobs with it anyway, as a module sink may use codes of its own\n",
      );
    } finally {
      await harness.close();
    }
  });

  it("replay sends a file's bytes as they are: the admin API answers them as the public route does", async () => {
    const harness = await startHarness({ service: { worker: false } });
    const cli = cliAgainst(harness.service.adminUrl);
    try {
      const body = (processToken: string, rest: string) =>
        `{"processToken":"${processToken}","kreditCheckId":"kc-${processToken}",${rest}}`;
      const files: Record<string, Buffer> = {
        // JSON.parse would keep the last status without a word.
        duplicateKey: Buffer.from(body("pt-dup", '"status":"FAILED","status":"SUCCESSFUL"')),
        // Latin-1 ü: a UTF-8 decode would turn it into U+FFFD without a word.
        notUtf8: Buffer.concat([
          Buffer.from(body("pt-latin1", '"status":"SUCCESSFUL","clientReference":"M').slice(0, -1)),
          Buffer.from([0xfc]),
          Buffer.from('ller"}'),
        ]),
        // Taken by the public route; JSON.parse refused it.
        bom: Buffer.concat([
          Buffer.from([0xef, 0xbb, 0xbf]),
          Buffer.from(body("pt-bom", '"status":"SUCCESSFUL"')),
        ]),
      };
      for (const [name, bytes] of Object.entries(files)) {
        // As finAPI (or curl --data-binary @file) sends the file to the public route.
        const viaPublic = await fetch(`${harness.service.url}${harness.config.http.callbackPath}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: bytes,
        });
        const publicAnswer = await viaPublic.text();
        const file = join(harness.dir, `${name}.json`);
        await writeFile(file, bytes);
        const replayed = await cli("replay", file).then(
          (done) => ({ code: 0, ...done }),
          (error: { code: number; stdout: string; stderr: string }) => error,
        );
        if (viaPublic.status === 400) {
          expect({ name, code: replayed.code, stderr: replayed.stderr }).toEqual({
            name,
            code: 2,
            stderr: `kreditcheck-receiver cli: POST /admin/callbacks → 400: ${publicAnswer}\n`,
          });
        } else {
          // Stored by the public route: the replay finds the very same callback.
          expect(viaPublic.status).toBe(202);
          const { id } = JSON.parse(publicAnswer) as { id: string };
          expect({ name, code: replayed.code, answer: JSON.parse(replayed.stdout) }).toEqual({
            name,
            code: 0,
            answer: { accepted: true, duplicate: true, id },
          });
        }
      }
      expect(
        (await harness.service.inbox.list({ limit: 10 })).map((job) => job.processToken),
      ).toEqual(["pt-bom"]);
      const missing = await cli("replay", join(harness.dir, "missing.json")).catch(
        (error: { code: number; stderr: string }) => error,
      );
      expect(missing).toMatchObject({
        code: 2,
        stderr: expect.stringContaining(`cannot read ${join(harness.dir, "missing.json")}: ENOENT`),
      });
    } finally {
      await harness.close();
    }
  });

  it("prints a long answer whole into a slow pipe, and refuses what a command does not take", async () => {
    const harness = await startHarness({ service: { worker: false } });
    const env: NodeJS.ProcessEnv = { ...process.env, ADMIN_URL: harness.service.adminUrl };
    try {
      for (let index = 0; index < 400; index++) {
        await harness.service.inbox.enqueue(makeCallback() as never, new Date());
      }
      // The reader starts late: the pipe's 64 KiB fill up before the CLI is done writing.
      const piped = await run(
        "sh",
        ["-c", `"${process.execPath}" --import tsx src/cli.ts jobs --limit 1000 | (sleep 1; cat)`],
        { env, maxBuffer: 16 * 1024 * 1024 },
      );
      expect(piped.stdout.length).toBeGreaterThan(64 * 1024);
      expect((JSON.parse(piped.stdout) as { jobs: unknown[] }).jobs).toHaveLength(400);

      const cli = (...args: string[]) =>
        run(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { env });
      await expect(cli("retry", "job-a", "job-b")).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining('retry takes no argument "job-b"'),
      });
      await expect(cli("jobs", "--code", "finapi_forbidden")).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining("jobs has no option --code"),
      });
      await expect(cli("jobs", "dead")).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining('jobs takes no argument "dead"'),
      });
    } finally {
      await harness.close();
    }
  });

  it("lists jobs, shows one, replays a file and fetches a check over the admin API", async () => {
    const harness = await startHarness({
      env: { ADMIN_TOKEN: "cli-token-123" },
      service: { worker: false },
    });
    const cli = (...args: string[]) =>
      run(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], {
        env: { ...process.env, ADMIN_URL: harness.service.adminUrl, ADMIN_TOKEN: "cli-token-123" },
      });
    try {
      const file = join(harness.dir, "callback.json");
      const callback = makeCallback();
      await writeFile(file, JSON.stringify(callback));
      const replayed = JSON.parse((await cli("replay", file)).stdout) as {
        id: string;
        duplicate: boolean;
      };
      expect(replayed.duplicate).toBe(false);
      // Again: stored already, and a replay does not run it again; the CLI says what would.
      const again = await cli("replay", file);
      expect(JSON.parse(again.stdout)).toMatchObject({ duplicate: true, id: replayed.id });
      expect(again.stderr).toBe(
        `kreditcheck-receiver cli: this callback is stored already as job ${replayed.id} (pending); a replay does not run it again: npm run cli -- retry ${replayed.id}\n`,
      );

      const listed = JSON.parse((await cli("jobs", "--state", "pending")).stdout) as {
        jobs: { id: string }[];
      };
      expect(listed.jobs.map((job) => job.id)).toEqual([replayed.id]);
      // Paging: with a second job, one per page in id order, `next` naming the next --after.
      await harness.post(makeCallback());
      const page = async (after: string) =>
        JSON.parse((await cli("jobs", "--limit", "1", "--after", after)).stdout) as {
          jobs: { id: string }[];
          next: string | null;
        };
      const first = await page("00000000-0000-0000-0000-000000000000");
      expect(first.jobs).toHaveLength(1);
      const rest = await page(String(first.next));
      expect(rest.jobs).toHaveLength(1);
      expect(rest.jobs[0]?.id).not.toBe(first.jobs[0]?.id);
      expect((await page(String(rest.jobs[0]?.id))).jobs).toEqual([]);
      const shown = JSON.parse((await cli("job", replayed.id)).stdout) as { kreditCheckId: string };
      expect(shown.kreditCheckId).toBe(callback.kreditCheckId);
      // A customer's complaint names the check, not the job.
      const ofCheck = JSON.parse(
        (await cli("jobs", "--process-token", String(callback.processToken))).stdout,
      ) as { jobs: { id: string }[] };
      expect(ofCheck.jobs.map((job) => job.id)).toEqual([replayed.id]);
      const byCheckId = JSON.parse(
        (await cli("jobs", "--kreditcheck-id", String(callback.kreditCheckId))).stdout,
      ) as { jobs: { id: string }[] };
      expect(byCheckId.jobs.map((job) => job.id)).toEqual([replayed.id]);

      const fetched = JSON.parse(
        (await cli("fetch", "--process-token", "pt-cli", "--kreditcheck-id", "kc-cli")).stdout,
      ) as { callback: { kreditCheckId: string } };
      expect(fetched.callback.kreditCheckId).toBe("kc-cli");

      const help = await cli("jobs", "--help");
      expect(help.stdout).toContain("--state");
      await expect(cli("job", "nope")).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining("GET /admin/jobs/nope → 404"),
      });

      // As in a .env copied from .env.example: empty values count as unset, and the URL
      // comes from the service's own ADMIN_HOST and ADMIN_PORT.
      const { port } = new URL(harness.service.adminUrl);
      const fromPort = await run(process.execPath, ["--import", "tsx", "src/cli.ts", "jobs"], {
        env: {
          ...process.env,
          ADMIN_URL: "",
          ADMIN_HOST: " ",
          ADMIN_PORT: port,
          ADMIN_TOKEN: "cli-token-123 ",
        },
      });
      const fromPortIds = (JSON.parse(fromPort.stdout) as { jobs: { id: string }[] }).jobs.map(
        (job) => job.id,
      );
      expect(fromPortIds).toContain(replayed.id);
    } finally {
      await harness.close();
    }
  });
});
