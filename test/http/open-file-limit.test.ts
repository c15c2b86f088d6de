import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import {
  descriptorsReserved,
  fitConnections,
  openFileLimit,
} from "../../src/http/open-file-limit.js";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import { type ChildScript, freePort, serviceEnv, spawnService } from "../support/child-service.js";
import { makeCallback } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes
`;

describe("fitting MAX_CONNECTIONS into the open-file limit", () => {
  it("reads the limit in force from /proc/self/limits, and nothing where there is none", () => {
    expect(openFileLimit(() => LIMITS)).toBe(1024);
    expect(openFileLimit(() => LIMITS.replace("1024  ", "unlimited"))).toBeUndefined();
    expect(
      openFileLimit(() => {
        throw new Error("ENOENT");
      }),
    ).toBeUndefined();
  });

  it("keeps MAX_CONNECTIONS when it fits beside what the service needs, and lowers it when not", () => {
    // The defaults: 4 worker slots, 4 DAC reports at once.
    expect(descriptorsReserved(4, 4)).toBe(192);
    expect(fitConnections(1000, 20_000, 128)).toEqual({ maxConnections: 1000, lowered: false });
    expect(fitConnections(1000, undefined, 128)).toEqual({ maxConnections: 1000, lowered: false });
    expect(fitConnections(1000, 1024, 128)).toEqual({ maxConnections: 896, lowered: true });
    // Exactly at the limit still fits; one descriptor more does not.
    expect(fitConnections(896, 1024, 128)).toEqual({ maxConnections: 896, lowered: false });
    expect(fitConnections(897, 1024, 128)).toEqual({ maxConnections: 896, lowered: true });
    expect(fitConnections(1000, 64, 128)).toEqual({ maxConnections: 1, lowered: true });
  });
});

/** Whether `prlimit` (util-linux) can run a command here; not on every machine. */
async function hasPrlimit(): Promise<boolean> {
  try {
    await promisify(execFile)("prlimit", ["--nofile=256:256", "--", "true"]);
    return true;
  } catch {
    return false;
  }
}

describe("a service whose open-file limit is lower than MAX_CONNECTIONS needs", () => {
  let simulator: RunningSimulator | undefined;
  let service: ChildScript | undefined;
  let dir: string | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await service?.stop();
    await simulator?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("holds fewer connections, says so at start, and still fetches and writes bundles while idle connections flood it", async (ctx) => {
    if (!(await hasPrlimit())) {
      ctx.skip(true, "prlimit (util-linux) is not available to lower the open-file limit");
    }
    // finAPI answers slowly, so the check is fetched and written while the flood is held.
    simulator = await startSimulator({ latencyMs: 500 });
    dir = await mkdtemp(join(tmpdir(), "kcr-nofile-"));
    const [port, adminPort] = [await freePort(), await freePort()];
    service = await spawnService(
      serviceEnv(simulator, dir, { PORT: String(port), ADMIN_PORT: String(adminPort) }),
      { captureStdout: true, prefix: ["prlimit", "--nofile=256:256", "--"] },
    );
    const warning = await waitFor(
      () => service?.lines.find((line) => line.includes("does not fit the process's open-file")),
      "the start-up warning",
    );
    // 256 descriptors, 192 of them for the service itself (the defaults).
    expect(JSON.parse(warning)).toMatchObject({
      level: 40,
      maxConnections: 64,
      configured: 1000,
      openFileLimit: 256,
    });

    const accepted = await fetch(`${service.url}/callbacks/kreditcheck`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Connection: "close" },
      body: JSON.stringify(makeCallback()),
    });
    expect(accepted.status).toBe(202);
    const { id } = (await accepted.json()) as { id: string };
    // More idle connections than descriptors: without the lowered cap the service ran out
    // of them (EMFILE) for finAPI's sockets and the bundle's files.
    for (let index = 0; index < 300; index += 1) {
      sockets.push(connect(port, "127.0.0.1").on("error", () => undefined));
    }
    const job = await waitFor(async () => {
      const answer = await fetch(`http://127.0.0.1:${adminPort}/admin/jobs/${id}`);
      const body = (await answer.json()) as { state: string; attempts: number };
      return body.state === "done" ? body : undefined;
    }, "the job done");
    expect(job.attempts).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const dropped = Number(
      /^kreditcheck_connections_dropped_total\{port="public"\} (\d+)$/m.exec(metrics)?.[1],
    );
    expect(dropped).toBeGreaterThanOrEqual(200);
  });
});
