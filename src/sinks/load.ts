import type { Config } from "../config.js";
import { FileSink } from "./file.js";
import type { Sink } from "./sink.js";
import { StdoutSink } from "./stdout.js";

/** Builds the sinks named in SINKS, in order; an unknown name stops start-up. */
export function loadSinks(config: Config["sinks"]): Sink[] {
  const seen = new Set<string>();
  return config.names.map((name) => {
    if (seen.has(name)) throw new Error(`SINKS: "${name}" is listed twice`);
    seen.add(name);
    switch (name) {
      case "file":
        return new FileSink(config.fileDir);
      case "stdout":
        return new StdoutSink();
      default:
        throw new Error(`SINKS: unknown sink "${name}" (known: file, stdout)`);
    }
  });
}
