import { ReceiverError } from "../errors.js";
import { type Bundle, bundleToJson, type Sink } from "./sink.js";

/**
 * One bundle per line on standard output, for piping into another program (documents as
 * base64). A bundle counts as delivered once its line is handed to the operating system.
 *
 * When the reading program goes away (`| jq` quit, `| head` had enough), writing says
 * EPIPE. A stream without an `error` listener would throw that and stop the service; here
 * it fails the delivery instead (retryable: the job waits for a run whose output is read)
 * and the service goes on accepting callbacks. pino's own stdout stream ignores EPIPE.
 */
export class StdoutSink implements Sink {
  readonly name = "stdout";
  private broken: Error | undefined;

  constructor(private readonly out: NodeJS.WritableStream = process.stdout) {
    out.on("error", (error: Error) => {
      this.broken = error;
    });
  }

  deliver(bundle: Bundle): Promise<void> {
    if (this.broken) return Promise.reject(closedError(this.broken));
    const line = `${JSON.stringify({ type: "kreditcheck.bundle", bundle: bundleToJson(bundle) })}\n`;
    return new Promise((resolve, reject) => {
      this.out.write(line, (error?: Error | null) => {
        if (error) {
          this.broken = error;
          reject(closedError(error));
        } else resolve();
      });
    });
  }
}

function closedError(cause: Error): ReceiverError {
  return new ReceiverError(`standard output cannot be written (${cause.message})`, {
    code: "stdout_closed",
    retryable: true,
    fix: "the program reading the service's standard output stopped (e.g. `| jq` exited on a line it could not parse); restart the service with a reader that keeps running, or use SINKS=file.",
    cause,
  });
}
