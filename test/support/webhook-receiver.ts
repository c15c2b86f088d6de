import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedWebhook {
  headers: IncomingHttpHeaders;
  rawBody: string;
  /** When its body was in (Date.now()). */
  receivedAt: number;
}

/**
 * A loopback HTTP server that records each request's raw body and answers `answer()`;
 * `hang: true` leaves that request unanswered (the connection is closed with the server),
 * `trickle: true` sends the head and then a byte every 100 ms without end, `body` is sent
 * as the answer's body.
 */
export async function startWebhookReceiver(
  answer: (index: number) => {
    status: number;
    headers?: Record<string, string>;
    hang?: boolean;
    trickle?: boolean;
    body?: string;
  } = () => ({
    status: 204,
  }),
) {
  const received: ReceivedWebhook[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({
        headers: req.headers,
        rawBody: Buffer.concat(chunks).toString("utf8"),
        receivedAt: Date.now(),
      });
      const { status, headers, hang, trickle, body } = answer(received.length - 1);
      if (hang) return;
      if (!trickle) return void res.writeHead(status, headers).end(body);
      res.writeHead(status, headers);
      const timer = setInterval(() => res.write("."), 100);
      res.on("close", () => clearInterval(timer));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/kreditcheck`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
