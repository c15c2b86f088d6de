import { readFileSync } from "node:fs";
import { isIP, Socket } from "node:net";
import { Duplex } from "node:stream";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";

/**
 * What a URL's `sslmode` (or PGSSLMODE) means to the service: libpq's meaning, as psql
 * and every other libpq client read the same URL.
 *
 * pg 8 reads `prefer`, `require` and `verify-ca` as `verify-full` (and prints a SECURITY
 * WARNING): a server with a certificate of a private CA failed start-up with
 * `sslmode=require`, which psql connects with; `prefer` failed against a server without
 * TLS. Its `uselibpqcompat=true` gives libpq's meaning for `require`, `verify-ca` and
 * `verify-full`, and is added to the URL for them. Its `prefer` still insists on TLS, and
 * it reads `allow` as `verify-full`: for those two the service asks for TLS itself on each
 * connection (TlsIfOfferedSocket), as libpq does. A URL that names `uselibpqcompat`
 * itself is left to pg, as is pg's own `no-verify`, and a URL without an sslmode (and no
 * PGSSLMODE): pg's default, no TLS, stays.
 *
 * With libpq, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT and PGSSLKEY stand for the URL
 * parameters it leaves out; pg reads only PGSSLMODE, as `verify-full` for the three modes
 * above, and no certificate file: without PGSSLROOTCERT, `PGSSLMODE=verify-ca` could
 * never be met.
 *
 * The result is still a connection string: pg reads it, and the certificate files it
 * names, anew for each connection, so that a certificate rotated on disk is used.
 */
export function libpqSslSettings(
  given: string,
  env: NodeJS.ProcessEnv = process.env,
): { url: string; ssl?: false; stream?: () => Duplex } {
  const url = asPgReadsIt(given);
  const query = splitQuery(url);
  const value = (key: string) => query.parts.findLast((part) => part.key === key)?.value;
  if (query.parts.some((part) => part.key === "uselibpqcompat")) return { url };
  // PGSSLMODE stands for an sslmode the URL leaves out, not for TLS settings pg's own way
  // (`ssl=true`, a certificate file): pg ignored it then, and checked the certificate.
  const pgOwnTls = query.parts.some((part) => TLS_PARAMETERS.has(part.key ?? ""));
  const mode = value("sslmode") ?? (pgOwnTls ? undefined : env.PGSSLMODE || undefined);
  if (mode === undefined) return { url };
  if (overUnixSocket(url, value("host"), env)) {
    // libpq asks for no TLS over a Unix socket, where no server offers it: pg would, and
    // fail with "does not support SSL connections" where psql connects.
    return { url: withoutTlsParameters(query), ssl: false };
  }
  // libpq's variables, for what the URL leaves out.
  const file = (key: string, variable: string) => value(key) ?? (env[variable] || undefined);
  switch (mode) {
    case "require":
    case "verify-ca":
    case "verify-full": {
      if (mode === "verify-ca" && file("sslrootcert", "PGSSLROOTCERT") === undefined) {
        // libpq refuses it too: there is nothing to check the certificate against.
        throw new Error(
          "sslmode=verify-ca needs the certificate of the CA that signed the server's: sslrootcert=<file> in the URL, or PGSSLROOTCERT (sslmode=verify-full checks against the system's CAs without one)",
        );
      }
      const added: [string, string][] = [];
      if (value("sslmode") === undefined) added.push(["sslmode", mode]);
      for (const [key, variable] of FILES) {
        const fromEnv = env[variable];
        if (value(key) === undefined && fromEnv) added.push([key, fromEnv]);
      }
      added.push(["uselibpqcompat", "true"]);
      const parts = [
        ...query.parts.map((part) => part.text),
        ...added.map(([key, setting]) => `${key}=${encodeURIComponent(setting)}`),
      ];
      return { url: joinQuery(query, parts) };
    }
    case "prefer":
    case "allow": {
      const cert = file("sslcert", "PGSSLCERT");
      const key = file("sslkey", "PGSSLKEY");
      return {
        url: withoutTlsParameters(query),
        ssl: false,
        // A client certificate, for a server that asks for one, read for each connection.
        stream: () =>
          new TlsIfOfferedSocket(() => ({
            ...(cert === undefined ? {} : { cert: readFileSync(cert) }),
            ...(key === undefined ? {} : { key: readFileSync(key) }),
          })),
      };
    }
    default:
      // disable and no-verify: pg reads them as libpq (and psql, for disable) does. A value
      // libpq does not know is pg's, which checks the certificate in full.
      return { url };
  }
}

/**
 * The URL as pg-connection-string reads it: one with a space or a `%` that starts no escape
 * is passed through encodeURI first (and its `%25dd` repaired), which would turn the
 * escapes added here (`%2F` in a certificate's path) into literal text. Done here first,
 * the URL has nothing left for pg to re-encode.
 */
function asPgReadsIt(url: string): string {
  if (!/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(url)) return url;
  return encodeURI(url).replace(/%25(\d\d)/g, "%$1");
}

/** Whether the connection goes to a Unix socket: a host (URL, `host=`, PGHOST) that is a path. */
function overUnixSocket(url: string, hostParameter: string | undefined, env: NodeJS.ProcessEnv) {
  const inUrl = /^[a-z]+:\/\/(?:[^@/?#]*@)?([^/?#]*)/i.exec(url)?.[1] ?? "";
  const host = hostParameter ?? (inUrl !== "" ? decodeURIComponent(inUrl) : env.PGHOST);
  return host?.startsWith("/") === true;
}

/** The URL parameters of libpq's certificate files, and the variables that stand for them. */
const FILES = [
  ["sslrootcert", "PGSSLROOTCERT"],
  ["sslcert", "PGSSLCERT"],
  ["sslkey", "PGSSLKEY"],
] as const;

/** URL parameters from which pg makes a connection that insists on TLS. */
const TLS_PARAMETERS = new Set(["sslmode", "ssl", "sslrootcert", "sslcert", "sslkey"]);

interface QueryPart {
  text: string;
  key: string | undefined;
  value: string | undefined;
}

/**
 * The URL around its query, and the query's parts, each with its decoded key and value.
 * The query is what lies between the first `?` and a `#`, as splitUrlSettings reads it;
 * parts are kept byte for byte.
 */
function splitQuery(url: string): { head: string; parts: QueryPart[]; tail: string } {
  const fragmentStart = url.indexOf("#");
  const beforeFragment = fragmentStart < 0 ? url : url.slice(0, fragmentStart);
  const tail = url.slice(beforeFragment.length);
  const queryStart = beforeFragment.indexOf("?");
  if (queryStart < 0) return { head: beforeFragment, parts: [], tail };
  const parts = beforeFragment
    .slice(queryStart + 1)
    .split("&")
    .filter((text) => text !== "")
    .map((text) => {
      const [entry] = [...new URLSearchParams(text).entries()];
      return { text, key: entry?.[0], value: entry?.[1] };
    });
  return { head: beforeFragment.slice(0, queryStart), parts, tail };
}

/** The URL without the parameters from which pg makes a connection that insists on TLS. */
function withoutTlsParameters(query: { head: string; parts: QueryPart[]; tail: string }): string {
  const kept = query.parts.filter((part) => !TLS_PARAMETERS.has(part.key ?? ""));
  return joinQuery(
    query,
    kept.map((part) => part.text),
  );
}

function joinQuery(query: { head: string; tail: string }, parts: string[]): string {
  return `${query.head}${parts.length > 0 ? `?${parts.join("&")}` : ""}${query.tail}`;
}

/** PostgreSQL's SSLRequest: length 8, code 80877103. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/**
 * A connection for pg that is encrypted when the server offers TLS and plain when it does
 * not, as libpq's sslmode=prefer: it sends the SSLRequest itself, and once the server
 * answered (and TLS was set up, without checking the certificate: libpq's prefer does not
 * either) it reports 'connect', and pg, told ssl=false, speaks PostgreSQL through it.
 * Over a Unix socket it asks for no TLS, as libpq does not. A TLS handshake that fails
 * fails the connection (libpq would try again without TLS): a server that offers TLS and
 * cannot complete it is broken, and is better reported than talked to in plain text.
 *
 * It is the socket pg's Connection drives: connect, setNoDelay, setKeepAlive, ref, unref,
 * write, end and destroy go to the TCP socket or through the TLS one; 'connect', 'data',
 * 'end', 'close' and 'error' come back.
 */
export class TlsIfOfferedSocket extends Duplex {
  private readonly raw = new Socket();
  /** Where the PostgreSQL protocol goes once the TLS question is settled. */
  private carrier: Socket | undefined;
  /** Whether the server took the connection to TLS (for tests and for nobody else). */
  encrypted = false;

  constructor(private readonly tlsOptions: () => ConnectionOptions) {
    super({ allowHalfOpen: false });
    this.raw.on("error", (error) => this.destroy(error));
    this.raw.on("close", () => {
      if (!this.carrier) return this.destroy();
      // What the server said last (a FATAL before it hung up) is read first.
      this.push(null);
      setImmediate(() => this.destroy());
    });
  }

  connect(portOrPath: number | string, host?: string): this {
    this.raw.once("connect", () => {
      if (typeof portOrPath === "string") return this.use(this.raw);
      this.raw.write(SSL_REQUEST);
      this.raw.once("data", (answer) => this.answered(answer, host));
    });
    if (typeof portOrPath === "string") this.raw.connect(portOrPath);
    else this.raw.connect(portOrPath, host ?? "localhost");
    return this;
  }

  private answered(answer: Buffer, host: string | undefined): void {
    // More than the one byte: something between us and the server (or the server itself)
    // slipped in bytes that the TLS layer would not protect (CVE-2021-23222).
    if (answer.length !== 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e)) {
      this.destroy(new Error("the PostgreSQL server gave no valid answer to the TLS request"));
      return;
    }
    if (answer[0] === 0x4e) {
      this.use(this.raw); // N: no TLS here
      return;
    }
    let options: ConnectionOptions;
    try {
      options = this.tlsOptions();
    } catch (error) {
      this.destroy(error as Error);
      return;
    }
    const secure = tlsConnect({
      ...options,
      socket: this.raw,
      rejectUnauthorized: false,
      // SNI takes a name only (RFC 6066).
      ...(host && isIP(host) === 0 ? { servername: host } : {}),
    });
    secure.on("error", (error) => this.destroy(error));
    secure.once("secureConnect", () => {
      this.encrypted = true;
      this.use(secure);
    });
  }

  private use(carrier: Socket): void {
    if (this.destroyed) return;
    this.carrier = carrier;
    carrier.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) carrier.pause();
    });
    carrier.on("end", () => this.push(null));
    this.emit("connect");
  }

  override _read(): void {
    this.carrier?.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error) => void): void {
    const carrier = this.carrier;
    // pg writes nothing before 'connect'.
    if (!carrier) done(new Error("not connected to the PostgreSQL server yet"));
    else if (carrier.write(chunk)) done();
    else carrier.once("drain", () => done());
  }

  override _final(done: (error?: Error) => void): void {
    this.carrier?.end();
    done();
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    if (this.carrier !== this.raw) this.carrier?.destroy();
    this.raw.destroy();
    done(error);
  }

  setNoDelay(noDelay?: boolean): this {
    this.raw.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    this.raw.setKeepAlive(enable, initialDelay);
    return this;
  }

  ref(): this {
    this.raw.ref();
    return this;
  }

  unref(): this {
    this.raw.unref();
    return this;
  }
}
