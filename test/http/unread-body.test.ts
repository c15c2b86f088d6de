import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";

const SECRET = "s3cr3t-s3cr3t";
/** Only 127.0.0.1 may call back: a socket bound to 127.0.0.2 is a refused sender. */
const REFUSED = "127.0.0.2";
/** How long the service may go on reading a body nobody will parse, after its answer. */
const CLOSED_WITHIN_MS = 2000;

interface Streamed {
  /** The answer's head (status line and headers), or "" if none came. */
  head: string;
  /** The answer's body, as far as it came. */
  body: string;
  /** From the answer (or the start, if none came) to the connection's close. */
  closedAfterMs: number;
  /** Whether it was still open when the test gave up on it. */
  stillOpen: boolean;
}

/**
 * Sends `head`, then a body that never ends, 64 KiB every 5 ms (paced, so that the test
 * does not eat the shared cores), framed as chunks when `chunked`. Resolves once the
 * service closes the connection, or `giveUpMs` after its answer (still open).
 */
function streamEndlessBody(
  port: number,
  head: string,
  options: { chunked?: boolean; localAddress?: string; giveUpMs?: number } = {},
): Promise<Streamed> {
  const giveUpMs = options.giveUpMs ?? CLOSED_WITHIN_MS + 1500;
  const data = Buffer.alloc(64 * 1024, 0x20);
  const piece = options.chunked
    ? Buffer.concat([Buffer.from(`${data.length.toString(16)}\r\n`), data, Buffer.from("\r\n")])
    : data;
  return new Promise((resolve) => {
    const startedAt = Date.now();
    let answeredAt: number | undefined;
    let received = "";
    let pump: NodeJS.Timeout | undefined;
    let giveUp: NodeJS.Timeout | undefined;
    const socket: Socket = connect({ port, host: "127.0.0.1", localAddress: options.localAddress });
    const finish = (stillOpen: boolean) => {
      clearInterval(pump);
      clearTimeout(giveUp);
      const split = received.indexOf("\r\n\r\n");
      resolve({
        head: split < 0 ? received : received.slice(0, split),
        body: split < 0 ? "" : received.slice(split + 4),
        closedAfterMs: Date.now() - (answeredAt ?? startedAt),
        stillOpen,
      });
      socket.destroy();
    };
    socket.on("connect", () => {
      socket.write(head);
      pump = setInterval(() => {
        if (!socket.destroyed && socket.writable) socket.write(piece);
      }, 5);
      giveUp = setTimeout(() => finish(true), giveUpMs + 10_000);
    });
    socket.setEncoding("latin1").on("data", (chunk: string) => {
      received += chunk;
      if (answeredAt === undefined) {
        answeredAt = Date.now();
        clearTimeout(giveUp);
        giveUp = setTimeout(() => finish(true), giveUpMs);
      }
    });
    // The service closes while we still send: a reset is what that looks like from here.
    socket.on("error", () => {});
    socket.on("close", () => finish(false));
  });
}

const statusOf = (head: string) => Number(head.slice(9, 12));
const closes = (head: string) => /\r\nConnection: close(\r\n|$)/i.test(head);

describe("an answer written before the body has arrived", () => {
  let harness: Harness;
  let path: string;
  beforeAll(async () => {
    // REQUEST_TIMEOUT_MS at its most: before, a refused body was read until it ran out.
    harness = await startHarness({
      service: { worker: false },
      env: { ALLOWED_CIDRS: "127.0.0.1/32", CALLBACK_SECRET: SECRET, REQUEST_TIMEOUT_MS: "10000" },
    });
    path = harness.config.http.callbackPath;
  });
  afterAll(async () => harness.close());

  const declared = (method: string, target: string, type = "application/json") =>
    `${method} ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: 1000000000000\r\n\r\n`;
  const chunked = (method: string, target: string, type = "application/json") =>
    `${method} ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nTransfer-Encoding: chunked\r\n\r\n`;

  it.each([
    ["403, 1 TB declared", () => declared("POST", `${path}/${SECRET}`), REFUSED, false, 403],
    ["403, chunked", () => chunked("POST", `${path}/${SECRET}`), REFUSED, true, 403],
    ["404, 1 TB declared", () => declared("POST", "/anything"), undefined, false, 404],
    ["405, chunked", () => chunked("PUT", `${path}/${SECRET}`), undefined, true, 405],
    ["401, 1 TB declared", () => declared("POST", `${path}/wrong`), undefined, false, 401],
    ["401, chunked", () => chunked("POST", path), undefined, true, 401],
    [
      "415, chunked",
      () => chunked("POST", `${path}/${SECRET}`, "text/plain"),
      undefined,
      true,
      415,
    ],
    [
      "415, 1 TB declared",
      () => declared("POST", `${path}/${SECRET}`, "text/plain"),
      undefined,
      false,
      415,
    ],
  ] as const)(
    "a refused body (%s) is not read: the answer closes the connection",
    async (_name, head, localAddress, isChunked, status) => {
      const before = (await harness.service.inbox.countByState()).pending;
      const streamed = await streamEndlessBody(harness.service.port, head(), {
        chunked: isChunked,
        ...(localAddress ? { localAddress } : {}),
      });
      expect(statusOf(streamed.head)).toBe(status);
      expect(closes(streamed.head), streamed.head).toBe(true);
      // Before: the service read on (and threw away) whatever came, until REQUEST_TIMEOUT_MS.
      expect(streamed.stillOpen).toBe(false);
      expect(streamed.closedAfterMs).toBeLessThan(CLOSED_WITHIN_MS);
      expect((await harness.service.inbox.countByState()).pending).toBe(before);
    },
  );

  it.each([
    ["JSON", ""],
    // Not gzip at all: body-parser stops at the first byte, then read on to the end.
    ["said to be gzip", "Content-Encoding: gzip\r\n"],
  ])(
    "a chunked body (%s) over the limit from an allowed sender gets 413 at once, and the connection closes",
    async (_name, header) => {
      const before = (await harness.service.inbox.countByState()).pending;
      const startedAt = Date.now();
      const streamed = await streamEndlessBody(
        harness.service.port,
        chunked("POST", `${path}/${SECRET}`).replace("\r\n\r\n", `\r\n${header}\r\n`),
        { chunked: true },
      );
      // Before: body-parser read on to the body's end, which never came: 408 after 10 s.
      expect(statusOf(streamed.head)).toBe(413);
      expect(closes(streamed.head), streamed.head).toBe(true);
      expect(JSON.parse(streamed.body)).toMatchObject({ error: "payload_too_large" });
      expect(Date.now() - startedAt).toBeLessThan(CLOSED_WITHIN_MS);
      expect(streamed.stillOpen).toBe(false);
      expect((await harness.service.inbox.countByState()).pending).toBe(before);
    },
  );

  it("keeps the connection open for callbacks, chunked ones and small refused ones alike", async () => {
    const socket = await openSocket(harness.service.port);
    const callback = () => JSON.stringify(makeCallback());
    const withLength = (target: string, body: string) =>
      `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    const inChunks = (target: string, body: string) => {
      const half = body.length >> 1;
      const chunk = (part: string) => `${part.length.toString(16)}\r\n${part}\r\n`;
      return `POST ${target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n${chunk(body.slice(0, half))}${chunk(body.slice(half))}0\r\n\r\n`;
    };
    const statuses: number[] = [];
    for (const request of [
      withLength(`${path}/${SECRET}`, callback()), // the fast path
      withLength(`${path}/${SECRET}`, callback()),
      inChunks(`${path}/${SECRET}`, callback()), // Express, the body read before the answer
      withLength(`${path}/wrong`, callback()), // refused before its (small) body is read
      withLength("/anything", callback()),
      inChunks(`${path}/${SECRET}`, "[1]"), // refused after its body was read
      withLength(`${path}/${SECRET}`, callback()),
    ]) {
      const answer = await socket.exchange(request);
      expect(closes(answer.head), answer.head).toBe(false);
      statuses.push(statusOf(answer.head));
    }
    expect(statuses).toEqual([202, 202, 202, 401, 404, 400, 202]);
    expect(socket.closed()).toBe(false);
    socket.destroy();
  });
});

/** One connection, one request at a time: each exchange returns the next answer. */
function openSocket(port: number): Promise<{
  exchange(request: string): Promise<{ head: string; body: string }>;
  closed(): boolean;
  destroy(): void;
}> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    let closed = false;
    let waiting: (() => void) | undefined;
    const socket = connect(port, "127.0.0.1", () =>
      resolve({
        async exchange(request) {
          socket.write(request);
          for (;;) {
            const split = buffered.indexOf("\r\n\r\n");
            if (split >= 0) {
              const head = buffered.slice(0, split);
              const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
              if (buffered.length >= split + 4 + length) {
                const body = buffered.slice(split + 4, split + 4 + length);
                buffered = buffered.slice(split + 4 + length);
                return { head, body };
              }
            }
            if (closed) throw new Error(`the connection closed; received: ${buffered}`);
            await new Promise<void>((wake) => {
              waiting = wake;
            });
          }
        },
        closed: () => closed,
        destroy: () => socket.destroy(),
      }),
    );
    socket.setEncoding("latin1").on("data", (chunk: string) => {
      buffered += chunk;
      waiting?.();
    });
    socket.on("close", () => {
      closed = true;
      waiting?.();
    });
    socket.on("error", reject);
  });
}
