import { connect, createServer, type Server, type Socket } from "node:net";

/** The sockets of one relay: ends each error quietly, and all of them at once on close. */
function socketSet() {
  const sockets = new Set<Socket>();
  return {
    track(socket: Socket): Socket {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
      return socket;
    },
    destroyAll(): void {
      for (const socket of sockets) socket.destroy();
    },
  };
}

/** `client` piped to a new connection to `target` and back; either closing closes both. */
function pipeTo(
  client: Socket,
  target: { host: string; port: number },
  track: (s: Socket) => Socket,
) {
  const upstream = track(connect(target.port, target.host));
  client.pipe(upstream).pipe(client);
  client.on("close", () => upstream.destroy());
  upstream.on("close", () => client.destroy());
  return upstream;
}

/** Listens on an ephemeral loopback port; the port. */
async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return (server.address() as { port: number }).port;
}

/**
 * A TCP relay on loopback to `target` (host:port) whose connections can die without a word:
 * `stall()` stops passing bytes on every connection open now, in both directions, without
 * closing any (as after a failover or when a NAT drops its entry), while new connections
 * are relayed as before.
 */
export async function startTcpRelay(target: { host: string; port: number }) {
  const sockets = socketSet();
  const stalls: (() => void)[] = [];
  const relay = createServer((socket) => {
    sockets.track(socket);
    const upstream = pipeTo(socket, target, sockets.track);
    stalls.push(() => {
      socket.unpipe(upstream);
      upstream.unpipe(socket);
      // Read nothing more on either side: what the client sends now goes nowhere.
      socket.pause();
      upstream.pause();
    });
  });
  const port = await listenOnLoopback(relay);
  return {
    port,
    /** Connections open now stay open but carry nothing from now on. */
    stall() {
      for (const stall of stalls.splice(0)) stall();
    },
    async close() {
      sockets.destroyAll();
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
  const sockets = socketSet();
  const relay = createServer((client) => {
    const upstream = sockets.track(connect(target.port, target.host));
    sockets.track(client);
    let silent = false;
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
  const port = await listenOnLoopback(relay);
  return {
    port,
    async close() {
      sockets.destroyAll();
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
  const sockets = socketSet();
  const state = { cut: false, dropped: 0 };
  const relay = createServer((socket) => {
    sockets.track(socket);
    if (state.cut) {
      state.dropped += 1;
      socket.destroy();
      return;
    }
    pipeTo(socket, typeof target === "function" ? target() : target, sockets.track);
  });
  const port = await listenOnLoopback(relay);
  return {
    port,
    /** Connections dropped at once since the relay was cut (each cut starts from 0). */
    get dropped() {
      return state.dropped;
    },
    async cut(how: "drop" | "refuse" = "drop") {
      state.cut = true;
      state.dropped = 0;
      sockets.destroyAll();
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
      sockets.destroyAll();
      if (relay.listening) await new Promise((resolve) => relay.close(resolve));
    },
  };
}
