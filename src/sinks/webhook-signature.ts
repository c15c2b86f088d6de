import { createHmac } from "node:crypto";

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): an HMAC-SHA256 over
 * `${id}.${timestamp}.${body}`, sent as `v1,<base64>`. A secret written as
 * `whsec_<base64>` (the spec's format) is the base64-decoded key; any other secret is
 * used as its raw UTF-8 bytes.
 */
export function webhookKey(secret: string): Buffer {
  return secret.startsWith("whsec_")
    ? Buffer.from(secret.slice("whsec_".length), "base64")
    : Buffer.from(secret, "utf8");
}

export function signWebhook(
  key: Buffer,
  id: string,
  timestampSec: number,
  body: string | Buffer,
): string {
  // In two parts, the same HMAC: `${id}.${timestampSec}.${body}` was one more full copy of
  // the body (and of its documents) per post.
  const digest = createHmac("sha256", key)
    .update(`${id}.${timestampSec}.`)
    .update(body)
    .digest("base64");
  return `v1,${digest}`;
}
