import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * An HTTP server on loopback that answers every request 200 with an HTML page: what a
 * wrong URL often reaches (a gateway's login, a maintenance page) instead of finAPI.
 */
export async function servePage(html: string): Promise<{ url: string; close(): Promise<void> }> {
  const page = createServer((_req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" }).end(html);
  });
  await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
  const { port } = page.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise((resolve) => page.close(() => resolve())),
  };
}
