import { getEventListeners } from "node:events";
import { createServer, request as httpRequest, type Server } from "node:http";
import { type AddressInfo, connect, type Socket } from "node:net";
import axios, { AxiosError, type AxiosRequestConfig } from "axios";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { createTransport, isCanceled, isTimeout, type Transport } from "../src/http-transport.js";
import {
  createDispatchers,
  createUndiciAdapter,
  type EgressProxies,
  type ReadAtMost,
} from "../src/undici-adapter.js";

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
      } else if (path === "/bom") {
        res.end('\uFEFF{"id":"kc-1"}');
      } else if (path === "/twice") {
        res.setHeader("Retry-After", ["7", "9"]);
        res.setHeader("X-Many", ["a", "b"]);
        res.end("ok");
      } else if (path === "/trickle") {
        // Eight chunks 50 ms apart: slow, but never idle for long.
        res.writeHead(200, { "Content-Length": "8" });
        let sent = 0;
        const timer = setInterval(() => {
          res.write("x");
          sent += 1;
          if (sent === 8) {
            clearInterval(timer);
            res.end();
          }
        }, 50);
      } else if (path === "/interim") {
        // 102 Processing first, then the answer.
        res.writeProcessing();
        setTimeout(() => res.end("final"), 20);
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
    expect(echoed.headers["user-agent"]).toMatch(/^kreditcheck-receiver\/\d+\.\d+\.\d+$/);
    await close();
  });

  it("times out a request that gets no answer, as a timeout", async () => {
    const { http, close } = transport(150);
    const started = Date.now();
    const error = await failure(http.get(`${base}/hang`));
    expect(isTimeout(error)).toBe(true);
    expect(error.message).toBe("timeout of 150ms exceeded");
    // undici checks its timeouts on a coarse clock (about every half second).
    expect(Date.now() - started).toBeLessThan(2500);
    await close();
  });

  it("times out a body that stops half-way, but not one that keeps coming slowly (idle timeout, as axios)", async () => {
    const { http, close } = transport(150);
    const error = await failure(http.get(`${base}/slow-body`));
    expect(isTimeout(error)).toBe(true);
    const slow = await http.get(`${base}/trickle`);
    expect(slow.data).toBe("xxxxxxxx");
    await close();
  });

  it("drops a UTF-8 byte order mark from text, as axios' own adapter did", async () => {
    const { http, close } = transport();
    expect((await http.get(`${base}/bom`)).data).toBe('{"id":"kc-1"}');
    await close();
  });

  it("keeps the first of a repeated single-value header and joins the others, as Node does", async () => {
    const { http, close } = transport();
    const response = await http.get(`${base}/twice`);
    expect(response.headers["retry-after"]).toBe("7");
    expect(response.headers["x-many"]).toBe("a, b");
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

  it("waits past an interim 1xx answer for the final one", async () => {
    const { http, close } = transport();
    const answer = await http.get(`${base}/interim`);
    expect(answer.status).toBe(200);
    expect(answer.data).toBe("final");
    await close();
  });

  it("keeps serving after aborted requests (their sockets are not left half-used)", async () => {
    const { http, close } = transport(5000);
    const controllers = Array.from({ length: 4 }, () => new AbortController());
    const aborted = controllers.map((controller) =>
      failure(http.get(`${base}/hang`, { signal: controller.signal })),
    );
    setTimeout(() => {
      for (const controller of controllers) controller.abort();
    }, 50);
    for (const error of await Promise.all(aborted)) expect(isCanceled(error)).toBe(true);
    // maxSockets is 4: each of these needs a socket the aborted ones held.
    const answers = await Promise.all(Array.from({ length: 8 }, () => http.get(`${base}/json`)));
    expect(answers.map((answer) => answer.status)).toEqual(Array(8).fill(200));
    await close();
  });

  it("refuses a body it cannot send without leaving a listener on the caller's signal", async () => {
    const { http, close } = transport();
    const controller = new AbortController();
    const error = await failure(
      http.post(`${base}/echo`, new Map([["a", 1]]), {
        signal: controller.signal,
        transformRequest: [(data: unknown) => data],
      }),
    );
    expect(error.message).toMatch(/only string or byte bodies/);
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    await close();
  });

  it("refuses a body over maxContentLength", async () => {
    const { http, close } = transport();
    const error = await failure(http.get(`${base}/big`, { maxContentLength: 1000 }));
    expect(error.message).toBe("maxContentLength size of 1000 exceeded");
    expect((await http.get(`${base}/big`)).data).toHaveLength(10_000);
    await close();
  });

  it("hands on the first readAtMost bytes of a body and its status, leaving the rest unread", async () => {
    const { http, close } = transport();
    const config = { readAtMost: 1000 } as AxiosRequestConfig & ReadAtMost;
    const answer = await http.get(`${base}/big`, config);
    expect(answer.status).toBe(200);
    expect(answer.data).toHaveLength(1000);
    // The connection it left is not reused half-read: the next request gets all of its body.
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
    const dispatchers = createDispatchers({ connections: 2, connectTimeoutMs: 1000 });
    const plain = axios.create({ adapter: createUndiciAdapter(dispatchers) });
    const error = await failure(plain.get(`${base}/status/503`));
    expect(error.message).toBe("Request failed with status code 503");
    expect(error.response?.status).toBe(503);
    expect(error.response?.data).toBe("busy");
    await dispatchers.destroy();
  });
});

describe("HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY (axios' rules)", () => {
  /** A forward proxy: forwards plain requests, tunnels CONNECT, and notes what it was asked. */
  let proxy: Server;
  let proxyUrl: string;
  const seen: string[] = [];

  beforeAll(async () => {
    proxy = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      const upstream = httpRequest(
        req.url ?? "",
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    proxy.on("connect", (req, client: Socket, head: Buffer) => {
      seen.push(`CONNECT ${req.url}`);
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

  /** The proxies as the service reads them from these variables. */
  function proxiesOf(env: Record<string, string>): EgressProxies {
    return loadConfig({ FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret", ...env }).proxies;
  }

  /** What the proxy saw of one GET with the proxies these variables configure. */
  async function getWith(env: Record<string, string>): Promise<string[]> {
    seen.length = 0;
    const { http, close } = createTransport({
      timeoutMs: 2000,
      maxSockets: 4,
      proxies: proxiesOf(env),
    });
    const response = await http.get(`${base}/json`);
    expect(response.data).toBe('{"a":"ä","b":[1,2]}');
    await close();
    return [...seen];
  }

  it("sends an http URL to HTTP_PROXY as a plain request (no CONNECT tunnel)", async () => {
    expect(await getWith({ HTTP_PROXY: proxyUrl })).toEqual([`GET ${base}/json`]);
  });

  it("uses ALL_PROXY, and accepts a proxy written without a scheme", async () => {
    expect(await getWith({ ALL_PROXY: proxyUrl })).toEqual([`GET ${base}/json`]);
    expect(await getWith({ http_proxy: new URL(proxyUrl).host })).toEqual([`GET ${base}/json`]);
  });

  it("goes direct for hosts in NO_PROXY, for an http URL when only HTTPS_PROXY is set, and without any proxy variable", async () => {
    expect(await getWith({ HTTP_PROXY: proxyUrl, NO_PROXY: "127.0.0.1" })).toEqual([]);
    expect(await getWith({ HTTPS_PROXY: proxyUrl })).toEqual([]);
    expect(await getWith({})).toEqual([]);
  });

  it("takes the lower-case variable first, and a blank one as unset, as the config reads them", async () => {
    const unused = "http://127.0.0.1:1";
    expect(await getWith({ http_proxy: proxyUrl, HTTP_PROXY: unused })).toEqual([
      `GET ${base}/json`,
    ]);
    expect(await getWith({ HTTP_PROXY: " ", ALL_PROXY: "\t" })).toEqual([]);
  });

  it("reads no proxy from process.env: the config hands them over", async () => {
    const saved = process.env.HTTP_PROXY;
    process.env.HTTP_PROXY = proxyUrl;
    try {
      seen.length = 0;
      const { http, close } = transport();
      expect((await http.get(`${base}/json`)).status).toBe(200);
      await close();
      expect(seen).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.HTTP_PROXY;
      else process.env.HTTP_PROXY = saved;
    }
  });

  it("matches NO_PROXY as proxy-from-env does: exact hosts, .suffix and *.suffix, ports, *", async () => {
    const via = (url: string, noProxy: string) =>
      createDispatchers({
        connections: 1,
        connectTimeoutMs: 1000,
        proxies: proxiesOf({ HTTPS_PROXY: "http://proxy.internal:3128", no_proxy: noProxy }),
      }).forUrl(url).proxy?.variable;
    expect(via("https://api.example.com/x", "example.com")).toBe("HTTPS_PROXY");
    expect(via("https://example.com/x", "example.com")).toBeUndefined();
    expect(via("https://api.example.com/x", ".example.com")).toBeUndefined();
    expect(via("https://api.example.com/x", "*.example.com")).toBeUndefined();
    expect(via("https://API.Example.com/x", "other.org, *.EXAMPLE.com")).toBeUndefined();
    expect(via("https://example.com:8443/x", "example.com:443")).toBe("HTTPS_PROXY");
    expect(via("https://example.com/x", "example.com:443")).toBeUndefined();
    expect(via("https://[::1]:8443/x", "[::1]")).toBeUndefined();
    expect(via("https://anything.example/x", "*")).toBeUndefined();
  });
});
