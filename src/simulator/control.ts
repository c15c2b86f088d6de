import express, { type Request, type Response, type Router } from "express";
import { z } from "zod";
import { sendError } from "./errors.js";
import { failNextSchema, faultsPatchSchema } from "./faults.js";
import type { SimulatorState } from "./state.js";

function badInput(req: Request, res: Response, error: z.ZodError): void {
  sendError(req, res, 400, z.prettifyError(error), "BAD_REQUEST");
}

/**
 * A body that is not JSON would reach the handlers as no body at all, and an empty patch
 * changes nothing: `curl -d '{"rate5xx":1}'` (a form type) got 200 and no fault. Refused.
 */
function requireJsonBody(req: Request, res: Response, next: () => void): void {
  const hasBody =
    req.headers["transfer-encoding"] !== undefined ||
    (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
  if (hasBody && !req.is("application/json")) {
    sendError(
      req,
      res,
      415,
      `the control endpoints read JSON: send Content-Type: application/json (got ${req.headers["content-type"] ?? "none"})`,
    );
    return;
  }
  next();
}

/** The same controls as the programmatic API, for tests and benchmarks in another process. */
export function controlRouter(state: SimulatorState): Router {
  const router = express.Router();
  router.use(requireJsonBody, express.json({ limit: "64kb" }));

  router.get("/stats", (_req, res) => {
    res.json(state.snapshot());
  });

  router.get("/requests", (_req, res) => {
    res.json(state.requests.snapshot());
  });

  router.get("/faults", (_req, res) => {
    res.json(state.faults.faults);
  });

  router.post("/faults", (req, res) => {
    const parsed = faultsPatchSchema.safeParse(req.body ?? {});
    if (!parsed.success) return badInput(req, res, parsed.error);
    try {
      // Checked again merged with the current faults (the rates' sum); nothing changes then.
      res.json(state.setFaults(parsed.data));
    } catch (error) {
      if (!(error instanceof z.ZodError)) throw error;
      badInput(req, res, error);
    }
  });

  router.post("/fail-next", (req, res) => {
    const parsed = failNextSchema.safeParse(req.body ?? {});
    if (!parsed.success) return badInput(req, res, parsed.error);
    const { endpoint, count, status, retryAfterSec } = parsed.data;
    state.failNext(endpoint, count, status, retryAfterSec === undefined ? {} : { retryAfterSec });
    res.json({ endpoint, pending: state.faults.pending(endpoint) });
  });

  router.post("/revoke", (_req, res) => {
    res.json({ revoked: state.revokeToken() });
  });

  router.post("/reset", (_req, res) => {
    state.reset();
    res.json(state.faults.faults);
  });

  return router;
}
