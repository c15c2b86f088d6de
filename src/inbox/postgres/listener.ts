import pg from "pg";

export interface ListenerOptions {
  config: pg.ClientConfig;
  channel: string;
  /** Called for each notification on the channel with this payload. */
  payload: string;
  onNotify: () => void;
  /** Called when the connection dropped and could not be re-established yet. */
  onError: (error: unknown) => void;
  maxDelayMs?: number;
  /** How long each statement of a (re)connect, LISTEN too, may go unanswered (10 s unless given). */
  listenTimeoutMs?: number;
}

/**
 * LISTEN on a dedicated connection (a pooled one would be handed to other queries).
 * When the connection drops it reconnects with a growing delay, and after reconnecting
 * it reports one notification: whatever was announced while it was away is found by
 * the next claim.
 */
export class NotificationListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private delayMs = 100;

  constructor(private readonly options: ListenerOptions) {}

  /** Resolves once listening; a failure here is left to the reconnect loop. */
  async start(): Promise<void> {
    await this.connect(false);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(reconnecting: boolean): Promise<void> {
    const { config, channel, payload, onNotify } = this.options;
    // Called from pg's events and from a reconnect nobody awaits: a hook that throws
    // must not end the process (it only logs).
    const onError = (error: unknown) => {
      try {
        this.options.onError(error);
      } catch {
        // Nothing to do: the reconnect goes on.
      }
    };
    const client = new pg.Client(config);
    const lost = (error?: unknown) => {
      if (this.client !== client) return;
      this.client = undefined;
      client.end().catch(() => undefined);
      if (error) onError(error);
      this.scheduleReconnect();
    };
    client.on("error", lost);
    client.on("end", () => lost());
    client.on("notification", (message) => {
      if (message.channel === channel && message.payload === payload) onNotify();
    });
    try {
      await client.connect();
      if (this.stopped) {
        await client.end();
        return;
      }
      // Bounded: a connection that died between its opening and these statements would
      // hold start-up (which awaits the first LISTEN) until TCP keepalive gave up, minutes
      // later. (pg reads a query's own query_timeout; its types do not list it.)
      const queryTimeout = this.options.listenTimeoutMs ?? 10_000;
      // This connection is idle by design: a server's idle_session_timeout (PostgreSQL 14+,
      // set for the database or the role) ended it every period, each time with a warning
      // and a reconnect. Set off here, for this session only, and not with `-c` in the
      // startup packet: a server before 14 refuses a connection with a setting it does not
      // know (FATAL: unrecognized configuration parameter); pg_settings lists it where it
      // exists, so elsewhere this sets nothing.
      await client.query({
        text: "SELECT set_config(name, '0', false) FROM pg_settings WHERE name = 'idle_session_timeout'",
        query_timeout: queryTimeout,
      } as pg.QueryConfig);
      // LISTEN takes an identifier, which cannot be bound; the channel is a constant.
      await client.query({
        text: `LISTEN ${client.escapeIdentifier(channel)}`,
        query_timeout: queryTimeout,
      } as pg.QueryConfig);
      // Stopped while the LISTEN was on its way: this connection would be left open.
      if (this.stopped) {
        await client.end().catch(() => undefined);
        return;
      }
    } catch (error) {
      await client.end().catch(() => undefined);
      onError(error);
      this.scheduleReconnect();
      return;
    }
    this.client = client;
    this.delayMs = 100;
    if (reconnecting) onNotify();
  }

  private scheduleReconnect(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.options.maxDelayMs ?? 5000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.connect(true);
    }, delay);
  }
}
