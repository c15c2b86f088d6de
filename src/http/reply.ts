import type { Response } from "express";

/**
 * How a handler answers, whatever carries the answer: Express's response on most routes,
 * Node's own on the callback's fast path (see callback-fast-path.ts). A JSON body, always.
 */
export type Reply = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** A Reply through Express, which adds the app's headers (see api-headers.ts). */
export function expressReply(res: Response): Reply {
  return (status, body, headers) => {
    if (headers) res.set(headers);
    res.status(status).json(body);
  };
}
