import { ReceiverError } from "../errors.js";
import { type Bundle, bundleToJson, type DeliveryContext, type Sink } from "./sink.js";

/** Errors after which this stream takes nothing more in this process. */
const GONE = new Set(["EPIPE", "ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END"]);

/**
 * One bundle per line on standard output, for piping into another program (documents as
 * base64). A bundle counts as delivered once its line is handed to the operating system.
 *
 * When the reading program goes away (`| jq` quit, `| head` had enough), writing says
 * EPIPE. A stream without an `error` listener would throw that and stop the service; here
 * it fails the delivery instead (retryable) and the service goes on accepting callbacks.
 * pino's own stdout stream ignores EPIPE. Another error (a full disk behind `>> file`)
 * fails only that delivery. A reader that stops reading without quitting fills the pipe
 * and the write waits: the job's signal (shutdown, lease lost) ends that wait.
 */
export class StdoutSink implements Sink {
  readonly name = "stdout";
  private gone: Error | undefined;
  private readonly onError = (error: NodeJS.ErrnoException) => {
    if (GONE.has(error.code ?? "")) this.gone = error;
  };

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    out.on("error", this.onError);
  }

  deliver(bundle: Bundle, ctx?: DeliveryContext): Promise<void> {
    if (this.gone) return Promise.reject(goneError(this.gone));
    const signal = ctx?.signal;
    if (signal?.aborted) return Promise.reject(abortedError(signal));
    const line = `${JSON.stringify({ type: "kreditcheck.bundle", bundle: bundleToJson(bundle) })}\n`;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortedError(signal as AbortSignal));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.out.write(line, (error?: NodeJS.ErrnoException | null) => {
        signal?.removeEventListener("abort", onAbort);
        if (!error) return resolve();
        // The stream emits 'error' only after this callback: decide "gone" now.
        this.onError(error);
        reject(this.gone ? goneError(error) : writeError(error));
      });
    });
  }

  async close(): Promise<void> {
    this.out.off("error", this.onError);
  }
}

function goneError(cause: Error): ReceiverError {
  return new ReceiverError(`standard output is closed (${cause.message})`, {
    code: "stdout_closed",
    retryable: true,
    fix: "the program reading the service's standard output quit (e.g. `| jq` exited on a line it could not parse); restart the service with a reader that keeps running (or use SINKS=file), then `npm run cli -- retry --all-dead --code stdout_closed` for jobs that went dead meanwhile.",
    cause,
  });
}

function writeError(cause: Error): ReceiverError {
  return new ReceiverError(`standard output could not be written (${cause.message})`, {
    code: "stdout_write_failed",
    retryable: true,
    fix: "check where the service's standard output goes (a full disk, a closed file).",
    cause,
  });
}

function abortedError(signal: AbortSignal): ReceiverError {
  return new ReceiverError("the line was not written before the job was stopped", {
    code: "stdout_blocked",
    retryable: true,
    fix: "the program reading the service's standard output stopped reading (a paused pager, a blocked consumer); keep it reading.",
    cause: signal.reason,
  });
}
