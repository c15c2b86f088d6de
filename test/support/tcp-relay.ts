import { connect, createServer, type Socket } from "node:net";

/**
 * A TCP relay on loopback to `target` (host:port) whose connections can die without a word:
 * `stall()` stops passing bytes on every connection open now, in both directions, without
 * closing any (as after a failover or when a NAT drops its entry), while new connections
 * are relayed as before.
 */
export async function startTcpRelay(target: { host: string; port: number }) {
  const sockets = new Set<Socket>();
  const stalls: (() => void)[] = [];
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  };
  const relay = createServer((socket) => {
    track(socket);
    const upstream = connect(target.port, target.host);
    track(upstream);
    socket.pipe(upstream).pipe(socket);
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
    stalls.push(() => {
      socket.unpipe(upstream);
      upstream.unpipe(socket);
      // Read nothing more on either side: what the client sends now goes nowhere.
      socket.pause();
      upstream.pause();
    });
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    port,
    /** Connections open now stay open but carry nothing from now on. */
    stall() {
      for (const stall of stalls.splice(0)) stall();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}
