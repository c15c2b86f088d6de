import type { Request, Response } from "express";

const CODES: Record<number, string> = {
  400: "BAD_REQUEST",
  401: "UNAUTHORIZED_ACCESS",
  403: "FORBIDDEN",
  404: "ENTITY_NOT_FOUND",
  409: "ENTITY_EXISTS",
  422: "UNPROCESSABLE_ENTITY",
  413: "REQUEST_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
  429: "TOO_MANY_REQUESTS",
  500: "INTERNAL_ERROR",
  503: "SERVICE_UNAVAILABLE",
};

const MESSAGES: Record<number, string> = {
  400: "Bad request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not found",
  429: "Too many requests, please retry later",
  500: "Internal server error",
  503: "Service temporarily unavailable",
};

/** finAPI Access style error body; the extra fields help when a client logs the raw body. */
export function sendError(
  req: Request,
  res: Response,
  status: number,
  message = MESSAGES[status] ?? `HTTP ${status}`,
  code = CODES[status] ?? (status >= 500 ? "INTERNAL_ERROR" : "BAD_REQUEST"),
): void {
  res.status(status).json({
    errors: [{ message, code, type: status >= 500 ? "TECHNICAL" : "BUSINESS" }],
    date: new Date().toISOString().replace("T", " ").slice(0, 23),
    requestId: req.get("x-request-id") ?? null,
    // baseUrl: inside a router (the control endpoints) req.path is relative to it.
    endpoint: `${req.method} ${req.baseUrl ?? ""}${req.path}`,
  });
}

/**
 * 502 and 504 come from the gateway in front of finAPI, not from the service, so they are
 * HTML like nginx sends them: clients must not assume every error body is JSON.
 */
export function sendGatewayError(res: Response, status: 502 | 504): void {
  const title = status === 502 ? "502 Bad Gateway" : "504 Gateway Time-out";
  res
    .status(status)
    .type("text/html")
    .send(
      `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
    );
}

export function sendOAuthError(
  res: Response,
  status: number,
  error: string,
  description: string,
): void {
  res
    .status(status)
    .set("Cache-Control", "no-store")
    .json({ error, error_description: description });
}
