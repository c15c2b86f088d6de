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

/**
 * A TCP relay on loopback to `target` whose connections go silent, without closing, as
 * soon as the client sends bytes holding `text` (a statement's SQL: each of pg's messages
 * reaches the relay whole on loopback): a connection that dies without a word at that
 * statement. What comes before passes, in both directions.
 */
export async function startRelayThatGoesSilentAt(
  target: { host: string; port: number },
  text: string,
) {
  const sockets = new Set<Socket>();
  const relay = createServer((client) => {
    const upstream = connect(target.port, target.host);
    let silent = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    client.on("data", (data) => {
      if (!silent && data.includes(text)) silent = true;
      if (!silent) upstream.write(data);
    });
    upstream.on("data", (data) => {
      if (!silent) client.write(data);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    port,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => relay.close(resolve));
    },
  };
}

/**
 * A TCP relay on loopback to `target` that can be cut and restored, on the same port, as a
 * network path or a server that goes away and comes back: `cut()` destroys every connection
 * open now, and while cut each new connection is accepted and dropped at once (no byte
 * answered, so nothing like a Retry-After either); `dropped` counts those. `cut("refuse")`
 * stops listening instead, so connections are refused (ECONNREFUSED) and not counted.
 * `restore()` relays new connections again, on the same port. `target` may be a function,
 * read per connection.
 */
export async function startSwitchableRelay(
  target: { host: string; port: number } | (() => { host: string; port: number }),
) {
  const sockets = new Set<Socket>();
  const state = { cut: false, dropped: 0 };
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
  };
  const relay = createServer((socket) => {
    track(socket);
    if (state.cut) {
      state.dropped += 1;
      socket.destroy();
      return;
    }
    const { host, port } = typeof target === "function" ? target() : target;
    const upstream = connect(port, host);
    track(upstream);
    socket.pipe(upstream).pipe(socket);
    socket.on("close", () => upstream.destroy());
    upstream.on("close", () => socket.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as { port: number };
  return {
    port,
    /** Connections dropped at once since the relay was cut (each cut starts from 0). */
    get dropped() {
      return state.dropped;
    },
    async cut(how: "drop" | "refuse" = "drop") {
      state.cut = true;
      state.dropped = 0;
      for (const socket of sockets) socket.destroy();
      if (how === "refuse" && relay.listening) {
        await new Promise((resolve) => relay.close(resolve));
      }
    },
    async restore() {
      if (!relay.listening) {
        await new Promise<void>((resolve) => relay.listen(port, "127.0.0.1", resolve));
      }
      state.cut = false;
    },
    async close() {
      state.cut = true;
      for (const socket of sockets) socket.destroy();
      if (relay.listening) await new Promise((resolve) => relay.close(resolve));
    },
  };
}
