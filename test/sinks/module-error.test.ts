import { describe, expect, it } from "vitest";
import { ReceiverError } from "../../src/errors.js";
import { moduleSinkError } from "../../src/sinks/module-error.js";

describe("a module sink's thrown error, read by its properties", () => {
  it("keeps a plain error retryable as unexpected_error, its causes in the message", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9000"), {
      code: "ECONNREFUSED",
    });
    const error = moduleSinkError(new Error("fetch failed", { cause: refused }));
    expect(error).toMatchObject({
      code: "unexpected_error",
      retryable: true,
      fix: undefined,
      retryAfterMs: undefined,
      message: "fetch failed (cause: connect ECONNREFUSED 127.0.0.1:9000)",
    });
    expect(moduleSinkError("a string").describe()).toBe("unexpected_error: a string");
  });

  it("takes retryable: false, a code of lower-case words, a fix and retryAfterMs", () => {
    const error = moduleSinkError(
      Object.assign(new Error("schema mismatch"), {
        code: "queue_rejected",
        retryable: false,
        fix: " upgrade the consumer ",
        retryAfterMs: 5000,
      }),
    );
    expect(error).toMatchObject({
      code: "queue_rejected",
      retryable: false,
      fix: "upgrade the consumer",
      retryAfterMs: 5000,
    });
    expect(error.codes).toEqual(["queue_rejected"]);
  });

  it("ignores what is not one of those: Node's upper-case codes, a truthy non-boolean, a bad wait", () => {
    const error = moduleSinkError(
      Object.assign(new Error("x"), { code: "23505", retryable: "no", retryAfterMs: Number.NaN }),
    );
    expect(error).toMatchObject({ code: "unexpected_error", retryable: true });
    expect(error.retryAfterMs).toBeUndefined();
    expect(moduleSinkError(Object.assign(new Error("x"), { retryAfterMs: -5 })).retryAfterMs).toBe(
      0,
    );
  });

  it("passes the service's own error on as it is", () => {
    const own = new ReceiverError("full", { code: "http_sink_rejected", retryable: false });
    expect(moduleSinkError(own)).toBe(own);
  });
});
