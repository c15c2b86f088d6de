import { createHash } from "node:crypto";
import type { AxiosRequestConfig, AxiosResponse } from "axios";
import { ReceiverError } from "../errors.js";
import {
  createTransport,
  isCanceled,
  isTimeout,
  parseRetryAfter,
  proxyOf,
  type Transport,
} from "../http-transport.js";
import type { EgressProxies, ReadAtMost } from "../undici-adapter.js";
import type { Bundle, DeliveryContext, Sink } from "./sink.js";
import { signWebhook, webhookKey } from "./webhook-signature.js";

export interface HttpSinkOptions {
  url: string;
  secret: string;
  timeoutMs: number;
  /**
   * Connections to the receiver: as many as bundles can be posted at once (twice
   * WORKER_CONCURRENCY: a job frees its worker slot once everything is fetched, so a
   * slot's next job fetches while the previous one delivers), so that no post spends its
   * HTTP_SINK_TIMEOUT_MS waiting for a free one.
   */
  maxConnections: number;
  /** Egress proxies (HTTP_PROXY, …); without them the POSTs go direct. */
  proxies?: EgressProxies;
  clock?: () => number;
}

/** The most of a receiver's answer that is read (its status and start are what count). */
const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * POSTs each bundle as JSON (documents as base64) to HTTP_SINK_URL, signed the Standard
 * Webhooks way. 2xx is delivered; 408, 429, 5xx and network errors are retried (honouring
 * Retry-After); any other answer is permanent.
 */
export class HttpSink implements Sink {
  readonly name = "http";
  private readonly transport: Transport;
  private readonly key: Buffer;
  private readonly clock: () => number;

  constructor(private readonly options: HttpSinkOptions) {
    this.transport = createTransport({
      timeoutMs: options.timeoutMs,
      maxSockets: options.maxConnections,
      proxies: options.proxies,
    });
    this.key = webhookKey(options.secret);
    this.clock = options.clock ?? Date.now;
  }

  async deliver(bundle: Bundle, ctx: DeliveryContext): Promise<void> {
    const timestamp = Math.floor(this.clock() / 1000);
    const { body, id } = encodeBundle(bundle);
    // The whole post, answer included, within HTTP_SINK_TIMEOUT_MS: the transport's own
    // timeout is an idle one, so a receiver trickling its answer held a job for as long.
    const deadline = AbortSignal.timeout(this.options.timeoutMs);
    const signal = ctx.signal ? AbortSignal.any([ctx.signal, deadline]) : deadline;
    let response: AxiosResponse;
    try {
      // request(), not post(): one config merge less per bundle (see authorized-client.ts).
      response = await this.transport.http.request({
        url: this.options.url,
        method: "post",
        data: body,
        headers: {
          "Content-Type": "application/json",
          "webhook-id": id,
          "webhook-timestamp": String(timestamp),
          "webhook-signature": signWebhook(this.key, id, timestamp, body),
        },
        // The signed bytes go out as they are: a Buffer, which the socket takes without the
        // copy a string is encoded into.
        transformRequest: [(data: unknown) => data],
        // Only the status and the start of a refusal are used: a receiver's huge answer is
        // not read into memory, and its status still decides.
        readAtMost: MAX_ANSWER_BYTES,
        signal,
      } as AxiosRequestConfig & ReadAtMost);
    } catch (error) {
      // Stopped by the job (shutdown, lease lost), not by the deadline: handed back as is.
      if (isCanceled(error) && (ctx.signal?.aborted || !deadline.aborted)) throw error;
      const proxy = proxyOf(error);
      const via = proxy ? ` through the proxy in ${proxy.variable}` : "";
      if (isTimeout(error) || deadline.aborted) {
        // The limit is a setting: name it, so a slow receiver is not taken for a wrong URL.
        const also = proxy ? ` and the proxy in ${proxy.variable}` : "";
        throw new ReceiverError(
          `HTTP_SINK_URL did not answer within HTTP_SINK_TIMEOUT_MS=${this.options.timeoutMs} ms${via}`,
          {
            code: "http_sink_unreachable",
            retryable: true,
            fix: `if the receiver is slow, raise HTTP_SINK_TIMEOUT_MS; otherwise check HTTP_SINK_URL${also}.`,
            cause: error,
          },
        );
      }
      throw new ReceiverError(
        `HTTP_SINK_URL could not be reached${via}: ${(error as Error).message}`,
        { code: "http_sink_unreachable", retryable: true, cause: error },
      );
    }
    const { status } = response;
    if (status >= 200 && status < 300) {
      ctx.logger.info({ status, webhookId: id }, "bundle posted to the http sink");
      return;
    }
    const text = String(response.data ?? "")
      .slice(0, 300)
      .trim();
    const answer = `HTTP_SINK_URL answered ${status}${text ? `: ${text}` : " (no body)"}.`;
    if (status === 408 || status === 429 || status >= 500) {
      throw new ReceiverError(answer, {
        code: "http_sink_unavailable",
        retryable: true,
        retryAfterMs: parseRetryAfter(response.headers["retry-after"]),
      });
    }
    throw new ReceiverError(answer, {
      code: "http_sink_rejected",
      retryable: false,
      fix:
        status === 401 || status === 403
          ? "the receiver refused the signature: give it the same HTTP_SINK_SECRET, then retry the dead job."
          : "check HTTP_SINK_URL (a redirect is not followed) and what the receiver expects, then retry the dead job.",
    });
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}

/** Base64 is written this many document bytes at a time (a multiple of 3: no padding inside). */
const BASE64_CHUNK_BYTES = 3 * 1024 * 1024;

/** Text of the body, or a document's bytes to be written into it as base64. */
type Piece = string | Buffer;

/**
 * The bundle as the http sink posts it, `JSON.stringify(bundleToJson(bundle))` as UTF-8,
 * and its webhook id, with the documents held once more at most: as the body's bytes.
 * Stringified whole, a bundle with two 48 MiB documents was 128 MiB of base64 strings,
 * then a 128 MiB body string, a second 128 MiB string for the id and a third for the
 * signature, and the posted copy: four posts at once did not fit a 1 GiB heap. Written
 * member by member, JSON.stringify's own way (`{"key":value,...}` in key order, members
 * whose value JSON leaves out left out; a document `{"name":…,"contentType":…,"base64":"…"}`
 * as bundleToJson makes it, base64 needing no escapes), the bytes, the id and the
 * signature are those of earlier releases: receivers verify and drop repeats by them.
 */
function encodeBundle(bundle: Bundle): { body: Buffer; id: string } {
  const { documents, ...rest } = bundle;
  /** Each member of the bundle's JSON object, in order: documents last, as in bundleToJson. */
  const members: { key: string; pieces: Piece[] }[] = [];
  for (const [key, value] of Object.entries(rest)) {
    const text = JSON.stringify(value) as string | undefined;
    if (text !== undefined) members.push({ key, pieces: [text] });
  }
  if (documents) {
    const pieces: Piece[] = ["["];
    documents.forEach(({ name, contentType, data }, index) => {
      pieces.push(
        `${index > 0 ? "," : ""}{"name":${JSON.stringify(name)},"contentType":${JSON.stringify(contentType)},"base64":"`,
        data,
        '"}',
      );
    });
    pieces.push("]");
    members.push({ key: "documents", pieces });
  }
  const memberPieces = ({ key, pieces }: { key: string; pieces: Piece[] }, index: number) => [
    `${index > 0 ? "," : ""}${JSON.stringify(key)}:`,
    ...pieces,
  ];
  const bodyPieces: Piece[] = ["{", ...members.flatMap(memberPieces), "}"];
  const size = bodyPieces.reduce(
    (sum, piece) =>
      sum +
      (typeof piece === "string" ? Buffer.byteLength(piece) : Math.ceil(piece.length / 3) * 4),
    0,
  );
  const body = Buffer.allocUnsafe(size);
  /** Where each document's base64 went into the body: hashed from there for the id. */
  const written = new Map<Buffer, Buffer>();
  let offset = 0;
  for (const piece of bodyPieces) {
    if (typeof piece === "string") {
      offset += body.write(piece, offset);
      continue;
    }
    const start = offset;
    for (let at = 0; at < piece.length; at += BASE64_CHUNK_BYTES) {
      const chunk = piece.subarray(at, at + BASE64_CHUNK_BYTES).toString("base64");
      offset += body.write(chunk, offset, "latin1");
    }
    written.set(piece, body.subarray(start, offset));
  }
  return { body, id: webhookId(bundle, members, written) };
}

/**
 * Standard Webhooks: an id names one message, and a repeat of it keeps the id. Here the
 * message is the bundle's content: the kreditCheckId, then 16 hex digits of the SHA-256 of
 * the bundle without the times it was received and assembled, and of its problems only
 * what they are about (code, caseId, document): their texts name the request ids of the
 * calls that met them, new with every fetch. So a bundle sent again keeps
 * its id however it came to be sent again (a retry, a shutdown or crash before the outcome
 * was stored: the next attempt fetches anew), and one whose content changed (a report that
 * was missing, fetched once finAPI granted the scope) gets a new id that a receiver which
 * drops repeats does not drop.
 */
function webhookId(
  bundle: Bundle,
  members: readonly { key: string; pieces: readonly Piece[] }[],
  written: ReadonlyMap<Buffer, Buffer>,
): string {
  // The SHA-256 of JSON.stringify of the bundle's JSON less receivedAt and completedAt,
  // its problems cut down in place (the key keeps its position, so a bundle without
  // problems keeps the id an earlier release gave it), fed piece by piece: the documents'
  // base64 from the body, not stringified again.
  const hash = createHash("sha256").update("{");
  let first = true;
  for (const { key, pieces } of members) {
    if (key === "receivedAt" || key === "completedAt") continue;
    hash.update(`${first ? "" : ","}${JSON.stringify(key)}:`);
    first = false;
    if (key === "problems") {
      const problems = bundle.problems.map(({ code, caseId, document }) => ({
        code,
        caseId,
        document,
      }));
      hash.update(JSON.stringify(problems));
      continue;
    }
    for (const piece of pieces)
      hash.update(typeof piece === "string" ? piece : (written.get(piece) as Buffer));
  }
  const digest = hash.update("}").digest("hex").slice(0, 16);
  return `${bundle.callback.kreditCheckId}.${digest}`;
}
