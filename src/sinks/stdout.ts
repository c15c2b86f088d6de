import { type Bundle, bundleToJson, type Sink } from "./sink.js";

/** One bundle per line on standard output, for piping into another program (documents as base64). */
export class StdoutSink implements Sink {
  readonly name = "stdout";

  constructor(
    private readonly write: (line: string) => void = (line) => process.stdout.write(line),
  ) {}

  async deliver(bundle: Bundle): Promise<void> {
    this.write(`${JSON.stringify({ type: "kreditcheck.bundle", bundle: bundleToJson(bundle) })}\n`);
  }
}
