import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { callbackFastPath, type FastPathOptions } from "../../src/http/callback-fast-path.js";
import type { Inbox } from "../../src/inbox/inbox.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";
import { type RawResponse, rawPost } from "../support/raw-post.js";

const PATH = "/callbacks/kreditcheck";

/** TRUST_PROXY as the app hands it to the fast path: compiled by Express itself. */
const trustProxy = (value: number | string) =>
  express().set("trust proxy", value).get("trust proxy fn") as FastPathOptions["trust"];
const LEFT_TO_EXPRESS = 299;

/** Just what the fast path needs of an inbox: every callback stored as job-1. */
const storingInbox = {
  enqueue: async () => ({ id: "job-1", duplicate: false }),
} as unknown as Inbox;

describe("the callback's fast path takes only the common case, and leaves the rest to Express", () => {
  let server: Server | undefined;
  afterEach(
    () => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())),
  );

  /** The fast path on a real port; what it leaves answers LEFT_TO_EXPRESS. */
  async function serve(options: Partial<FastPathOptions> = {}): Promise<string> {
    const fastPath = callbackFastPath({
      path: PATH,
      bodyLimitBytes: 1024,
      inbox: storingInbox,
      logger: captureLogs().logger,
      clock: Date.now,
      allowedCidrs: "127.0.0.1/32",
      allowed: (address) => address === "127.0.0.1",
      redactPath: (path) => path,
      ...options,
    });
    server = createServer((req, res) => {
      if (fastPath(req, res)) return;
      res.writeHead(LEFT_TO_EXPRESS);
      res.end();
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  const body = JSON.stringify(makeCallback());

  /** A request with full control of method, path and headers (and none added). */
  function send(
    base: string,
    init: { method?: string; path?: string; headers?: Record<string, string>; body?: string },
  ): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request(
        `${base}${init.path ?? PATH}`,
        { method: init.method ?? "POST", headers: init.headers ?? {} },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(init.body);
    });
  }
  const json = { "Content-Type": "application/json", "Content-Length": String(body.length) };

  it("takes a JSON POST to the exact path, with or without a query or a UTF-8 charset", async () => {
    const base = await serve();
    expect(await send(base, { headers: json, body })).toBe(202);
    expect(await send(base, { path: `${PATH}?from=finapi`, headers: json, body })).toBe(202);
    for (const type of ["application/json; charset=utf-8", "Application/JSON;charset=UTF8"]) {
      expect(await send(base, { headers: { ...json, "Content-Type": type }, body }), type).toBe(
        202,
      );
    }
  });

  it.each([
    ["a GET", { method: "GET", headers: {} }],
    ["a PUT", { method: "PUT", headers: json }],
    ["another spelling of the path", { path: "/Callbacks/KreditCheck", headers: json }],
    ["a trailing slash", { path: `${PATH}/`, headers: json }],
    ["a longer path", { path: `${PATH}x`, headers: json }],
    ["a segment without a secret set", { path: `${PATH}/anything`, headers: json }],
    ["a +json media type", { headers: { ...json, "Content-Type": "application/vnd.x+json" } }],
    [
      "another charset",
      { headers: { ...json, "Content-Type": "application/json; charset=utf-16" } },
    ],
    [
      "a quoted charset",
      { headers: { ...json, "Content-Type": 'application/json; charset="utf-8"' } },
    ],
    ["text/plain", { headers: { ...json, "Content-Type": "text/plain" } }],
    ["no Content-Type", { headers: { "Content-Length": String(body.length) } }],
    ["a compressed body", { headers: { ...json, "Content-Encoding": "gzip" } }],
    [
      "a chunked body",
      { headers: { "Content-Type": "application/json", "Transfer-Encoding": "chunked" } },
    ],
    ["an empty body", { headers: { ...json, "Content-Length": "0" }, body: "" }],
  ])("leaves %s to Express", async (_name, init) => {
    const base = await serve();
    expect(await send(base, { body, ...init })).toBe(LEFT_TO_EXPRESS);
  });

  it("leaves a body over the limit to Express, which answers 413 without reading it", async () => {
    const base = await serve({ bodyLimitBytes: 10 });
    expect(await send(base, { headers: json, body })).toBe(LEFT_TO_EXPRESS);
  });

  it("leaves a refused address to Express, judged as req.ip is under TRUST_PROXY", async () => {
    const allowed = (address: string | undefined) => address === "203.0.113.9";
    const forwarded = { ...json, "X-Forwarded-For": "203.0.113.9" };
    expect(await send(await serve({ allowed }), { headers: forwarded, body })).toBe(
      LEFT_TO_EXPRESS,
    );
    server?.close();
    expect(
      await send(await serve({ allowed, trust: trustProxy(1) }), { headers: forwarded, body }),
    ).toBe(202);
    server?.close();
    const trusted = await serve({ allowed, trust: trustProxy("127.0.0.1/8, ::1") });
    expect(await send(trusted, { headers: forwarded, body })).toBe(202);
    expect(await send(trusted, { headers: json, body })).toBe(LEFT_TO_EXPRESS);
  });

  it("takes the right secret, in the path or as the Basic password, and leaves anything else", async () => {
    const base = await serve({ callbackSecret: "s3cr3t" });
    const basic = (password: string) =>
      `Basic ${Buffer.from(`finapi:${password}`).toString("base64")}`;
    expect(await send(base, { path: `${PATH}/s3cr3t`, headers: json, body })).toBe(202);
    expect(await send(base, { headers: { ...json, Authorization: basic("s3cr3t") }, body })).toBe(
      202,
    );
    expect(await send(base, { headers: json, body })).toBe(LEFT_TO_EXPRESS);
    expect(await send(base, { path: `${PATH}/wrong`, headers: json, body })).toBe(LEFT_TO_EXPRESS);
    expect(await send(base, { headers: { ...json, Authorization: basic("wrong") }, body })).toBe(
      LEFT_TO_EXPRESS,
    );
    // Express decodes a %-escaped segment; the fast path does not guess at it.
    expect(await send(base, { path: `${PATH}/s3cr%33t`, headers: json, body })).toBe(
      LEFT_TO_EXPRESS,
    );
  });
});

describe("a callback gets the same answer and log line by either path", () => {
  let harness: Harness;
  beforeAll(async () => {
    harness = await startHarness({ service: { worker: false } });
  });
  afterAll(async () => harness.close());

  /** By the fast path (plain JSON) and by Express (a +json media type it also takes). */
  async function bothWays(body: (way: string) => string) {
    const url = `${harness.service.url}${PATH}`;
    const fast = await rawPost(url, body("fast"));
    const viaExpress = await rawPost(url, body("express"), {
      headers: { "Content-Type": "application/vnd.finapi+json" },
    });
    return { fast, viaExpress };
  }

  /** Headers that must match: all but those that differ between any two answers. */
  const comparable = (response: RawResponse) => {
    const { date: _date, "content-length": _length, ...rest } = response.headers;
    return rest;
  };

  it("202 for a valid callback", async () => {
    const { fast, viaExpress } = await bothWays((way) =>
      JSON.stringify(makeCallback({ kreditCheckId: `same-${way}` })),
    );
    expect(fast.status).toBe(202);
    expect(viaExpress.status).toBe(202);
    expect(comparable(fast)).toEqual(comparable(viaExpress));
    expect(Object.keys(JSON.parse(fast.body))).toEqual(Object.keys(JSON.parse(viaExpress.body)));
    for (const answer of [fast, viaExpress]) {
      const { id } = JSON.parse(answer.body) as { id: string };
      expect((await harness.service.inbox.get(id))?.state).toBe("pending");
    }
  });

  it.each([
    ["broken JSON", () => '{"processToken": "a",', 400, "invalid_json"],
    [
      "a repeated key",
      () => '{"processToken":"a","kreditCheckId":"b","status":"SUCCESSFUL","status":"FAILED"}',
      400,
      "duplicate_key",
    ],
    [
      "an invalid callback",
      () => JSON.stringify(makeCallback({ processToken: "../x" })),
      400,
      "invalid_callback",
    ],
    ["a JSON array", () => "[1, 2]", 400, "invalid_callback"],
    [
      "a number JavaScript cannot hold",
      () => '{"processToken":"a","kreditCheckId":"b","status":"S","reportId":12345678901234567891}',
      400,
      "invalid_callback",
    ],
    ["a __proto__ field", () => '{"__proto__": {"x": 1}}', 400, "invalid_callback"],
    // body-parser reads an empty body as {}; the BOM is dropped first.
    ["a lone byte-order mark", () => "\uFEFF", 400, "invalid_callback"],
    ["only whitespace", () => "  \n", 400, "invalid_json"],
  ])("the same refusal for %s, and the same log line", async (_name, body, status, error) => {
    const before = harness.logs.lines().length;
    const { fast, viaExpress } = await bothWays(body);
    expect(fast.status).toBe(status);
    expect(JSON.parse(fast.body)).toMatchObject({ error });
    expect(fast.body).toBe(viaExpress.body);
    expect(comparable(fast)).toEqual(comparable(viaExpress));
    const [fastLine, expressLine] = harness.logs
      .lines()
      .slice(before)
      .map(({ time: _time, ...line }) => line);
    expect(fastLine).toBeDefined();
    expect(fastLine).toEqual(expressLine);
  });
});
