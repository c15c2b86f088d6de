import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { finapiCallLimits } from "../src/finapi/call-limits.js";
import { ClientCredentialsTokenProvider } from "../src/finapi/token.js";
import { createTransport, isTimeout, proxyOf, type Transport } from "../src/http-transport.js";
import type { EgressProxies } from "../src/undici-adapter.js";
import { captureLogs } from "./support/log-capture.js";

/**
 * A wedged egress proxy on loopback: it takes the TCP connection and reads what comes, then
 * either never answers the CONNECT, or answers 200 and lets nothing through the tunnel.
 */
async function wedgedProxy(mode: "no CONNECT answer" | "silent tunnel") {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.once("data", () => {
      if (mode === "silent tunnel") socket.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxies: EgressProxies = {
    http: undefined,
    https: {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      variable: "HTTPS_PROXY",
    },
    all: undefined,
    noProxy: undefined,
  };
  return {
    proxies,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** How a promise ended, and after how long; a guard ends the wait long before undici's 300 s. */
async function outcome(promise: Promise<unknown>, guardMs = 8000) {
  const started = performance.now();
  let guard: NodeJS.Timeout | undefined;
  const error = await Promise.race([
    promise.then(
      () => new Error("answered"),
      (thrown: unknown) => thrown,
    ),
    new Promise((resolve) => {
      guard = setTimeout(() => resolve(new Error(`still waiting after ${guardMs} ms`)), guardMs);
    }),
  ]);
  clearTimeout(guard);
  return { error, tookMs: performance.now() - started };
}

describe("FINAPI_TIMEOUT_MS through a wedged egress proxy", () => {
  let proxy: Awaited<ReturnType<typeof wedgedProxy>> | undefined;
  let transport: Transport | undefined;
  afterEach(async () => {
    await transport?.close();
    await proxy?.close();
  });

  it("gives up on a proxy that never answers CONNECT within about the timeout (not undici's 300 s), as a retryable finapi_timeout naming the proxy", async () => {
    proxy = await wedgedProxy("no CONNECT answer");
    transport = createTransport({ timeoutMs: 500, proxies: proxy.proxies });
    const tokens = new ClientCredentialsTokenProvider({
      http: transport.http,
      limits: finapiCallLimits(500),
      tokenUrl: "https://sandbox.finapi.invalid/api/v2/oauth/token",
      clientId: "id",
      clientSecret: "secret",
      refreshMarginMs: 60_000,
      logger: captureLogs().logger,
    });
    const { error, tookMs } = await outcome(tokens.getToken());
    expect(error).toMatchObject({ code: "finapi_timeout", retryable: true });
    expect((error as Error).message).toContain("through the proxy in HTTPS_PROXY");
    // undici checks its timeouts on a coarse clock (about every half second).
    expect(tookMs).toBeLessThan(3000);
  });

  it("gives up on a tunnel through which the TLS handshake never comes within about the timeout (not undici's 10 s)", async () => {
    proxy = await wedgedProxy("silent tunnel");
    transport = createTransport({ timeoutMs: 500, proxies: proxy.proxies });
    const { error, tookMs } = await outcome(
      transport.http.get("https://sandbox.finapi.invalid/api/v1/x"),
    );
    expect(isTimeout(error)).toBe(true);
    expect(proxyOf(error)?.variable).toBe("HTTPS_PROXY");
    expect(tookMs).toBeLessThan(3000);
  });
});
