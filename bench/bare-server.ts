import express from "express";

/**
 * The yardstick of the ingest benchmark: Express 5 that parses JSON and answers 202, and
 * nothing else (no validation, no store, no log). Runs in its own process, like the service.
 */
const app = express();
app.disable("x-powered-by");
app.disable("etag");
app.post("/callbacks/kreditcheck", express.json({ limit: 64 * 1024 }), (req, res) => {
  res.status(202).json({ accepted: true, duplicate: false, id: String(req.body?.kreditCheckId) });
});
const server = app.listen(Number(process.env.PORT), "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
