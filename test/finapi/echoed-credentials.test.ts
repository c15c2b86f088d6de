import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ReceiverError } from "../../src/errors.js";
import { AuthorizedClient } from "../../src/finapi/authorized-client.js";
import { finapiCallLimits } from "../../src/finapi/call-limits.js";
import { ClientCredentialsTokenProvider } from "../../src/finapi/token.js";
import { createTransport } from "../../src/http-transport.js";
import { answeringInTurn } from "../support/answering-server.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";

/** One that URL-encoding changes (+ / = space ä), so its encoded form differs from it. */
const SECRET = "Top+Secret/Value=123 äöü";

/**
 * An endpoint that echoes the request in a 400 (a gateway's error page, a debug endpoint
 * behind a wrong URL): the form body with the client secret, the Authorization header.
 */
async function echoing(): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => {
      body += chunk;
    });
    req.on("end", () => {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(`Bad request: ${body} (Authorization: ${req.headers.authorization ?? "none"})`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const forms = [
  SECRET,
  encodeURIComponent(SECRET),
  new URLSearchParams({ s: SECRET }).toString().slice(2),
];

describe("an endpoint that echoes the request into its answer", () => {
  let echo: Awaited<ReturnType<typeof echoing>> | undefined;
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    await echo?.close();
    harness = undefined;
    echo = undefined;
  });

  it("puts the client secret neither into a log line nor into the job's last error", async () => {
    echo = await echoing();
    const tokenUrl = `${echo.url}/api/v2/oauth/token`;
    harness = await startHarness({
      env: { FINAPI_TOKEN_URL: tokenUrl, FINAPI_CLIENT_SECRET: SECRET },
    });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    // The echo is still shown, so what answered can be seen, only without the secret.
    expect(job.lastError).toContain("Bad request: grant_type=client_credentials");
    expect(job.lastError).toContain("client_secret=[redacted]");
    const logs = harness.logs.text();
    expect(logs).toContain("client_secret=[redacted]");
    for (const form of forms) {
      expect(job.lastError, form).not.toContain(form);
      expect(logs, form).not.toContain(form);
    }
  });

  it("puts an access token named in a failed token answer into no error", async () => {
    const server = await answeringInTurn([
      { status: 503, body: '{"error":"maintenance","access_token":"leaked-token-value"}' },
    ]);
    try {
      const logs = captureLogs();
      const tokens = new ClientCredentialsTokenProvider({
        http: createTransport({ timeoutMs: 2000 }).http,
        limits: finapiCallLimits(2000),
        tokenUrl: `${server.origin}/api/v2/oauth/token`,
        clientId: "id",
        clientSecret: SECRET,
        refreshMarginMs: 60_000,
        logger: logs.logger,
      });
      const error = (await tokens.getToken().catch((thrown: unknown) => thrown)) as ReceiverError;
      expect(error.describe()).toContain('"access_token":"[redacted]"');
      expect(error.describe()).not.toContain("leaked-token-value");
      expect(logs.text()).not.toContain("leaked-token-value");
    } finally {
      await server.close();
    }
  });

  it("puts the access token of a data call into no error", async () => {
    echo = await echoing();
    const client = new AuthorizedClient({
      http: createTransport({ timeoutMs: 2000 }).http,
      limits: finapiCallLimits(2000),
      tokens: { getToken: async () => "s3cret-access-token", invalidate: () => undefined },
      retries: 0,
    });
    const logs = captureLogs();
    const error = (await client
      .getJson("kreditcheck", `${echo.url}/x`, { logger: logs.logger }, z.unknown())
      .catch((thrown: unknown) => thrown)) as ReceiverError;
    expect(error.code).toBe("finapi_rejected");
    expect(error.describe()).toContain("Authorization: Bearer [redacted]");
    expect(error.describe()).not.toContain("s3cret-access-token");
    expect(JSON.stringify(error.details)).not.toContain("s3cret-access-token");
  });
});
