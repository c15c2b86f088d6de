import { createServer, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import axios, { AxiosError } from "axios";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTransport, isCanceled, isTimeout, type Transport } from "../src/http-transport.js";
import { createDispatcher, createUndiciAdapter } from "../src/undici-adapter.js";

/** The transport (axios on undici) against a real server on loopback. */
let server: Server;
let base: string;
const sockets = new Set<Socket>();

function listen(target: Server): Promise<string> {
  return new Promise((resolve) => {
    target.listen(0, "127.0.0.1", () => {
      resolve(`http://127.0.0.1:${(target.address() as AddressInfo).port}`);
    });
  });
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "";
      if (path === "/json") {
        res.setHeader("Content-Type", "application/json");
        res.setHeader("Retry-After", "7");
        res.end('{"a":"ä","b":[1,2]}');
      } else if (path === "/bytes") {
        res.end(Buffer.from([0, 1, 2, 255]));
      } else if (path === "/echo") {
        res.end(
          JSON.stringify({ method: req.method, headers: req.headers, body: chunks.join("") }),
        );
      } else if (path === "/big") {
        res.end("x".repeat(10_000));
      } else if (path === "/status/503") {
        res.statusCode = 503;
        res.end("busy");
      } else if (path === "/reset") {
        req.socket.destroy();
      } else if (path === "/slow-body") {
        res.writeHead(200, { "Content-Length": "10" });
        res.write("12345");
        // The rest never comes.
      }
      // "/hang": no answer at all.
    });
  });
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  base = await listen(server);
});

afterAll(async () => {
  for (const socket of sockets) socket.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function transport(timeoutMs = 2000): Transport {
  return createTransport({ timeoutMs, maxSockets: 4 });
}

async function failure(promise: Promise<unknown>): Promise<AxiosError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(AxiosError);
  return error as AxiosError;
}

describe("axios on undici (the service's HTTP transport)", () => {
  it("reads text bodies as UTF-8 and hands every status and header back", async () => {
    const { http, close } = transport();
    const ok = await http.get(`${base}/json`);
    expect(ok.status).toBe(200);
    expect(ok.data).toBe('{"a":"ä","b":[1,2]}');
    expect(ok.headers["retry-after"]).toBe("7");
    expect(ok.headers["content-type"]).toBe("application/json");
    const busy = await http.get(`${base}/status/503`);
    expect(busy.status).toBe(503);
    expect(busy.data).toBe("busy");
    await close();
  });

  it("reads bytes untouched with responseType arraybuffer", async () => {
    const { http, close } = transport();
    const response = await http.get(`${base}/bytes`, { responseType: "arraybuffer" });
    expect([...Buffer.from(response.data as ArrayBuffer)]).toEqual([0, 1, 2, 255]);
    await close();
  });

  it("sends the method, the headers and a string body byte for byte", async () => {
    const { http, close } = transport();
    const body = "grant_type=client_credentials&client_id=a%20b";
    const response = await http.post(`${base}/echo`, body, {
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-Request-Id": "r-1" },
    });
    const echoed = JSON.parse(response.data as string) as {
      method: string;
      headers: Record<string, string>;
      body: string;
    };
    expect(echoed.method).toBe("POST");
    expect(echoed.body).toBe(body);
    expect(echoed.headers["x-request-id"]).toBe("r-1");
    expect(echoed.headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(echoed.headers.accept).toBe("application/json");
    await close();
  });

  it("times out a request that gets no answer, as a timeout", async () => {
    const { http, close } = transport(150);
    const started = Date.now();
    const error = await failure(http.get(`${base}/hang`));
    expect(isTimeout(error)).toBe(true);
    expect(error.message).toBe("timeout of 150ms exceeded");
    expect(Date.now() - started).toBeLessThan(1500);
    await close();
  });

  it("times out a body that stops half-way (the timeout covers the whole exchange)", async () => {
    const { http, close } = transport(150);
    const error = await failure(http.get(`${base}/slow-body`));
    expect(isTimeout(error)).toBe(true);
    await close();
  });

  it("reports a dropped connection as a network error, not a timeout", async () => {
    const { http, close } = transport();
    const error = await failure(http.get(`${base}/reset`));
    expect(isTimeout(error)).toBe(false);
    expect(isCanceled(error)).toBe(false);
    expect(error.code).toBe("ECONNRESET");
    await close();
  });

  it("reports a refused connection with Node's code", async () => {
    const closed = createServer();
    const url = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const { http, close } = transport();
    const error = await failure(http.get(`${url}/json`));
    expect(error.code).toBe("ECONNREFUSED");
    await close();
  });

  it("stops at once when the caller aborts, as a cancellation", async () => {
    const { http, close } = transport(5000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const error = await failure(http.get(`${base}/hang`, { signal: controller.signal }));
    expect(isCanceled(error)).toBe(true);
    expect(isTimeout(error)).toBe(false);
    const already = await failure(http.get(`${base}/json`, { signal: AbortSignal.abort() }));
    expect(isCanceled(already)).toBe(true);
    await close();
  });

  it("refuses a body over maxContentLength", async () => {
    const { http, close } = transport();
    const error = await failure(http.get(`${base}/big`, { maxContentLength: 1000 }));
    expect(error.message).toBe("maxContentLength size of 1000 exceeded");
    expect((await http.get(`${base}/big`)).data).toHaveLength(10_000);
    await close();
  });

  it("refuses baseURL and params instead of sending the request elsewhere", async () => {
    const { http, close } = transport();
    const viaBase = await failure(http.get("/json", { baseURL: base }));
    expect(viaBase.code).toBe("ERR_BAD_OPTION");
    const withParams = await failure(http.get(`${base}/json`, { params: { a: 1 } }));
    expect(withParams.code).toBe("ERR_BAD_OPTION");
    await close();
  });

  it("honours validateStatus like axios' own adapter", async () => {
    const dispatcher = createDispatcher({ connections: 2, env: {} });
    const plain = axios.create({ adapter: createUndiciAdapter(dispatcher) });
    const error = await failure(plain.get(`${base}/status/503`));
    expect(error.message).toBe("Request failed with status code 503");
    expect(error.response?.status).toBe(503);
    expect(error.response?.data).toBe("busy");
    await dispatcher.destroy();
  });
});

describe("HTTP_PROXY, HTTPS_PROXY and NO_PROXY", () => {
  /** A forward proxy that tunnels CONNECT and counts what it was asked for. */
  let proxy: Server;
  let proxyUrl: string;
  const tunnels: string[] = [];

  beforeAll(async () => {
    proxy = createServer((_req, res) => {
      res.statusCode = 501;
      res.end();
    });
    proxy.on("connect", (req, client: Socket, head: Buffer) => {
      tunnels.push(req.url ?? "");
      const [host, port] = (req.url ?? "").split(":");
      const upstream = connect(Number(port), host, () => {
        client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
    proxyUrl = await listen(proxy);
  });

  afterAll(async () => {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  });

  it("sends requests through the proxy the environment names", async () => {
    tunnels.length = 0;
    const dispatcher = createDispatcher({ connections: 2, env: { HTTP_PROXY: proxyUrl } });
    const client = axios.create({ adapter: createUndiciAdapter(dispatcher), responseType: "text" });
    const response = await client.get(`${base}/json`);
    expect(response.data).toBe('{"a":"ä","b":[1,2]}');
    expect(tunnels).toEqual([new URL(base).host]);
    await dispatcher.destroy();
  });

  it("goes direct for hosts in NO_PROXY, and without any proxy variable", async () => {
    tunnels.length = 0;
    for (const env of [{ HTTP_PROXY: proxyUrl, NO_PROXY: "127.0.0.1" }, {}]) {
      const dispatcher = createDispatcher({ connections: 2, env });
      const client = axios.create({ adapter: createUndiciAdapter(dispatcher) });
      expect((await client.get(`${base}/json`)).status).toBe(200);
      await dispatcher.destroy();
    }
    expect(tunnels).toEqual([]);
  });
});
