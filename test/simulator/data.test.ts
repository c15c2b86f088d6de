import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  caseIdFor,
  DAC_REPORT_TYPES,
  DEFAULT_SHAPE,
  dacReportFor,
  formatFinapiDate,
  kreditCheckFor,
} from "../../src/simulator/data.js";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import { authed, caseUrl, checkUrl, type ErrorBody, tokenOf } from "./helpers.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const FINAPI_DATE = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$/;

interface Account {
  accountId: string;
  caseId?: string;
  resultAccount?: string;
}
interface Check {
  status?: string;
  overallVerdict?: string;
  bankConnections: { bankConnectionId: string; accounts: Account[] }[];
}

function accountsOf(check: Record<string, unknown>): Account[] {
  return (check as unknown as Check).bankConnections.flatMap((c) => c.accounts);
}

describe("kreditCheckFor", () => {
  it("is deterministic and depends on the ids", () => {
    const a = kreditCheckFor("pt-1", "kc-1");
    expect(kreditCheckFor("pt-1", "kc-1")).toEqual(a);
    expect(kreditCheckFor("pt-1", "kc-2")).not.toEqual(a);
  });

  it("has the seed's fields", () => {
    const check = kreditCheckFor("pt-1", "kc-1");
    expect(check).toMatchObject({ status: "SUCCESSFUL" });
    expect(typeof check.rateAmount).toBe("number");
    expect(typeof check.rateInsteadRent).toBe("boolean");
    expect(check.clientReference).toMatch(/^CU\d{10}$/);
    expect(["GREEN", "YELLOW", "RED"]).toContain(check.overallVerdict);
    for (const account of accountsOf(check)) {
      expect(["GREEN", "YELLOW", "RED"]).toContain(account.resultAccount);
      expect(account.accountId).toMatch(/^\d+$/);
    }
  });

  it("default shape: 2 connections, 3 distinct UUID caseIds, the last account without the key", () => {
    const check = kreditCheckFor("pt-1", "kc-1") as unknown as Check;
    expect(check.bankConnections).toHaveLength(2);
    expect(check.bankConnections.map((c) => c.accounts.length)).toEqual([2, 2]);
    const caseIds = check.bankConnections.flatMap((c) => c.accounts.map((a) => a.caseId));
    expect(caseIds.slice(0, 3).every((id) => id !== undefined && UUID.test(id))).toBe(true);
    expect(new Set(caseIds.slice(0, 3)).size).toBe(3);
    const last = check.bankConnections[1]?.accounts[1];
    expect(last).toBeDefined();
    expect(Object.hasOwn(last ?? {}, "caseId")).toBe(false);
  });

  it("follows a configured shape", () => {
    const shape = { connections: 3, accountsPerConnection: 3, accountsWithoutCaseId: 2 };
    const accounts = accountsOf(kreditCheckFor("pt-1", "kc-1", shape));
    expect(accounts).toHaveLength(9);
    expect(accounts.filter((a) => a.caseId !== undefined)).toHaveLength(7);
    expect(accounts.slice(-2).every((a) => !("caseId" in a))).toBe(true);
    // The same account index keeps its caseId whatever the shape.
    expect(accounts[0]?.caseId).toBe(accountsOf(kreditCheckFor("pt-1", "kc-1"))[0]?.caseId);
  });

  it("gives only account data for a DAC-only licence", () => {
    const check = kreditCheckFor("dac-only-42", "kc-1", DEFAULT_SHAPE);
    expect(Object.keys(check)).toEqual(["bankConnections"]);
    for (const account of accountsOf(check)) {
      expect(Object.keys(account).every((k) => k === "accountId" || k === "caseId")).toBe(true);
    }
    expect(accountsOf(check).filter((a) => a.caseId)).toHaveLength(3);
  });
});

describe("dacReportFor", () => {
  it("is deterministic, keyed by report name, with finAPI's fields", () => {
    const report = dacReportFor("case-1");
    expect(dacReportFor("case-1")).toEqual(report);
    expect(dacReportFor("case-2")).not.toEqual(report);
    expect(report.caseId).toBe("case-1");
    expect(Array.isArray(report.reports)).toBe(false);
    expect(Object.keys(report.reports).sort()).toEqual(Object.keys(DAC_REPORT_TYPES).sort());
    expect(report.reports).toHaveProperty("deptCollection");
    for (const [name, type] of Object.entries(DAC_REPORT_TYPES)) {
      const r = report.reports[name] as Record<string, unknown>;
      expect(r.id).toMatch(UUID);
      expect(r.caseId).toBe("case-1");
      expect(r.type).toBe(type);
      for (const key of ["creationDate", "startDate", "endDate"])
        expect(r[key]).toMatch(FINAPI_DATE);
    }
    expect(report.reports.chargebacks).toMatchObject({
      type: "CHARGEBACKS",
      countIncomeTransactions: expect.any(Number),
      countSpendingTransactions: expect.any(Number),
      totalIncome: expect.any(Number),
    });
  });
});

describe("generated data stays the same", () => {
  const digest = (text: string) => createHash("sha256").update(text).digest("hex").slice(0, 16);

  // Recorded from the implementation before the simulator's CPU work (commit 9f29a3e):
  // clients and their tests may have pinned ids and values, so these must not move. The
  // caseIds moved once, on purpose: their last 8 hex digits became a tag the DAC route
  // checks, so a made-up caseId answers 404 (README, "Trying failures against the simulator").
  it("gives the same ids and values as before, byte for byte", () => {
    expect(caseIdFor("kc-1", 0)).toBe("e2c8ad38-c5d3-4d5e-86f9-96edcc31b148");
    expect(digest(JSON.stringify(kreditCheckFor("pt-1", "kc-1")))).toBe("57d60b9f8d86ec0e");
    expect(digest(JSON.stringify(dacReportFor("case-1")))).toBe("c934a2cc359973a2");
    const shape = { connections: 3, accountsPerConnection: 3, accountsWithoutCaseId: 2 };
    let all = "";
    for (let i = 0; i < 200; i++) {
      all += JSON.stringify(kreditCheckFor(`pt-${i}`, `kc-${i}`));
      all += JSON.stringify(kreditCheckFor(`dac-only-${i}`, `kc-${i}`));
      all += JSON.stringify(kreditCheckFor(`pt-${i}`, `kc-${i}`, shape));
      all += JSON.stringify(dacReportFor(caseIdFor(`kc-${i}`, i % 3)));
    }
    expect(digest(all)).toBe("0a3b5425a6be9fd8");
  });

  it("formats dates as toISOString would, without its T and Z", () => {
    const viaIso = (ms: number) => {
      const iso = new Date(ms).toISOString();
      return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
    };
    expect(formatFinapiDate(Date.UTC(2025, 3, 8, 16, 26, 35, 688))).toBe("2025-04-08 16:26:35.688");
    const edges = [0, 1, 999, 59_999, 86_399_999, 86_400_000, 253_402_300_799_999, -1, 1.5];
    let seed = 1;
    const random = () => {
      seed = (Math.imul(seed, 48_271) % 2_147_483_647) >>> 0;
      return seed / 2_147_483_647;
    };
    const samples = Array.from({ length: 5000 }, () => Math.floor(random() * 253_402_300_800_000));
    for (const ms of [...edges, ...samples]) expect(formatFinapiDate(ms)).toBe(viaIso(ms));
  });
});

describe("data endpoints over HTTP", () => {
  let sim: RunningSimulator;
  let token: string;
  beforeAll(async () => {
    sim = await startSimulator();
    token = await tokenOf(sim);
  });
  afterAll(() => sim.close());

  it("serves the KreditCheck result and the DAC reports of each caseId, and echoes X-Request-Id", async () => {
    const res = await fetch(
      checkUrl(sim, "pt-9", "kc-9"),
      authed(token, { "x-request-id": "req-abc" }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("req-abc");
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    const check = (await res.json()) as Record<string, unknown>;
    expect(check).toEqual(kreditCheckFor("pt-9", "kc-9"));

    const caseIds = accountsOf(check).flatMap((a) => (a.caseId ? [a.caseId] : []));
    expect(caseIds).toHaveLength(3);
    for (const caseId of caseIds) {
      const dac = await fetch(caseUrl(sim, caseId), authed(token));
      expect(dac.status).toBe(200);
      expect(await dac.json()).toEqual(dacReportFor(caseId));
    }
  });

  it("answers 404 for a caseId it did not issue: an accountId, a changed digit, any UUID", async () => {
    const check = (await (
      await fetch(checkUrl(sim, "pt-3", "kc-3"), authed(token))
    ).json()) as Record<string, unknown>;
    const accounts = accountsOf(check);
    const issued = accounts.flatMap((a) => (a.caseId ? [a.caseId] : []))[0] ?? "";
    expect((await fetch(caseUrl(sim, issued), authed(token))).status).toBe(200);
    const lastDigit = issued.at(-1) === "0" ? "1" : "0";
    const madeUp = [
      String(accounts[0]?.accountId),
      `${issued.slice(0, -1)}${lastDigit}`,
      issued.toUpperCase(),
      "e2c8ad38-c5d3-4d5e-86f9-96ed9ec42678",
    ];
    for (const caseId of madeUp) {
      const dac = await fetch(caseUrl(sim, caseId), authed(token));
      expect(dac.status, caseId).toBe(404);
      expect(((await dac.json()) as ErrorBody).errors[0]?.message).toBe("Case not found");
    }
  });

  it("answers 404 ENTITY_NOT_FOUND for missing- ids", async () => {
    const check = await fetch(checkUrl(sim, "pt-1", "missing-1"), authed(token));
    expect(check.status).toBe(404);
    expect(((await check.json()) as ErrorBody).errors[0]).toEqual({
      message: "KreditCheck not found",
      code: "ENTITY_NOT_FOUND",
      type: "BUSINESS",
    });
    const pdf = await fetch(
      `${checkUrl(sim, "pt-1", "missing-1")}/analysis/account/pdf`,
      authed(token),
    );
    expect(pdf.status).toBe(404);
    const dac = await fetch(caseUrl(sim, "missing-case"), authed(token));
    expect(dac.status).toBe(404);
    expect(((await dac.json()) as ErrorBody).errors[0]?.code).toBe("ENTITY_NOT_FOUND");
  });

  it("uses the account shape set at run time", async () => {
    sim.setFaults({
      accounts: { connections: 1, accountsPerConnection: 1, accountsWithoutCaseId: 0 },
    });
    try {
      const check = (await (await fetch(checkUrl(sim), authed(token))).json()) as Check;
      expect(check.bankConnections).toHaveLength(1);
      expect(check.bankConnections[0]?.accounts).toHaveLength(1);
      expect(check.bankConnections[0]?.accounts[0]?.caseId).toMatch(UUID);
    } finally {
      sim.reset();
    }
  });
});
