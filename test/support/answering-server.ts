import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";

/** One scripted answer: JSON unless its headers say otherwise. */
export interface ScriptedAnswer {
  status: number;
  headers?: Record<string, string>;
  body: string;
}

/**
 * A loopback HTTP server standing in for an upstream (finAPI's data or token endpoint) that
 * gives its answers in order, the last one from then on, whatever the path; it notes when
 * each request came, and its path and headers.
 */
export async function answeringInTurn(answers: readonly ScriptedAnswer[]) {
  const requestedAt: number[] = [];
  const requests: { url: string; headers: IncomingHttpHeaders }[] = [];
  const server: Server = createServer((req, res) => {
    requestedAt.push(Date.now());
    requests.push({ url: req.url ?? "", headers: req.headers });
    req.resume();
    const answer = answers[Math.min(requestedAt.length, answers.length) - 1];
    if (!answer) throw new Error("no answer scripted");
    res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
    res.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requestedAt,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
