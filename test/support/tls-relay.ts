import { readFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { TLSSocket } from "node:tls";

const FIXTURES = new URL("../fixtures/tls/", import.meta.url);

/** The test CA's certificate, and its server certificate for DNS:localhost (not an IP). */
export const testCa = {
  caFile: new URL("ca.pem", FIXTURES).pathname,
  cert: readFileSync(new URL("server.pem", FIXTURES)),
  key: readFileSync(new URL("server.key", FIXTURES)),
};

/** PostgreSQL's SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * A PostgreSQL server on loopback as a client sees it with or without TLS, in front of the
 * test server (which need not have TLS): with `tls`, it answers an SSLRequest with S and
 * speaks TLS with the test CA's certificate for localhost; without, it answers N, as a
 * server without TLS does. Either way the protocol goes on, in plain text, to `target`.
 * `encrypted` counts the connections that were.
 */
export async function startPostgresTlsRelay(target: { host: string; port: number }, tls: boolean) {
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  };
  const state = { encrypted: 0, plain: 0 };
  const relay = createServer((socket) => {
    track(socket);
    const upstream = connect(target.port, target.host);
    track(upstream);
    const pipe = (client: Socket, first?: Buffer) => {
      if (first && first.length > 0) upstream.write(first);
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    };
    socket.once("data", (first) => {
      socket.pause();
      if (!first.subarray(0, 8).equals(SSL_REQUEST)) {
        state.plain++;
        pipe(socket, first);
        return;
      }
      if (!tls) {
        state.plain++;
        socket.write("N");
        pipe(socket, first.subarray(8));
        return;
      }
      socket.write("S");
      const secure = new TLSSocket(socket, { isServer: true, cert: testCa.cert, key: testCa.key });
      track(secure);
      secure.once("secure", () => {
        state.encrypted++;
      });
      pipe(secure);
    });
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    port,
    get encrypted() {
      return state.encrypted;
    },
    get plain() {
      return state.plain;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}
