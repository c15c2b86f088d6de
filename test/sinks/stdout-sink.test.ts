import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.js";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import type { Bundle } from "../../src/sinks/sink.js";
import { StdoutSink } from "../../src/sinks/stdout.js";
import { type ChildScript, freePort, serviceEnv, spawnService } from "../support/child-service.js";
import { makeCallback } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const bundle: Bundle = {
  callback: { processToken: "pt-1", kreditCheckId: "kc-1", status: "SUCCESSFUL" },
  kreditCheck: { status: "SUCCESSFUL" },
  dacReports: {},
  problems: [],
  receivedAt: "2026-01-01T00:00:00.000Z",
  completedAt: "2026-01-01T00:00:01.000Z",
  documents: [{ name: "account_pdf", contentType: "application/pdf", data: Buffer.from("%PDF") }],
};

describe("StdoutSink", () => {
  it("prints one line per bundle, typed, with documents as base64", async () => {
    const out = new PassThrough();
    const chunks: string[] = [];
    out.setEncoding("utf8").on("data", (chunk: string) => chunks.push(chunk));
    await new StdoutSink(out).deliver(bundle);
    const text = chunks.join("");
    expect(text.endsWith("\n")).toBe(true);
    expect(text.trimEnd().includes("\n")).toBe(false);
    const line = JSON.parse(text) as { type: string; bundle: Record<string, unknown> };
    expect(line.type).toBe("kreditcheck.bundle");
    expect(line.bundle.callback).toEqual(bundle.callback);
    expect(line.bundle.documents).toEqual([
      { name: "account_pdf", contentType: "application/pdf", base64: "JVBERg==" },
    ]);
  });

  it("fails a delivery as retryable, naming the cause, once its reader is gone", async () => {
    const out = new PassThrough();
    out.destroy();
    const sink = new StdoutSink(out);
    for (let attempt = 0; attempt < 2; attempt++) {
      await expect(sink.deliver(bundle)).rejects.toMatchObject({
        code: "stdout_closed",
        retryable: true,
      });
    }
  });
});

/** A stdout stand-in whose writes fail, succeed or never finish, as told. */
function fakeOut(outcome: () => NodeJS.ErrnoException | null | "never") {
  const written: string[] = [];
  const out = new PassThrough();
  out.write = ((line: string, callback: (error?: Error | null) => void) => {
    const result = outcome();
    if (result === "never") return false;
    if (!result) written.push(line);
    process.nextTick(callback, result);
    return true;
  }) as typeof out.write;
  return { out, written };
}

describe("StdoutSink beside the service's log lines", () => {
  it("keeps every bundle line whole in a slow pipe while log lines are written meanwhile", async () => {
    // The service's wiring: with the stdout sink on, the logger shares process.stdout.
    const script = `import { createLogger } from "./src/logger.ts";
      import { StdoutSink } from "./src/sinks/stdout.ts";
      const logger = createLogger({ level: "info", shareStdout: true });
      const sink = new StdoutSink();
      const data = Buffer.alloc(150_000, 7);
      const ticker = setInterval(() => logger.info({ tick: true }, "finAPI call"), 1);
      await Promise.all(Array.from({ length: 40 }, (_, index) => sink.deliver({
        callback: { processToken: "pt", kreditCheckId: "kc-" + index, status: "SUCCESSFUL" },
        kreditCheck: null, dacReports: {}, problems: [],
        receivedAt: "2026-01-01T00:00:00.000Z", completedAt: "2026-01-01T00:00:01.000Z",
        documents: [{ name: "account_pdf", contentType: "application/pdf", data }],
      })));
      clearInterval(ticker);`;
    const { stdout } = await promisify(execFile)(
      "sh",
      [
        "-c",
        // The reader starts late: the pipe takes a long line in pieces.
        `"${process.execPath}" --import tsx --input-type=module -e '${script}' | (sleep 0.3; cat)`,
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    const lines = stdout.trimEnd().split("\n");
    const unreadable = lines.filter((line) => {
      try {
        JSON.parse(line);
        return false;
      } catch {
        return true;
      }
    });
    expect(unreadable.map((line) => line.slice(0, 80))).toEqual([]);
    expect(lines.filter((line) => line.startsWith('{"type":"kreditcheck.bundle"'))).toHaveLength(
      40,
    );
  });
});

describe("StdoutSink on a stream that is not gone", () => {
  const logger = createLogger({ level: "silent" });

  it("fails only the delivery that met another error (a full disk), and takes the next", async () => {
    let failures = 1;
    const { out, written } = fakeOut(() =>
      failures-- > 0 ? Object.assign(new Error("no space left"), { code: "ENOSPC" }) : null,
    );
    const sink = new StdoutSink(out);
    await expect(sink.deliver(bundle, { logger })).rejects.toMatchObject({
      code: "stdout_write_failed",
      retryable: true,
    });
    await sink.deliver(bundle, { logger });
    expect(written).toHaveLength(1);
  });

  it("gives up a write the reader does not take once the job is stopped, and can be closed", async () => {
    const { out } = fakeOut(() => "never");
    const sink = new StdoutSink(out);
    const stop = new AbortController();
    const delivery = sink.deliver(bundle, { logger, signal: stop.signal });
    stop.abort(new Error("shutting down"));
    await expect(delivery).rejects.toMatchObject({ code: "stdout_blocked", retryable: true });

    expect(out.listenerCount("error")).toBe(1);
    await sink.close();
    expect(out.listenerCount("error")).toBe(0);
  });
});

describe("SINKS=stdout when the program reading the service's output quits", () => {
  let simulator: RunningSimulator | undefined;
  let service: ChildScript | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await service?.stop();
    await simulator?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("keeps the service up and answering; the check waits with the cause as its last error", async () => {
    simulator = await startSimulator();
    dir = await mkdtemp(join(tmpdir(), "kcr-stdout-"));
    const [port, adminPort] = [await freePort(), await freePort()];
    service = await spawnService(
      serviceEnv(simulator, dir, {
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        SINKS: "stdout",
        WORKER_POLL_MS: "50",
      }),
      { captureStdout: true },
    );
    // Like `| jq` exiting: the read end of the service's stdout closes.
    service.child.stdout?.destroy();

    const post = (callback: Record<string, unknown>) =>
      fetch(`${service?.url}/callbacks/kreditcheck`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(callback),
      });
    const first = await post(makeCallback());
    expect(first.status).toBe(202);
    const { id } = (await first.json()) as { id: string };

    let lastError = "";
    let lastErrorCodes: unknown;
    await waitFor(
      async () => {
        const job = (await (
          await fetch(`http://127.0.0.1:${adminPort}/admin/jobs/${id}`)
        ).json()) as { lastError?: string | null; lastErrorCodes?: unknown };
        lastError = job.lastError ?? "";
        lastErrorCodes = job.lastErrorCodes;
        return lastError !== "";
      },
      "the job's first failed delivery",
      15_000,
    );
    expect(lastError).toMatch(/stdout_closed: standard output is closed \(.*EPIPE/);
    expect(lastError).toContain("SINKS=file");
    // What `retry --all-dead --code stdout_closed` selects by.
    expect(lastErrorCodes).toEqual(["sink_delivery_failed", "stdout_closed"]);

    // Still running and still taking callbacks.
    expect(service.child.exitCode).toBeNull();
    expect((await post(makeCallback())).status).toBe(202);
    expect((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).status).toBe(200);
  });
});

describe("SINKS=stdout when the reader stalls over a shutdown", () => {
  let simulator: RunningSimulator | undefined;
  let service: ChildScript | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    service?.child.stdout?.resume();
    await service?.stop();
    await simulator?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("waits for a reader that resumes before the exit's bound: the last line arrives whole", async () => {
    // Lines of about 40 KB: a few fill the pipe, and one is taken only in part.
    simulator = await startSimulator({
      accounts: { connections: 4, accountsPerConnection: 4, accountsWithoutCaseId: 1 },
    });
    dir = await mkdtemp(join(tmpdir(), "kcr-stdout-stall-"));
    const [port, adminPort] = [await freePort(), await freePort()];
    service = await spawnService(
      serviceEnv(simulator, dir, {
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        SINKS: "stdout",
        FETCH_DOCUMENTS: "account_pdf,dac_zip",
        WORKER_POLL_MS: "50",
        SHUTDOWN_TIMEOUT_MS: "1000",
      }),
      { captureStdout: true },
    );
    const out = service.child.stdout;
    if (!out) throw new Error("stdout is captured");
    let text = "";
    out.on("data", (chunk: string) => {
      text += chunk;
    });
    const ended = new Promise((resolve) => out.once("end", resolve));
    // The reader stops reading: its buffer, then the pipe fill, and the service's writes
    // wait in the process.
    out.pause();
    const post = () =>
      fetch(`${service?.url}/callbacks/kreditcheck`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(makeCallback()),
      });
    for (let i = 0; i < 12; i += 1) expect((await post()).status).toBe(202);
    await waitFor(
      () => out.readableLength >= out.readableHighWaterMark,
      "the reader's buffer full",
    );
    // Lines beyond the pipe's 64 KB: a delivery waits in its write when the stop comes.
    for (let i = 0; i < 8; i += 1) expect((await post()).status).toBe(202);
    await new Promise((resolve) => setTimeout(resolve, 500));

    service.child.kill("SIGTERM");
    // Past the jobs' 80 % (their writes given up, the service closed: the exit came here
    // before, at 0.8-1.0 s), well within SHUTDOWN_TIMEOUT_MS + 1 s (how long the exit now
    // waits for stdout), so that a loaded machine's late timer does not pass it.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    out.resume();
    expect(await service.exited).toBe(0);
    await ended;

    expect(text.endsWith("\n")).toBe(true);
    const lines = text.trimEnd().split("\n");
    const parsed = lines.map((line) => JSON.parse(line) as { type?: string; msg?: string });
    expect(parsed.filter((line) => line.type === "kreditcheck.bundle").length).toBeGreaterThan(0);
    // The log lines queued behind the last bundle line came too, the last one last.
    expect(parsed.at(-1)?.msg).toBe("stopped");
  });
});
