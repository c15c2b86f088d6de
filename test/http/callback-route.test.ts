import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

/** The 415 a refused charset gets, naming it. */
const charsetRefused = (charset: string) => ({
  status: 415,
  body: {
    error: "unsupported_charset",
    details: [{ message: `unsupported charset "${charset}"; send the JSON as UTF-8` }],
  },
});

describe("POST /callbacks/kreditcheck", () => {
  let harness: Harness;
  beforeAll(async () => {
    // The worker is off: these tests look at what the door stores, not at processing.
    harness = await startHarness({ service: { worker: false } });
  });
  afterAll(async () => harness.close());

  const stored = async () => (await harness.service.inbox.list({ limit: 1000 })).length;

  it("stores a valid callback before answering 202 with the job id", async () => {
    const callback = makeCallback({ someFutureField: { nested: true } });
    const response = await harness.post(callback);
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ accepted: true, duplicate: false, id: expect.any(String) });
    const job = await harness.service.inbox.get(response.body.id as string);
    expect(job?.state).toBe("pending");
    // Unknown fields are kept: finAPI may add some.
    expect(job?.callback).toEqual(callback);
    // Its log line names the check by every id someone may quote: the mandator's too.
    expect(
      harness.logs
        .lines()
        .find((line) => line.msg === "callback accepted" && line.jobId === response.body.id),
    ).toMatchObject({
      processToken: callback.processToken,
      kreditCheckId: callback.kreditCheckId,
      clientReference: callback.clientReference,
    });
  });

  it("takes a body of exactly the 64 KiB limit, and refuses one byte more with 413", async () => {
    const limit = harness.config.http.bodyLimitBytes;
    /** A valid callback whose JSON is `bytes` long, padded in clientReference. */
    const bodyOf = (bytes: number) => {
      const callback = makeCallback({ clientReference: "" });
      const padding = bytes - JSON.stringify(callback).length;
      return JSON.stringify({ ...callback, clientReference: "x".repeat(padding) });
    };
    // Plain JSON takes the fast path; another JSON type goes through Express's body parser.
    for (const contentType of ["application/json", "application/vnd.example+json"]) {
      const post = (body: string) =>
        fetch(`${harness.service.url}${harness.config.http.callbackPath}`, {
          method: "POST",
          headers: { "Content-Type": contentType },
          body,
        });
      const atLimit = bodyOf(limit);
      expect(Buffer.byteLength(atLimit)).toBe(65_536);
      expect({ contentType, status: (await post(atLimit)).status }).toEqual({
        contentType,
        status: 202,
      });
      expect({ contentType, status: (await post(bodyOf(limit + 1))).status }).toEqual({
        contentType,
        status: 413,
      });
    }
  });

  it("matches the path as Express routes do: letter case aside, a trailing slash and a query ignored", async () => {
    const post = (path: string) =>
      fetch(`${harness.service.url}${path}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(makeCallback()),
      });
    for (const path of [
      "/CALLBACKS/KREDITCHECK",
      "/callbacks/kreditcheck/",
      "/callbacks/kreditcheck?x=1",
    ]) {
      expect((await post(path)).status, path).toBe(202);
    }
    for (const path of ["/callbacks/kreditchecks", "/callbacks", "/callbacks/kreditcheck/x"]) {
      expect((await post(path)).status, path).toBe(404);
    }
  });

  it("answers a repeated callback with duplicate: true and the same job, storing nothing new", async () => {
    const callback = makeCallback();
    const first = await harness.post(callback);
    const before = await stored();
    const second = await harness.post({ ...callback, status: "SUCCESSFUL" });
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ accepted: true, duplicate: true, id: first.body.id });
    expect(await stored()).toBe(before);
    // The same callback again (a sender's retry, even one that leaves a null field out) is
    // no news: no warning.
    const { errorMessage: _left, ...withoutNull } = callback;
    expect((await harness.post(withoutNull)).body).toMatchObject({ duplicate: true });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(harness.logs.text()).not.toContain("differs from the stored one");
  });

  it("warns when a repeated callback's status differs from a stored SUCCESSFUL one, which stands", async () => {
    const callback = makeCallback();
    const first = await harness.post(callback);
    const second = await harness.post({ ...callback, status: "FAILED", errorMessage: "late" });
    expect(second.body).toEqual({ accepted: true, duplicate: true, id: first.body.id });
    const warning = await waitFor(
      () =>
        harness.logs
          .lines()
          .find((line) => String(line.msg).includes("differs from the stored one")),
      "the warning",
    );
    expect(warning).toMatchObject({
      level: 40,
      jobId: first.body.id,
      differs: ["status", "errorMessage"],
      storedStatus: "SUCCESSFUL",
      status: "FAILED",
    });
    expect((await harness.service.inbox.get(String(first.body.id)))?.callback.status).toBe(
      "SUCCESSFUL",
    );
  });

  it("lets a SUCCESSFUL callback replace a stored FAILED one of the same check: its job runs again with it", async () => {
    const callback = makeCallback({ status: "FAILED", errorMessage: "bank timed out" });
    const first = await harness.post(callback);
    const jobId = String(first.body.id);
    const second = await harness.post({ ...callback, status: "SUCCESSFUL", errorMessage: null });
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ accepted: true, duplicate: false, id: jobId });
    expect(await harness.service.inbox.get(jobId)).toMatchObject({
      state: "pending",
      callback: { status: "SUCCESSFUL", errorMessage: null },
    });
    const accepted = harness.logs
      .lines()
      .find((line) => String(line.msg).includes("replaces the check's stored callback"));
    expect(accepted).toMatchObject({ jobId, replacedStatus: "FAILED", status: "SUCCESSFUL" });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const warned = harness.logs
      .lines()
      .filter(
        (line) => line.jobId === jobId && String(line.msg).includes("differs from the stored"),
      );
    expect(warned).toEqual([]);
  });

  it("accepts application/json with a charset, nulls for the optional fields and unknown statuses", async () => {
    const response = await harness.post(
      makeCallback({ status: "SOMETHING_NEW", clientReference: null, errorMessage: null }),
      { "Content-Type": "application/json; charset=utf-8" },
    );
    expect(response.status).toBe(202);
    const job = await harness.service.inbox.get(response.body.id as string);
    expect(job?.callback.status).toBe("SOMETHING_NEW");
    // "utf8" names UTF-8 too.
    for (const type of ["application/json; charset=utf8", 'application/json;charset="UTF8"']) {
      expect((await harness.post(makeCallback(), { "Content-Type": type })).status).toBe(202);
    }
  });

  it("takes a gzip body and any application/*+json type; names a refused charset or encoding", async () => {
    const zipped = await harness.post(gzipSync(JSON.stringify(makeCallback())), {
      "Content-Encoding": "gzip",
    });
    expect(zipped.status).toBe(202);
    const typed = await harness.post(makeCallback(), {
      "Content-Type": "application/vnd.finapi.callback+json",
    });
    expect(typed.status).toBe(202);

    const before = await stored();
    const latin1 = await harness.post(makeCallback(), {
      "Content-Type": "application/json; charset=latin1",
    });
    expect(latin1).toEqual(charsetRefused("latin1"));
    // Valid in its charset, but JSON between systems is UTF-8.
    const utf16 = await harness.post(Buffer.from(JSON.stringify(makeCallback()), "utf16le"), {
      "Content-Type": "application/json; charset=UTF-16LE",
    });
    expect(utf16).toEqual(charsetRefused("utf-16le"));
    const compressed = await harness.post(makeCallback(), { "Content-Encoding": "compress" });
    expect(compressed.status).toBe(415);
    expect(compressed.body).toMatchObject({
      error: "unsupported_encoding",
      details: [{ message: expect.stringContaining('"compress"') }],
    });
    const notGzip = await harness.post(makeCallback(), { "Content-Encoding": "gzip" });
    expect(notGzip.status).toBe(400);
    expect(notGzip.body).toMatchObject({
      error: "invalid_encoding",
      details: [{ message: expect.stringContaining("not valid gzip data") }],
    });
    expect(await stored()).toBe(before);
  });

  it("refuses a body that repeats a key, naming it, instead of keeping the last value", async () => {
    const before = await stored();
    const repeated = await harness.post(
      '{"processToken":"pt-a","kreditCheckId":"kc-a","processToken":"pt-b","status":"SUCCESSFUL"}',
    );
    expect(repeated).toEqual({
      status: 400,
      body: {
        error: "duplicate_key",
        details: [
          {
            field: "processToken",
            message: "appears more than once in one object: send each key once",
          },
        ],
      },
    });
    // Broken JSON that also repeats a key is reported as broken.
    const broken = await harness.post('{"processToken":"a","processToken":"b",');
    expect(broken).toMatchObject({ status: 400, body: { error: "invalid_json" } });
    expect(await stored()).toBe(before);
  });

  it("keeps an unknown field nested up to the depth limit (32 levels), and refuses one level more", async () => {
    const nested = (levels: number): unknown =>
      Array.from({ length: levels }).reduce<unknown>((inner) => [inner], "x");
    // The callback object is level 0, so the innermost of 31 arrays is level 31: the 32nd level.
    const deepest = makeCallback({ extra: nested(31) });
    const kept = await harness.post(deepest);
    expect(kept.status).toBe(202);
    expect((await harness.service.inbox.get(kept.body.id as string))?.callback).toEqual(deepest);
    const refused = await harness.post(makeCallback({ extra: nested(32) }));
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      error: "invalid_callback",
      details: [{ message: expect.stringContaining("deeper than 32 levels") }],
    });
  });

  it("accepts a callback without clientReference and errorMessage", async () => {
    const { clientReference: _c, errorMessage: _e, ...minimal } = makeCallback();
    expect((await harness.post(minimal)).status).toBe(202);
  });

  const invalidBodies: [string, Record<string, unknown> | unknown[], string[]][] = [
    ["missing processToken", { kreditCheckId: "kc-1", status: "SUCCESSFUL" }, ["processToken"]],
    ["missing kreditCheckId and status", { processToken: "pt-1" }, ["kreditCheckId", "status"]],
    ["a path-traversal processToken", makeCallback({ processToken: "../x" }), ["processToken"]],
    [
      "an encoded traversal kreditCheckId",
      makeCallback({ kreditCheckId: "%2e%2e%2f" }),
      ["kreditCheckId"],
    ],
    ["a kreditCheckId of two dots", makeCallback({ kreditCheckId: ".." }), ["kreditCheckId"]],
    [
      "a processToken with a NUL byte",
      makeCallback({ processToken: "a\u0000b" }),
      ["processToken"],
    ],
    [
      "a clientReference with a NUL byte",
      makeCallback({ clientReference: "a\u0000b" }),
      ["clientReference"],
    ],
    [
      "an unknown field with a NUL byte deep inside",
      makeCallback({ extra: { list: ["ok", "x\u0000"] } }),
      ["extra.list.1"],
    ],
    [
      "an errorMessage with half of a surrogate pair",
      makeCallback({ errorMessage: "broken \ud83d" }),
      ["errorMessage"],
    ],
    [
      "a processToken of 129 characters",
      makeCallback({ processToken: "a".repeat(129) }),
      ["processToken"],
    ],
    ["an empty kreditCheckId", makeCallback({ kreditCheckId: "" }), ["kreditCheckId"]],
    ["a numeric processToken", makeCallback({ processToken: 42 }), ["processToken"]],
    ["an empty status", makeCallback({ status: "" }), ["status"]],
    ["a numeric clientReference", makeCallback({ clientReference: 7 }), ["clientReference"]],
    ["an object errorMessage", makeCallback({ errorMessage: { a: 1 } }), ["errorMessage"]],
    ["an array body", [makeCallback()], ["(body)"]],
  ];

  it.each(invalidBodies)(
    "rejects %s with 400 invalid_callback naming the field, storing nothing",
    async (_name, body, fields) => {
      const before = await stored();
      const response = await harness.post(body);
      expect(response.status).toBe(400);
      expect(response.body.error).toBe("invalid_callback");
      const named = (response.body.details as { field: string }[]).map((detail) => detail.field);
      expect(named.sort()).toEqual([...fields].sort());
      expect(await stored()).toBe(before);
    },
  );

  it("rejects a non-JSON content type with 415", async () => {
    const before = await stored();
    const response = await harness.post(JSON.stringify(makeCallback()), {
      "Content-Type": "text/plain",
    });
    expect(response.status).toBe(415);
    expect(response.body.error).toBe("unsupported_media_type");
    const form = await harness.post("processToken=a&kreditCheckId=b&status=SUCCESSFUL", {
      "Content-Type": "application/x-www-form-urlencoded",
    });
    expect(form.status).toBe(415);
    expect(await stored()).toBe(before);
  });

  it("rejects broken and truncated JSON with 400 invalid_json", async () => {
    const before = await stored();
    for (const body of ['{"processToken": "a",', "{not json}", "nul"]) {
      const response = await harness.post(body);
      expect(response.status, body).toBe(400);
      expect(response.body.error, body).toBe("invalid_json");
    }
    expect(await stored()).toBe(before);
  });

  it("rejects JSON that is not an object as an invalid callback, saying what it expected", async () => {
    const before = await stored();
    for (const body of ['"just a string"', "null", "42"]) {
      const response = await harness.post(body);
      expect(response.status, body).toBe(400);
      expect(response.body.error, body).toBe("invalid_callback");
      expect(JSON.stringify(response.body.details), body).toMatch(/expected object/);
    }
    expect(await stored()).toBe(before);
  });

  it("refuses a number a JavaScript number cannot hold, naming it, and keeps one it holds as sent", async () => {
    const before = await stored();
    const sent = (extra: string) =>
      `${JSON.stringify(makeCallback()).slice(0, -1)},"extra":${extra}}`;
    for (const [extra, field, message] of [
      ['{"list":[1,12345678901234567891]}', "extra.list.1", /integer beyond ±9007199254740991/],
      ["1e400", "extra", /too large .* stored as null/],
      ["-1e-400", "extra", /too small .* stored as 0/],
    ] as const) {
      const response = await harness.post(sent(extra));
      expect(response.status, extra).toBe(400);
      expect(response.body.error, extra).toBe("invalid_callback");
      expect(response.body.details, extra).toEqual([
        { field, message: expect.stringMatching(message) },
      ]);
    }
    expect(await stored()).toBe(before);
    // What a double holds is kept as sent.
    const held = sent("[9007199254740991,-9007199254740991,1e308,5e-324,0e-400,-0.5,1.5e-300]");
    const response = await harness.post(held);
    expect(response.status).toBe(202);
    const job = await harness.service.inbox.get(response.body.id as string);
    expect(job?.callback).toEqual(JSON.parse(held));
  });

  it("rejects a body over 64 KiB with 413", async () => {
    const before = await stored();
    const response = await harness.post(makeCallback({ padding: "x".repeat(65 * 1024) }));
    expect(response.status).toBe(413);
    expect(response.body.error).toBe("payload_too_large");
    expect(await stored()).toBe(before);
  });

  it("answers other methods with 405 and unknown routes with 404, as JSON", async () => {
    const get = await fetch(`${harness.service.url}${harness.config.http.callbackPath}`);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");
    const other = await fetch(`${harness.service.url}/nothing-here`, { method: "POST" });
    expect(other.status).toBe(404);
    expect(await other.json()).toEqual({ error: "not_found", details: expect.any(Array) });
    expect(get.headers.get("x-powered-by")).toBeNull();
  });

  it("keeps serving after every kind of bad input", async () => {
    expect((await harness.post(makeCallback())).status).toBe(202);
  });
});

describe("when the inbox cannot be written", () => {
  it("answers 503 with Retry-After, never a 4xx or a 202", async () => {
    const harness = await startHarness({ service: { worker: false } });
    try {
      await harness.service.inbox.close();
      const response = await fetch(`${harness.service.url}${harness.config.http.callbackPath}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(makeCallback()),
      });
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toBe("5");
      expect(((await response.json()) as { error: string }).error).toBe("store_unavailable");
    } finally {
      await harness.close();
    }
  });
});

describe("field messages", () => {
  it("say 'is required' for a missing field and 'must be a string' for a wrong type", async () => {
    const harness = await startHarness({ service: { worker: false } });
    try {
      const response = await harness.post({ processToken: 5, status: "SUCCESSFUL" });
      expect(response.body.details).toEqual(
        expect.arrayContaining([
          { field: "kreditCheckId", message: "is required" },
          { field: "processToken", message: "must be a string" },
        ]),
      );
    } finally {
      await harness.close();
    }
  });
});
