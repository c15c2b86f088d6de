import { createHash, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler, Response } from "express";
import { sendError, sendNotFound } from "./send-error.js";

/** Equal-time comparison; hashing first makes the lengths equal without leaking them. */
export function secretsEqual(given: string, expected: string): boolean {
  const digest = (value: string) => createHash("sha256").update(value, "utf8").digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The secrets a request presents: its last path segment, and its Basic password. */
function presentedSecrets(fromPath: unknown, authorization: string | undefined): string[] {
  const presented: string[] = [];
  if (typeof fromPath === "string") presented.push(fromPath);
  if (authorization?.toLowerCase().startsWith("basic ")) {
    const decoded = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon >= 0) presented.push(decoded.slice(colon + 1));
  }
  return presented;
}

/** Whether the path segment or the Basic password is `secret`. */
export function presentsSecret(
  secret: string,
  fromPath: unknown,
  authorization: string | undefined,
): boolean {
  // Every presented value is compared, so the time taken does not depend on which matched.
  const matches = presentedSecrets(fromPath, authorization).map((given) =>
    secretsEqual(given, secret),
  );
  return matches.includes(true);
}

/**
 * Defence in depth beyond the IP allowlist: the callback must carry CALLBACK_SECRET as
 * the last path segment (the URL registered at finAPI) or as the HTTP Basic password.
 */
export function requireCallbackSecret(
  secret: string | undefined,
  onReject?: (req: Request) => void,
): RequestHandler {
  return (req, res, next) => {
    if (secret === undefined) {
      // Without a secret, `${CALLBACK_PATH}/<anything>` is simply not a route.
      if (req.params.secret !== undefined) return sendNotFound(res);
      return next();
    }
    if (presentsSecret(secret, req.params.secret, req.headers.authorization)) return next();
    onReject?.(req);
    wrongSecretAnswer(res);
  };
}

/** The 401 of a missing or wrong secret, asking for it as HTTP Basic. */
export function wrongSecretAnswer(res: Response): void {
  res.set("WWW-Authenticate", 'Basic realm="kreditcheck-callback"');
  sendError(res, 401, "unauthorized", [{ message: "missing or wrong callback secret" }]);
}

/**
 * A request path with everything below the callback path replaced, for logs. Routing is
 * case-insensitive, so the comparison is too.
 */
export function redactSecretInPath(path: string, callbackPath: string): string {
  return path.toLowerCase().startsWith(`${callbackPath.toLowerCase()}/`)
    ? `${path.slice(0, callbackPath.length)}/[redacted]`
    : path;
}
