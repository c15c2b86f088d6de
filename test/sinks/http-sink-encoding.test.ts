import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { HttpSink } from "../../src/sinks/http.js";
import type { Bundle } from "../../src/sinks/sink.js";
import { childEnv } from "../support/child-env.js";
import { captureLogs } from "../support/log-capture.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A bundle with what JSON writes in more than one way: non-ASCII, a lone surrogate, gaps. */
function bundle(documents: Bundle["documents"]): Bundle {
  return {
    callback: {
      processToken: "pt-1",
      kreditCheckId: "kc-encoding",
      status: "SUCCESSFUL",
      clientReference: "CU-ü",
      errorMessage: null,
    },
    kreditCheck: { holder: "Müller – 😀 \ud800 lone", amounts: [1.5, -0, 1e21], nested: { a: [] } },
    dacReports: { "case-1": { reports: { income: { total: 1234.5 } } } },
    problems: [
      { code: "finapi_not_found", message: "request id abc", caseId: "case-2", fix: "later" },
      { code: "finapi_not_found", message: "no document", document: "dac_zip" },
    ],
    receivedAt: "2026-01-01T00:00:00.000Z",
    completedAt: "2026-01-01T00:00:01.000Z",
    ...(documents ? { documents } : {}),
  } as unknown as Bundle;
}

async function posted(sent: Bundle) {
  const receiver = await startWebhookReceiver();
  const sink = new HttpSink({
    url: receiver.url,
    secret: `whsec_${Buffer.from("a shared secret of 32 bytes.....").toString("base64")}`,
    timeoutMs: 10_000,
    maxConnections: 2,
    clock: () => 1_767_225_600_000,
  });
  try {
    await sink.deliver(sent, { logger: captureLogs().logger });
    const [webhook] = receiver.received;
    return {
      id: webhook?.headers["webhook-id"],
      signature: webhook?.headers["webhook-signature"],
      body: createHash("sha256")
        .update(webhook?.rawBody ?? "")
        .digest("hex"),
    };
  } finally {
    await sink.close();
    await receiver.close();
  }
}

describe("what the http sink posts, byte for byte", () => {
  // Receivers verify the signature and drop repeats by webhook-id: both must stay what
  // earlier releases sent for the same bundle (these values are theirs).
  it("keeps the body, webhook-id and signature of earlier releases, with and without documents", async () => {
    const documents = [
      { name: "account_pdf", contentType: "application/pdf", data: Buffer.from("%PDF-1.7 ü") },
      {
        name: "dac_zip",
        contentType: "application/zip",
        data: Buffer.alloc(3 * 1024 * 1024 + 2, 7),
      },
      { name: "empty", contentType: "application/octet-stream", data: Buffer.alloc(0) },
    ];
    const sent = [
      await posted(bundle(documents)),
      await posted(bundle(undefined)),
      await posted(bundle([])),
    ];
    expect(sent).toEqual([
      {
        body: "8fff0ad78181d1effcfd09e6621f836facda63f06bfbc1e24668b378422261d7",
        id: "kc-encoding.b01095a73697596a",
        signature: "v1,mhEdC3XCmVbveRLhInT/hIqKGbPfnl5C31nPSlejQKA=",
      },
      {
        body: "a0e3786207e0b376c8147a61ac4a0530a224321c95cafae53a9aa47bae5115c6",
        id: "kc-encoding.6be5858ad7040bc6",
        signature: "v1,GAa95qO7At6yZiH5gr7IaRcaGTY8j0ThFqDPItgowso=",
      },
      {
        body: "c9476eb8443090b422d36eed881ed8b4af5422c3c27401ba13b3986b63b190b6",
        id: "kc-encoding.0d2f49fd48b98cc1",
        signature: "v1,1VwIYP0yMyLW1XKZO9Umxr+MV1+eXFfJ/MPAbUeN2H8=",
      },
    ]);
  });

  it("posts a bundle with two 16 MiB documents from a 64 MiB heap (the body and its documents held once, outside the heap)", async () => {
    // Stringified whole (the body, again for the webhook-id, again for the signature) it
    // needed over 96 MiB of heap here, over 400 MiB with two 48 MiB documents: four such
    // posts at once did not fit the 1 GiB heap of npm start.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--max-old-space-size=64", "--import", "tsx", "test/fixtures/http-sink-large-post.ts", "16"],
      { cwd: ROOT, env: childEnv({}), timeout: 60_000 },
    );
    const base64 = 2 * Math.ceil((16 << 20) / 3) * 4;
    expect(Number(stdout.trim().split(" ")[1])).toBeGreaterThan(base64);
  }, 90_000);
});
