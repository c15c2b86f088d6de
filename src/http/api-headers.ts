import type { RequestHandler } from "express";

/**
 * What every answer of the public port carries: the headers OWASP's REST Security Cheat
 * Sheet names for API responses, and only those (no caching, no sniffing, no framing, no
 * scripts; the cross-origin, referrer and DNS-prefetch headers guard HTML pages in a
 * browser). One list for both ways an answer leaves: Express's middleware below, and the
 * callback's fast path, which writes them in its one writeHead.
 */
export const API_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Cache-Control": "no-store",
  "Content-Security-Policy": "default-src 'none';frame-ancestors 'none'",
  "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
});

/**
 * Sets API_HEADERS, and `Connection: close` once the service is stopping (see AppOptions
 * draining).
 */
export function apiHeaders(draining?: () => boolean): RequestHandler {
  return (_req, res, next) => {
    res.set(API_HEADERS);
    if (draining?.()) res.set("Connection", "close");
    next();
  };
}
