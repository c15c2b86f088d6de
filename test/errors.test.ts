import { type AddressInfo, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { ReceiverError, toReceiverError } from "../src/errors.js";

describe("an unexpected error keeps what caused it", () => {
  it("names the reset connection behind a module sink's `fetch failed`", async () => {
    // Node's fetch says only "fetch failed"; what went wrong is its cause.
    const server = createServer((socket) => socket.resetAndDestroy());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    const thrown = await fetch(`http://127.0.0.1:${port}/`).then(
      () => undefined,
      (error: unknown) => error,
    );
    server.close();
    const error = toReceiverError(thrown);
    expect(error.code).toBe("unexpected_error");
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(
      /^fetch failed \(cause: (read ECONNRESET|connect ECONNRESET \S+|other side closed)\)$/,
    );
    expect(error.cause).toBe(thrown);
  });

  it("goes three causes deep, leaves out a cause that only repeats, and takes non-errors", () => {
    const innermost = new Error("disk full");
    const chain = new Error("a", {
      cause: new Error("b", { cause: new Error("c", { cause: innermost }) }),
    });
    expect(toReceiverError(chain).message).toBe("a (cause: b (cause: c (cause: disk full)))");
    const deeper = new Error("0", { cause: chain });
    expect(toReceiverError(deeper).message).toBe("0 (cause: a (cause: b (cause: c)))");
    const repeated = new Error("timeout", { cause: new Error("timeout") });
    expect(toReceiverError(repeated).message).toBe("timeout");
    expect(toReceiverError("plain text").message).toBe("plain text");
    expect(toReceiverError(new Error("", { cause: "why" })).message).toBe("why");
    // What Node's connect throws when every address of a host refused: no message, no cause.
    const refused = (address: string) =>
      Object.assign(new Error(`connect ECONNREFUSED ${address}`), { code: "ECONNREFUSED" });
    const everyAddress = Object.assign(
      new AggregateError([refused("::1:9000"), refused("127.0.0.1:9000")], ""),
      { code: "ECONNREFUSED" },
    );
    expect(toReceiverError(new TypeError("fetch failed", { cause: everyAddress })).message).toBe(
      "fetch failed (cause: connect ECONNREFUSED ::1:9000; connect ECONNREFUSED 127.0.0.1:9000)",
    );
    const codeOnly = Object.assign(new Error(""), { code: "ECONNRESET" });
    expect(toReceiverError(new Error("x", { cause: codeOnly })).message).toBe(
      "x (cause: ECONNRESET)",
    );
  });

  it("leaves a ReceiverError as it is", () => {
    const original = new ReceiverError("x", { code: "stdout_closed", retryable: false });
    expect(toReceiverError(original)).toBe(original);
  });
});
