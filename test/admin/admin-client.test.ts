import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  ANSWER_TIMEOUT_MS,
  adminClient,
  answerTimeoutMs,
  CHECK_FETCH_ANSWER_TIMEOUT_MS,
  CliError,
} from "../../src/admin/admin-client.js";

/** The CLI's client against `url`, waiting `timeoutMs` for an answer. */
const clientOf = (url: string, timeoutMs: number) =>
  adminClient({
    adminUrl: url,
    token: undefined,
    source: "ADMIN_URL",
    tokenFrom: "ADMIN_TOKEN",
    timeoutMs,
  });

describe("the CLI's admin API client", () => {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  afterEach(async () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  /** Listens on loopback; its URL. */
  async function listen(listening: Server): Promise<string> {
    server = listening;
    listening.on("connection", (socket: Socket) => sockets.add(socket));
    await new Promise<void>((resolve) => listening.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(listening.address() as AddressInfo).port}`;
  }

  it("gives up on a service that accepts the connection and never answers, naming the wait and the URL", async () => {
    // A stuck service: the request is read, nothing ever comes back.
    const url = await listen(createServer((socket) => socket.on("data", () => {})));
    const started = Date.now();
    const error = await clientOf(url, 300)("GET", "/jobs?state=dead").catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).status).toBeUndefined();
    expect((error as CliError).message).toBe(
      `no answer within 0.3 s from the admin API: GET ${url}/admin/jobs?state=dead; is the service stuck or overloaded, and is ADMIN_URL right?`,
    );
  }, 5000);

  it("gives up on an answer whose body never ends, as on one that never starts", async () => {
    const url = await listen(
      createHttpServer((_req, res) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.write('{"jobs": [');
      }),
    );
    const error = await clientOf(url, 300)("POST", "/checks/fetch", { processToken: "x" }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).message).toMatch(
      new RegExp(`^no answer within 0\\.3 s from the admin API: POST ${url}/admin/checks/fetch;`),
    );
  }, 5000);

  it("calls a token no HTTP header can carry an invalid token, without connecting, not the service unreachable", async () => {
    let connections = 0;
    const url = await listen(createServer((socket) => socket.destroy()));
    server?.on("connection", () => {
      connections += 1;
    });
    for (const [token, tokenFrom, named] of [
      ["geheim-€-token", "ADMIN_TOKEN", "in ADMIN_TOKEN"],
      ["two\nlines-token", "--token", "given with --token"],
    ] as const) {
      const call = adminClient({
        adminUrl: url,
        token,
        source: "ADMIN_URL",
        tokenFrom,
        timeoutMs: 2000,
      });
      const error = await call("GET", "/jobs").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CliError);
      // Exactly this: the token itself is not repeated.
      expect((error as CliError).message).toBe(
        `the admin token (${named}) cannot be sent in an HTTP header: it has a character beyond ASCII or a control character; the service takes only letters, digits and - . _ ~ + / =`,
      );
    }
    expect(connections).toBe(0);
  });

  it("waits 90 s for fetch (the service's own fetch may take 60 s), 30 s for the rest", () => {
    expect(CHECK_FETCH_ANSWER_TIMEOUT_MS).toBe(90_000);
    expect(ANSWER_TIMEOUT_MS).toBe(30_000);
    expect(answerTimeoutMs("fetch")).toBe(90_000);
    for (const command of ["jobs", "job", "retry", "replay"]) {
      expect(answerTimeoutMs(command)).toBe(30_000);
    }
  });
});
