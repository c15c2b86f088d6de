import { connect } from "node:net";
import { describe, expect, it } from "vitest";
import { makeCallback, startHarness } from "../support/harness.js";

/**
 * Sends a callback's head with `Expect: 100-continue` and returns the first answer's head;
 * after a 100 it sends the body and returns the final answer's status line too.
 */
function expectContinue(
  port: number,
  path: string,
  body = JSON.stringify(makeCallback()),
): Promise<{ first: string; final: string | undefined }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () =>
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
      ),
    );
    let received = "";
    let first: string | undefined;
    socket.setEncoding("utf8").on("data", (chunk: string) => {
      received += chunk;
      if (first === undefined && received.includes("\r\n\r\n")) {
        first = received.slice(0, received.indexOf("\r\n"));
        received = received.slice(received.indexOf("\r\n\r\n") + 4);
        if (first.startsWith("HTTP/1.1 100")) socket.write(body);
      }
    });
    socket.on("close", () => {
      const final = received === "" ? undefined : received.slice(0, received.indexOf("\r\n"));
      resolve({ first: first ?? "", final });
    });
    socket.on("error", reject);
  });
}

describe("Expect: 100-continue", () => {
  it("invites the body only from an allowed address; a refused one gets its 403 at once", async () => {
    const open = await startHarness({ service: { worker: false } });
    const path = open.config.http.callbackPath;
    try {
      const allowed = await expectContinue(open.service.port, path);
      expect(allowed.first).toBe("HTTP/1.1 100 Continue");
      expect(allowed.final).toMatch(/^HTTP\/1\.1 202/);
      // Nor from an allowed address when the body declared is over the limit.
      const tooLarge = await expectContinue(open.service.port, path, "x".repeat(70_000));
      expect(tooLarge.first).toMatch(/^HTTP\/1\.1 413/);
    } finally {
      await open.close();
    }
    // Only 127.0.0.2 may call back: this test's requests come from 127.0.0.1.
    const closed = await startHarness({
      env: { ALLOWED_CIDRS: "127.0.0.2" },
      service: { worker: false },
    });
    try {
      const refused = await expectContinue(closed.service.port, path);
      expect(refused.first).toMatch(/^HTTP\/1\.1 403/);
      expect((await closed.service.inbox.countByState()).pending).toBe(0);
    } finally {
      await closed.close();
    }
  });
});
