import type { RequestHandler } from "express";
import { secretsEqual } from "../http/callback-secret.js";
import { sendError } from "../http/send-error.js";

/** `Authorization: Bearer ${ADMIN_TOKEN}` when a token is configured; open otherwise. */
export function requireAdminToken(token: string | undefined): RequestHandler {
  return (req, res, next) => {
    if (token === undefined) return next();
    const header = req.get("authorization") ?? "";
    const given = header.toLowerCase().startsWith("bearer ") ? header.slice(7).trim() : "";
    if (secretsEqual(given, token)) return next();
    res.set("WWW-Authenticate", "Bearer");
    sendError(res, 401, "unauthorized", [
      { message: "missing or wrong admin token (ADMIN_TOKEN)" },
    ]);
  };
}
