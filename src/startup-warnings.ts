import type { Config } from "./config.js";
import type { Logger } from "./logger.js";

/**
 * Settings that start the service but probably not as meant: logged once at start, as
 * warnings, beside the config that caused them.
 */
export function warnAboutSettings(config: Config, logger: Logger): void {
  for (const name of config.finapi.unconfirmed) {
    logger.warn(
      { setting: name },
      "using a finAPI preset that public documentation does not confirm; override it if calls fail",
    );
  }
  if (config.http.callbackSecret !== undefined && config.http.callbackSecret.length < 16) {
    logger.warn("CALLBACK_SECRET is shorter than 16 characters: use 32+ random characters");
  }
  for (const { variable, meant, meantIsSet } of config.misspelt) {
    const applies = meantIsSet
      ? `${meant} is set too, and is what applies`
      : `${meant} keeps its default`;
    logger.warn(
      { variable, meant },
      `${variable} is set, but no variable of that name is read: did you mean ${meant}? ${applies}`,
    );
  }
  // An HTTP_SINK_URL without http in SINKS forwards nothing, and used to say nothing.
  // A module sink gets the whole config and may read them: then only no built-in sink does.
  const unused = config.sinks.names.some((name) => name.startsWith("module:"))
    ? "not used by a built-in sink"
    : "not used";
  for (const { sink, variables } of config.sinks.unusedSettings) {
    logger.warn(
      { variables, sinks: config.sinks.names },
      `${variables.join(", ")} ${variables.length === 1 ? "is" : "are"} set but SINKS does not name ${sink}: ${unused}; add ${sink} to SINKS (a comma list) if bundles should go there`,
    );
  }
}
