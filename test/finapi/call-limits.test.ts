import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ReceiverError } from "../../src/errors.js";
import { AuthorizedClient } from "../../src/finapi/authorized-client.js";
import { type CallLimits, finapiCallLimits } from "../../src/finapi/call-limits.js";
import { ProcessCtrlClient } from "../../src/finapi/processctrl.js";
import { ClientCredentialsTokenProvider } from "../../src/finapi/token.js";
import { createTransport, type Transport } from "../../src/http-transport.js";
import {
  assembleBundle,
  type CheckRequest,
  type PipelineDeps,
} from "../../src/pipeline/process-check.js";
import { captureLogs } from "../support/log-capture.js";

/** Limits small enough for a test; the service's are MiB (see call-limits.ts). */
const SMALL: CallLimits = { maxJsonBytes: 1000, maxDocumentBytes: 4000, deadlineMs: 1000 };

/** A body of `bytes` that is valid JSON (and a valid token answer): only its size is wrong. */
function paddedJson(bytes: number): string {
  const start = '{"access_token":"token-a","expires_in":3600,"status":"SUCCESSFUL","pad":"';
  return `${start}${"x".repeat(bytes - start.length - 2)}"}`;
}

/**
 * A finAPI stand-in on loopback: `/json/<bytes>` and `/doc/<bytes>` answer 200 with a body of
 * that size; `/trickle` answers 200, then a byte every 100 ms for 10 s (never idle for
 * FINAPI_TIMEOUT_MS, far past any deadline).
 */
let origin: string;
let requests = 0;
const sockets = new Set<Socket>();
const server = createServer((req, res: ServerResponse) => {
  requests += 1;
  req.resume();
  const [, kind, size] = (req.url ?? "").split("/");
  if (kind === "trickle") {
    res.writeHead(200, { "content-type": "application/json" });
    res.write('{"access_token":"token-a","status":"SUCCESSFUL"');
    const timer = setInterval(() => res.write(" "), 100);
    setTimeout(() => {
      clearInterval(timer);
      res.end("}");
    }, 10_000);
    res.on("close", () => clearInterval(timer));
    return;
  }
  const bytes = Number(size);
  if (kind === "doc") {
    res.writeHead(200, { "content-type": "application/pdf" });
    res.end(Buffer.alloc(bytes, 0x25));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(paddedJson(bytes));
});
server.on("connection", (socket) => {
  sockets.add(socket);
  socket.on("close", () => sockets.delete(socket));
});

let transport: Transport;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // An idle timeout the trickle never trips.
  transport = createTransport({ timeoutMs: 500 });
});
afterAll(async () => {
  await transport.close();
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function client(retries = 2): AuthorizedClient {
  return new AuthorizedClient({
    http: transport.http,
    limits: SMALL,
    tokens: { getToken: async () => "token", invalidate: () => undefined },
    retries,
  });
}

function tokensAt(path: string): ClientCredentialsTokenProvider {
  return new ClientCredentialsTokenProvider({
    http: transport.http,
    limits: SMALL,
    tokenUrl: origin + path,
    clientId: "id",
    clientSecret: "secret",
    refreshMarginMs: 60_000,
    logger: captureLogs().logger,
  });
}

const ctx = { logger: captureLogs().logger };
const failure = (promise: Promise<unknown>): Promise<ReceiverError> =>
  promise.then(
    () => {
      throw new Error("answered");
    },
    (thrown: unknown) => thrown as ReceiverError,
  );

describe("the size limit of a finAPI answer", () => {
  it("gives up on a JSON answer over the limit at once, as a permanent finapi_invalid_response naming the limit and the fix", async () => {
    requests = 0;
    const error = await failure(
      client().getJson("kreditcheck", `${origin}/json/5000`, ctx, z.unknown()),
    );
    expect(error).toMatchObject({ code: "finapi_invalid_response", retryable: false });
    expect(error.message).toContain("larger than 1000 bytes");
    expect(error.fix).toMatch(/FINAPI_PROCESSCTRL_URL.*MAX_JSON_BYTES/);
    // Permanent: not asked again by the quick retries.
    expect(requests).toBe(1);
  });

  it("reads a document under the document limit even when it is over the JSON one, and gives up on one over it", async () => {
    const processCtrl = (path: string) => new ProcessCtrlClient(client(), `${origin}${path}`, "");
    const served = await processCtrl("/doc/3000").getDocument("pt", "kc", "account_pdf", ctx);
    expect(served.data).toHaveLength(3000);
    const error = await failure(processCtrl("/doc/5000").getDocument("pt", "kc", "dac_zip", ctx));
    expect(error).toMatchObject({ code: "finapi_invalid_response", retryable: false });
    expect(error.message).toContain("larger than 4000 bytes");
    expect(error.fix).toMatch(/remove it from FETCH_DOCUMENTS/);
  });

  it("gives up on a token answer over the limit, as a permanent finapi_invalid_response", async () => {
    const error = await failure(tokensAt("/json/5000").getToken());
    expect(error).toMatchObject({ code: "finapi_invalid_response", retryable: false });
    expect(error.fix).toContain("FINAPI_TOKEN_URL");
  });
});

describe("the deadline of a finAPI call (headers and whole body)", () => {
  it("cuts off a body that trickles in past the deadline, as a retryable finapi_timeout that says which bound it was", async () => {
    const started = performance.now();
    const error = await failure(
      client(0).getJson("kreditcheck", `${origin}/trickle`, ctx, z.unknown()),
    );
    expect(error).toMatchObject({ code: "finapi_timeout", retryable: true });
    expect(error.message).toContain("had not come after 1000 ms (2 × FINAPI_TIMEOUT_MS)");
    // The trickle lasts 10 s; undici's and the deadline's timers are coarse.
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it("cuts off a token answer that trickles in past the deadline, as a retryable finapi_timeout", async () => {
    const started = performance.now();
    const error = await failure(tokensAt("/trickle").getToken());
    expect(error).toMatchObject({ code: "finapi_timeout", retryable: true });
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it("is twice FINAPI_TIMEOUT_MS, with the documented size limits", () => {
    expect(finapiCallLimits(15_000)).toEqual({
      maxJsonBytes: 32 * 1024 * 1024,
      maxDocumentBytes: 64 * 1024 * 1024,
      deadlineMs: 30_000,
    });
    // Not past Node's longest timer, which would fire at once and cut every call.
    expect(finapiCallLimits(2_000_000_000).deadlineMs).toBe(2 ** 31 - 1);
  });
});

describe("a document larger than the receiver reads", () => {
  it("is a problem in the bundle, and the check is delivered without it, as the error's fix says", async () => {
    // A small result, and an account PDF over the (test-sized) document limit.
    const finapi = createServer((req, res) => {
      req.resume();
      if (req.url?.endsWith("/pdf")) {
        res.writeHead(200, { "content-type": "application/pdf" });
        res.end(Buffer.alloc(5000, 0x25));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "COMPLETED", bankConnections: [] }));
    });
    await new Promise<void>((resolve) => finapi.listen(0, "127.0.0.1", resolve));
    try {
      const base = `http://127.0.0.1:${(finapi.address() as AddressInfo).port}`;
      const processctrl = new ProcessCtrlClient(client(0), base, "");
      const deps = {
        kreditChecks: processctrl,
        documentSource: processctrl,
        documents: ["account_pdf"],
        notFoundGraceMs: 600_000,
        dacConcurrency: 1,
        clock: Date.now,
      } as unknown as PipelineDeps;
      const check = {
        callback: { processToken: "pt", kreditCheckId: "kc", status: "SUCCESSFUL" },
        receivedAt: new Date(),
      } as unknown as CheckRequest;
      const ctx = { logger: captureLogs().logger, signal: new AbortController().signal };
      const bundle = await assembleBundle(deps, check, ctx);
      expect(bundle.documents).toEqual([]);
      expect(bundle.problems).toEqual([
        expect.objectContaining({
          code: "finapi_invalid_response",
          document: "account_pdf",
          fix: expect.stringContaining("the bundle is delivered without account_pdf"),
        }),
      ]);
    } finally {
      await new Promise((resolve) => finapi.close(resolve));
    }
  });
});
