import { createHmac, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";
import { startWebhookReceiver } from "../support/webhook-receiver.js";

type Verify = (headers: Record<string, unknown>, rawBody: string, secret: string) => boolean;

/**
 * The receiver-side check exactly as README.md shows it (users copy it): its code block,
 * run with the two functions it imports.
 */
function readmeVerify(): Verify {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const block = /```js\n([\s\S]*?function verify\([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error("README.md has no js block with function verify(");
  const body = block.replace(/^import .*$/gm, "");
  return new Function("createHmac", "timingSafeEqual", `${body}\nreturn verify;`)(
    createHmac,
    timingSafeEqual,
  ) as Verify;
}

describe("README's Standard Webhooks check", () => {
  it("accepts what the http sink posts, and refuses a changed, unsigned, undated or old one without throwing", async () => {
    const verify = readmeVerify();
    const receiver = await startWebhookReceiver();
    const secret = `whsec_${Buffer.from("a key of at least sixteen bytes").toString("base64")}`;
    const harness = await startHarness({
      env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: secret },
    }).catch(async (error: unknown) => {
      await receiver.close();
      throw error;
    });
    const { headers, rawBody } = await harness
      .post(makeCallback())
      .then(() => waitFor(() => receiver.received[0], "the webhook"))
      .finally(async () => {
        await harness.close();
        await receiver.close();
      });

    expect(verify(headers, rawBody, secret)).toBe(true);
    expect(verify(headers, `${rawBody} `, secret)).toBe(false);
    expect(verify(headers, rawBody, "another secret, long enough")).toBe(false);
    const without = (name: string) => {
      const copy: Record<string, unknown> = { ...headers };
      delete copy[name];
      return copy;
    };
    // Anyone can post to a receiver: missing headers must not crash it.
    expect(verify(without("webhook-signature"), rawBody, secret)).toBe(false);
    expect(verify(without("webhook-id"), rawBody, secret)).toBe(false);
    expect(verify(without("webhook-timestamp"), rawBody, secret)).toBe(false);
    const old = String(Number(headers["webhook-timestamp"]) - 600);
    expect(verify({ ...headers, "webhook-timestamp": old }, rawBody, secret)).toBe(false);
  });
});
