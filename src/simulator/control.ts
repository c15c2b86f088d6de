import express, { type Request, type Response, type Router } from "express";
import { z } from "zod";
import { sendError } from "./errors.js";
import { failNextSchema, faultsPatchSchema } from "./faults.js";
import type { SimulatorState } from "./state.js";

function badInput(req: Request, res: Response, error: z.ZodError): void {
  sendError(req, res, 400, z.prettifyError(error), "BAD_REQUEST");
}

/** The same controls as the programmatic API, for tests and benchmarks in another process. */
export function controlRouter(state: SimulatorState): Router {
  const router = express.Router();
  router.use(express.json({ limit: "64kb" }));

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
    res.json(state.setFaults(parsed.data));
  });

  router.post("/fail-next", (req, res) => {
    const parsed = failNextSchema.safeParse(req.body ?? {});
    if (!parsed.success) return badInput(req, res, parsed.error);
    const { endpoint, count, status, retryAfterSec } = parsed.data;
    state.failNext(endpoint, count, status, retryAfterSec === undefined ? {} : { retryAfterSec });
    res.json({ endpoint, pending: state.faults.pending(endpoint) });
  });

  router.post("/revoke", (_req, res) => {
    state.revokeToken();
    res.json({ revoked: true });
  });

  router.post("/reset", (_req, res) => {
    state.reset();
    res.json(state.faults.faults);
  });

  return router;
}
