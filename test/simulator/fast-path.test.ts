import { request } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { caseIdFor } from "../../src/simulator/data.js";
import type { SimEndpoint } from "../../src/simulator/faults.js";
import {
  type RunningSimulator,
  type SimulatorOptions,
  startSimulator,
} from "../../src/simulator/server.js";
import { tokenOf } from "./helpers.js";

/**
 * The KreditCheck and DAC report GETs are answered before Express for their plain URLs;
 * with a query string (or any other unusual form) the Express routes answer them. Both
 * must give the same bytes: status line, headers in order (but Date), body.
 */
interface Raw {
  status: number;
  headers: string[];
  body: string;
}

function rawGet(url: string, headers: Record<string, string>): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () => {
        const pairs: string[] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          const name = res.rawHeaders[i] as string;
          if (name.toLowerCase() !== "date") pairs.push(`${name}: ${res.rawHeaders[i + 1]}`);
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: pairs,
          body: Buffer.concat(chunks).toString("latin1"),
        });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** The error bodies carry the time and the path; those are allowed to differ. */
function comparable(raw: Raw): Raw {
  return {
    ...raw,
    body: raw.body.replace(/"date":"[^"]*"/, '"date":""').replace(/\?via=express/, ""),
  };
}

let sim: RunningSimulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function both(
  s: RunningSimulator,
  path: string,
  headers: Record<string, string>,
  before?: () => void,
): Promise<[Raw, Raw]> {
  before?.();
  const fast = await rawGet(`${s.url}${path}`, headers);
  before?.();
  const viaExpress = await rawGet(`${s.url}${path}?via=express`, headers);
  return [comparable(fast), comparable(viaExpress)];
}

async function started(options: SimulatorOptions = {}): Promise<[RunningSimulator, string]> {
  sim = await startSimulator({ latencyMs: 5, jitterMs: 5, ...options });
  return [sim, await tokenOf(sim)];
}

describe("plain data GETs and their Express routes", () => {
  it("answer the same, for data, 404s and every request id", async () => {
    const [s, token] = await started();
    const auth = { authorization: `Bearer ${token}` };
    const check = "/processctrl/api/v1/checks/pt-1/kreditcheck/kc-1";
    const paths = [
      check,
      "/processctrl/api/v1/checks/dac-only-7/kreditcheck/kc-1",
      "/processctrl/api/v1/checks/pt-1/kreditcheck/missing-1",
      `/di/api/v1/cases/${caseIdFor("kc-1", 0)}/reports`,
      "/di/api/v1/cases/e2c8ad38-c5d3-4d5e-86f9-96ed9ec42678/reports",
      "/di/api/v1/cases/missing-case/reports",
    ];
    const requestIds = [undefined, "req-1", "\u00e9t\u00e9", "x".repeat(256)];
    for (const path of paths) {
      for (const id of requestIds) {
        const headers = id === undefined ? auth : { ...auth, "x-request-id": id };
        const [fast, viaExpress] = await both(s, path, headers);
        expect(fast).toEqual(viaExpress);
      }
    }
    expect(s.stats().statuses.kreditcheck).toEqual({ "200": 12, "404": 6, "400": 6 });
    expect(s.stats().statuses.dac).toEqual({ "200": 6, "404": 12, "400": 6 });
  });

  it("answer the same when refused or failed", async () => {
    const [s, token] = await started({ retryAfterSec: 4 });
    const check = "/processctrl/api/v1/checks/pt-1/kreditcheck/kc-1";
    const dac = `/di/api/v1/cases/${caseIdFor("c-1", 0)}/reports`;
    const auth = { authorization: `Bearer ${token}`, "x-request-id": "r" };
    for (const path of [check, dac]) {
      const endpoint: SimEndpoint = path === check ? "kreditcheck" : "dac";
      const refusals: Record<string, string>[] = [{}, { authorization: "Bearer nope" }];
      for (const headers of refusals) {
        const [fast, viaExpress] = await both(s, path, headers);
        expect(fast.status).toBe(401);
        expect(fast).toEqual(viaExpress);
      }
      for (const status of [503, 429, 500, 502, 404]) {
        const [fast, viaExpress] = await both(s, path, auth, () =>
          s.failNext(
            endpoint,
            1,
            status,
            status === 429 || status === 503 ? { retryAfterSec: 2 } : {},
          ),
        );
        expect(fast.status).toBe(status);
        expect(fast).toEqual(viaExpress);
      }
      s.setFaults({ forbidden: true });
      const [fast, viaExpress] = await both(s, path, auth);
      expect(fast.status).toBe(403);
      expect(fast).toEqual(viaExpress);
      s.setFaults({ forbidden: false });
    }
  });

  it("log the same way, with the latency counted from arrival", async () => {
    const [s, token] = await started({ latencyMs: 60, jitterMs: 0 });
    const auth = { authorization: `Bearer ${token}` };
    s.failNext("dac", 1, 429, { retryAfterSec: 3 });
    const dac = `/di/api/v1/cases/${caseIdFor("c-1", 0)}/reports`;
    await both(s, dac, auth);
    const [limited, viaExpress] = s.requests().filter((entry) => entry.endpoint === "dac");
    expect(limited).toMatchObject({ status: 429, retryAfterSec: 3 });
    expect(viaExpress).toMatchObject({ status: 200 });
    expect(viaExpress?.target).toBe(`GET ${dac}?via=express`);
    for (const entry of [limited, viaExpress]) {
      expect((entry?.answeredAt ?? 0) - (entry?.receivedAt ?? 0)).toBeGreaterThanOrEqual(55);
    }
  });
});
