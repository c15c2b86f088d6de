import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import zlib from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const PATH = "/callbacks/kreditcheck";
const VALID = {
  processToken: "pt-valid",
  kreditCheckId: "kc-valid",
  status: "SUCCESSFUL",
  clientReference: "CU-1",
  errorMessage: null,
};

interface Case {
  name: string;
  body: string | Uint8Array;
  /** null: no Content-Type header at all. */
  contentType?: string | null;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  status: number;
  error?: string;
}

const withField = (field: string, value: unknown) => JSON.stringify({ ...VALID, [field]: value });
/** VALID with `field` set to `json` as written (stringify cannot write every number). */
const withRaw = (field: string, json: string) =>
  `${JSON.stringify(VALID).slice(0, -1)},${JSON.stringify(field)}:${json}}`;
const without = (field: string) =>
  JSON.stringify(Object.fromEntries(Object.entries(VALID).filter(([key]) => key !== field)));
const invalid = (name: string, body: string): Case => ({
  name,
  body,
  status: 400,
  error: "invalid_callback",
});
const brokenJson = (name: string, body: string): Case => ({
  name,
  body,
  status: 400,
  error: "invalid_json",
});

/** Ids become URL path segments and file names: each of these must be refused. */
const BAD_IDS: unknown[] = [
  1,
  0,
  -1,
  1.5,
  1e308,
  true,
  false,
  null,
  {},
  [],
  ["a"],
  { a: 1 },
  [["pt"]],
  "",
  ".",
  "..",
  "...",
  "../x",
  "..\\x",
  "../../etc/passwd",
  "a/../b",
  "./x",
  "x/..",
  "a/b",
  "a\\b",
  "/etc/passwd",
  "%2e%2e%2f",
  "%2E%2E%2F",
  "..%2f",
  "%2e%2e/",
  "..%5c",
  "%c0%ae%c0%ae/",
  "....//",
  "file:///etc/passwd",
  "\\\\server\\share",
  "C:\\x",
  "~",
  "~root",
  "a b",
  " x",
  "x ",
  "\t",
  "a\nb",
  "a\r\nb",
  "a\u0000b",
  "\u0000",
  "x\u0000.json",
  "ä",
  "․․／x",
  "😀",
  "<script>",
  "a;rm -rf /",
  "$(id)",
  "a?b",
  "a#b",
  "a%00b",
  "a*",
  "a:b",
  "x".repeat(129),
  "x".repeat(10_000),
];

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 20)}…${text.slice(-8)} (${text.length} chars)` : text;
}

function cases(): Case[] {
  const table: Case[] = [];
  for (const field of ["processToken", "kreditCheckId"]) {
    for (const value of BAD_IDS) {
      table.push(invalid(`${field} = ${shown(value)}`, withField(field, value)));
    }
  }
  for (const field of ["processToken", "kreditCheckId", "status"]) {
    table.push(invalid(`missing ${field}`, without(field)));
  }
  for (const value of [1, true, null, {}, [], ""]) {
    table.push(invalid(`status = ${JSON.stringify(value)}`, withField("status", value)));
  }
  for (const field of ["clientReference", "errorMessage"]) {
    for (const value of [1, true, {}, ["x"]]) {
      table.push(invalid(`${field} = ${JSON.stringify(value)}`, withField(field, value)));
    }
  }
  table.push(
    invalid("an empty object", "{}"),
    invalid("an empty body", ""),
    invalid("an array", "[]"),
    invalid("an array holding a valid callback", JSON.stringify([VALID])),
    invalid("an id nested 5,000 arrays deep", deep("processToken", 5000)),
    invalid("an id nested 20,000 arrays deep", deep("kreditCheckId", 20_000)),
    invalid("an object nested 5,000 deep", `${'{"a":'.repeat(5000)}1${"}".repeat(5000)}`),
    // Unknown fields are kept, so their depth is bounded: 20,000 levels parse, but would
    // overflow the stack when serialised for the inbox.
    invalid("an unknown field nested 20,000 arrays deep", deep("extra", 20_000)),
    invalid("an unknown field nested 32 arrays deep (33 levels in all)", deep("extra", 32)),
    // PostgreSQL cannot store U+0000: acknowledged, it would never reach a postgres sink.
    invalid("a NUL in clientReference", withField("clientReference", "a\u0000b")),
    invalid("a NUL in errorMessage", withField("errorMessage", "\u0000")),
    invalid("a NUL in an unknown field", withField("extra", { list: ["ok", "x\u0000"] })),
    invalid("a NUL in an unknown field's name", withField("ex\u0000tra", 1)),
    // Nor half of a surrogate pair (JSON can escape one; it is no Unicode character).
    invalid("a lone high surrogate in clientReference", withField("clientReference", "a\ud800b")),
    invalid("a lone low surrogate in an unknown field", withField("extra", ["\udc00"])),
    invalid("a swapped surrogate pair in errorMessage", withField("errorMessage", "\ude00\ud83d")),
    // Nor a number JSON.parse would change (rounded, Infinity stored as null, 0): it would
    // be acknowledged and stored other than sent.
    ...[
      "12345678901234567891",
      "9007199254740992",
      "-9007199254740993",
      "1e400",
      "-1E+309",
      "1e-400",
      "-1e-400",
      '{"list":[1,12345678901234567891]}',
    ].map((number) => invalid(`an unknown field holding ${number}`, withRaw("extra", number))),
    {
      ...invalid(
        "an unknown field holding 1e400, as application/vnd.api+json",
        withRaw("x", "1e400"),
      ),
      contentType: "application/vnd.api+json",
    },
    // It could not be kept: copying the callback would drop it after a 202.
    invalid(
      "a field named __proto__",
      `${JSON.stringify(VALID).slice(0, -1)},"__proto__":{"x":1}}`,
    ),
  );
  // JSON.parse would keep the last value of a repeated key without a word.
  const duplicates: [string, string][] = [
    [
      "twice, both values valid",
      '{"processToken":"a","processToken":"b","kreditCheckId":"k","status":"S"}',
    ],
    [
      "twice, the last a traversal",
      '{"processToken":"pt-ok","processToken":"../x","kreditCheckId":"kc-ok","status":"SUCCESSFUL"}',
    ],
    [
      "twice, the last an object",
      '{"processToken":"pt-ok","kreditCheckId":"kc-ok","kreditCheckId":{},"status":"SUCCESSFUL"}',
    ],
    [
      "twice, spelt with an escape",
      '{"processToken":"pt","\\u0070rocessToken":"pt2","kreditCheckId":"kc","status":"SUCCESSFUL"}',
    ],
    ["an unknown field twice", withField("extra", 1).replace('"extra":1', '"extra":1,"extra":2')],
    ["twice in a nested object", withField("extra", { a: 1 }).replace('"a":1', '"a":1,"a":2')],
    [
      "status twice, both SUCCESSFUL",
      `${JSON.stringify(VALID).slice(0, -1)},"status":"SUCCESSFUL"}`,
    ],
  ];
  for (const [name, body] of duplicates) {
    table.push({
      name: `a duplicate key: ${name}`,
      body,
      status: 400,
      error: "duplicate_key",
    });
  }
  // Valid JSON, but not an object: the schema refuses it, not the JSON parser.
  for (const body of ["null", "1", '"text"', "true"]) {
    table.push(invalid(`a bare JSON ${body}`, body));
  }
  const valid = JSON.stringify(VALID);
  for (const body of [
    "{",
    "}",
    '{"processToken":',
    "{'processToken':'x'}",
    "{processToken:1}",
    `${valid.slice(0, -1)},}`,
    `${valid}}`,
    '{"a":NaN}',
    '{"a":undefined}',
    "not json at all",
    `{"processToken":"a\u0000b"}`,
    `\u0000${valid}`,
  ]) {
    table.push(brokenJson(`broken JSON ${shown(body)}`, body));
  }
  for (let cut = 1; cut < valid.length; cut += 5) {
    table.push(brokenJson(`valid JSON truncated to ${cut} bytes`, valid.slice(0, cut)));
  }
  for (const contentType of [
    null,
    "text/plain",
    "text/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/jsonp",
    "json",
    "application/octet-stream",
  ]) {
    table.push({
      name: `Content-Type ${contentType ?? "missing"}`,
      body: contentType === null ? new TextEncoder().encode(valid) : valid,
      contentType,
      status: 415,
      error: "unsupported_media_type",
    });
  }
  // JSON between systems is UTF-8 (RFC 8259 §8.1); another charset is refused before
  // parsing, also when the bytes are valid in it (a repeated key would be checked in text
  // decoded differently from what the parser reads).
  const utf16le = (text: string) => new Uint8Array(Buffer.from(text, "utf16le"));
  const repeated = `${valid.slice(0, -1)},"status":"FAILED"}`;
  for (const [charset, body, what] of [
    ["utf-16", valid, "UTF-8 bytes"],
    ["utf-16le", utf16le(valid), "a valid callback in it"],
    ["utf-16le", utf16le(repeated), "a repeated key in it"],
    ["utf-16be", valid, "UTF-8 bytes"],
    ["utf-32", valid, "UTF-8 bytes"],
    ["utf-7", repeated, "a repeated key"],
    ["latin1", valid, "UTF-8 bytes"],
    ["iso-8859-1", valid, "UTF-8 bytes"],
    ["klingon", valid, "UTF-8 bytes"],
  ] as const) {
    table.push({
      name: `charset ${charset}, ${what}`,
      body,
      contentType: `application/json; charset=${charset}`,
      status: 415,
      error: "unsupported_charset",
    });
  }
  // Bytes that are no UTF-8 inside a string: refused, not stored as U+FFFD (a callback
  // acknowledged with text other than what was sent). Each way in: the fast path, the
  // Express route (another JSON media type), and an inflated body.
  const notUtf8 = Buffer.concat([
    Buffer.from(valid.slice(0, -1)),
    Buffer.from(',"comment":"a'),
    Buffer.from([0xff, 0xc3, 0x28]),
    Buffer.from('"}'),
  ]);
  for (const [way, body, contentType, headers] of [
    ["as finAPI sends it", notUtf8, undefined, undefined],
    ["as application/vnd.api+json", notUtf8, "application/vnd.api+json", undefined],
    ["gzipped", zlib.gzipSync(notUtf8), undefined, { "Content-Encoding": "gzip" }],
  ] as const) {
    table.push({
      name: `bytes that are not UTF-8, ${way}`,
      body: new Uint8Array(body),
      ...(contentType ? { contentType } : {}),
      ...(headers ? { headers } : {}),
      status: 400,
      error: "invalid_utf8",
    });
  }
  // zstd is inflated where Node has it (22.15+, 23.8+).
  const encodings = ["gzip", "deflate", "br", ...("createZstdDecompress" in zlib ? ["zstd"] : [])];
  for (const encoding of encodings) {
    table.push({
      name: `plain JSON declared as Content-Encoding ${encoding}`,
      body: valid,
      headers: { "Content-Encoding": encoding },
      status: 400,
      error: "invalid_encoding",
    });
  }
  table.push({
    name: "an unknown Content-Encoding",
    body: valid,
    headers: { "Content-Encoding": "x-unknown" },
    status: 415,
    error: "unsupported_encoding",
  });
  for (const size of [64 * 1024 + 1, 1024 * 1024, 5 * 1024 * 1024]) {
    table.push({
      name: `a body of ${size} bytes`,
      body: withField("clientReference", "x".repeat(size)),
      status: 413,
      error: "payload_too_large",
    });
  }
  for (const method of ["GET", "PUT", "PATCH", "DELETE"]) {
    table.push({
      name: `method ${method}`,
      method,
      body: method === "GET" ? "" : valid,
      status: 405,
      error: "method_not_allowed",
    });
  }
  for (const path of [`${PATH}/../x`, `${PATH}/x`, `${PATH}%2f..%2fx`, "/callbacks", "/"]) {
    table.push({ name: `path ${path}`, path, body: valid, status: 404, error: "not_found" });
  }
  return table;
}

/** The callback with `field` wrapped in `depth` arrays, built as text (stringify would recurse). */
function deep(field: string, depth: number): string {
  return withField(field, "DEEP").replace('"DEEP"', `${"[".repeat(depth)}"pt"${"]".repeat(depth)}`);
}

/** Sends raw bytes and returns what came back, and when, once the server closes. */
function rawExchange(
  port: number,
  head: string,
  bodyPart: string,
): Promise<{ response: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const socket = connect(port, "127.0.0.1", () => socket.write(head + bodyPart));
    let response = "";
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      response += chunk;
    });
    socket.on("close", () => resolve({ response, ms: Date.now() - startedAt }));
    socket.on("error", reject);
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error("the server never closed the stalled connection"));
    });
  });
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => relative(dir, join(entry.parentPath, entry.name)))
    .sort();
}

describe("bad input: malformed requests are refused without harm", () => {
  let harness: Harness;
  // The service runs in this process (a fork of its own, pool "forks"): it gets a private
  // TMPDIR (read by os.tmpdir() at each call) and working directory, both empty, so a file
  // it writes there is seen, and none that parallel test files write in /tmp is mistaken
  // for one of its own.
  const outside = { root: "", tmp: "", cwd: "" };
  const before = { tmpdir: process.env.TMPDIR, cwd: process.cwd() };
  beforeAll(async () => {
    outside.root = await mkdtemp(join(tmpdir(), "kcr-bad-input-"));
    outside.tmp = join(outside.root, "tmp");
    outside.cwd = join(outside.root, "cwd");
    await mkdir(outside.tmp);
    await mkdir(outside.cwd);
    process.env.TMPDIR = outside.tmp;
    process.chdir(outside.cwd);
    harness = await startHarness({ env: { REQUEST_TIMEOUT_MS: "500" } });
  });
  afterAll(async () => {
    await harness.close();
    process.chdir(before.cwd);
    if (before.tmpdir === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before.tmpdir;
    await rm(outside.root, { recursive: true, force: true });
  });

  const table = cases();

  it("has at least 200 cases", () => {
    expect(table.length).toBeGreaterThanOrEqual(200);
    const names = table.map((testCase) => testCase.name);
    expect(names.filter((name, index) => names.indexOf(name) !== index)).toEqual([]);
  });

  it("answers each of them with the right 4xx and stores nothing", async () => {
    const outcomes: string[] = [];
    for (const testCase of table) {
      const headers: Record<string, string> = { ...testCase.headers };
      if (testCase.contentType !== null) {
        headers["Content-Type"] = testCase.contentType ?? "application/json";
      }
      const method = testCase.method ?? "POST";
      const response = await fetch(`${harness.service.url}${testCase.path ?? PATH}`, {
        method,
        headers,
        body: method === "GET" ? undefined : testCase.body,
      });
      const answer = (await response.json().catch(() => ({}))) as { error?: string };
      const got = `${response.status} ${answer.error}`;
      const want = `${testCase.status} ${testCase.error}`;
      if (got !== want) outcomes.push(`${testCase.name}: got ${got}, want ${want}`);
    }
    expect(outcomes).toEqual([]);
    expect(await harness.service.inbox.countByState()).toEqual({
      pending: 0,
      running: 0,
      done: 0,
      dead: 0,
    });
  });

  it("refuses a POST with no body at all as an empty callback (400), not as the wrong type", async () => {
    const { response } = await rawExchange(
      harness.service.port,
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n`,
      "",
    );
    expect(response).toMatch(/^HTTP\/1\.1 400/);
    const body = JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4)) as {
      error: string;
      details: { message: string }[];
    };
    expect(body.error).toBe("invalid_callback");
    expect(body.details[0]?.message).toMatch(/no JSON body/);
    expect((await harness.service.inbox.countByState()).pending).toBe(0);
  });

  it("times out a sender that stalls in the middle of its body (408) and one that stalls in its headers", async () => {
    const stalledBody = await rawExchange(
      harness.service.port,
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n`,
      '{"processToken":"pt-slow",',
    );
    expect(stalledBody.response).toMatch(/^HTTP\/1\.1 408/);
    expect(stalledBody.ms).toBeLessThan(3000);
    // The log says what happened, not a 400 that never went out.
    const logged = await waitFor(
      () => harness.logs.lines().find((line) => line.reason === "request.aborted"),
      "the log line of the stalled body",
    );
    expect(logged.status).toBeUndefined();
    expect(String(logged.msg)).toContain("Node answered 408");
    const stalledHeaders = await rawExchange(
      harness.service.port,
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: appl`,
      "",
    );
    expect(stalledHeaders.response).toMatch(/^HTTP\/1\.1 408/);
    expect(stalledHeaders.ms).toBeLessThan(3000);
  });

  it("answers a body declared over the limit with 413 before reading it, and closes the connection", async () => {
    // 10 MB announced, nothing sent: before, the route waited for all of it (and answered
    // 408 when REQUEST_TIMEOUT_MS ran out), so a sender could hold the connection that long.
    const { response } = await rawExchange(
      harness.service.port,
      `POST ${PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n`,
      "",
    );
    expect(response).toMatch(/^HTTP\/1\.1 413/);
    expect(response).toMatch(/\r\nConnection: close\r\n/i);
    expect(JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4))).toMatchObject({
      error: "payload_too_large",
    });
    expect((await harness.service.inbox.countByState()).pending).toBe(0);
  });

  it("has written no file at all, inside or outside the result folder, and stays healthy", async () => {
    expect(await listFiles(harness.dir)).toEqual(["inbox.db", "inbox.db-shm", "inbox.db-wal"]);
    const answer = await harness.post(VALID);
    expect(answer.status).toBe(202);
    await harness.waitForBundle(VALID.kreditCheckId);
    expect(await listFiles(harness.dir)).toEqual([
      "inbox.db",
      "inbox.db-shm",
      "inbox.db-wal",
      "results/kc-valid.json",
    ]);
    expect(harness.simulator.stats().calls.kreditcheck).toBe(1);
    // Nor outside it: nothing in the temporary directory but the harness's own folder
    // (which holds the inbox and the results), and nothing in the working directory.
    expect(tmpdir()).toBe(outside.tmp);
    expect(harness.dir.startsWith(outside.tmp)).toBe(true);
    expect(await readdir(outside.tmp)).toEqual([basename(harness.dir)]);
    expect(await readdir(outside.cwd)).toEqual([]);
  });
});
