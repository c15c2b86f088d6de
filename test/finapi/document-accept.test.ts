import { afterEach, describe, expect, it } from "vitest";
import { AuthorizedClient } from "../../src/finapi/authorized-client.js";
import { finapiCallLimits } from "../../src/finapi/call-limits.js";
import { ProcessCtrlClient } from "../../src/finapi/processctrl.js";
import { createTransport } from "../../src/http-transport.js";
import { answeringInTurn } from "../support/answering-server.js";
import { captureLogs } from "../support/log-capture.js";

describe("the Accept header of finAPI calls", () => {
  let server: Awaited<ReturnType<typeof answeringInTurn>> | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it("asks for a document's own type (a server that honours Accept serves it), and for JSON otherwise", async () => {
    server = await answeringInTurn([
      { status: 200, body: "{}" },
      { status: 200, headers: { "content-type": "application/pdf" }, body: "%PDF-1.4" },
      { status: 200, headers: { "content-type": "application/zip" }, body: "PK" },
    ]);
    const client = new AuthorizedClient({
      http: createTransport({ timeoutMs: 2000 }).http,
      limits: finapiCallLimits(2000),
      tokens: { getToken: async () => "token", invalidate: () => undefined },
      retries: 0,
    });
    const processCtrl = new ProcessCtrlClient(
      client,
      `${server.origin}/api/v1`,
      "/checks/{processToken}/kreditcheck/{kreditCheckId}",
    );
    const ctx = { logger: captureLogs().logger };
    await processCtrl.getKreditCheck("pt", "kc", ctx);
    await processCtrl.getDocument("pt", "kc", "account_pdf", ctx);
    await processCtrl.getDocument("pt", "kc", "dac_zip", ctx);
    expect(server.requests.map(({ url, headers }) => [url, headers.accept])).toEqual([
      ["/api/v1/checks/pt/kreditcheck/kc", "application/json"],
      ["/api/v1/checks/pt/kreditcheck/kc/analysis/account/pdf", "application/pdf, */*;q=0.1"],
      ["/api/v1/checks/pt/kreditcheck/kc/analysis/dacForLoan/zip", "application/zip, */*;q=0.1"],
    ]);
  });
});
