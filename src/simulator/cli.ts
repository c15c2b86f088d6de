import { CliError, parseCli, USAGE } from "./cli-args.js";
import { startSimulator } from "./server.js";

async function main(): Promise<void> {
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    // The one line that says what is wrong, last, where it is seen: not above 30 lines of help.
    console.error(`${err.message}\n(npm run simulator -- --help lists every option)`);
    process.exitCode = 2;
    return;
  }
  if (parsed.help) {
    console.log(USAGE);
    return;
  }

  const sim = await startSimulator(parsed.options);
  console.log(`finAPI simulator listening on ${sim.url}`);
  console.log(`  token URL:       ${sim.tokenUrl}`);
  console.log(`  ProcessCtrl URL: ${sim.processctrlUrl}`);
  console.log(`  DI URL:          ${sim.diUrl}`);
  console.log(`  client id:       ${sim.clientId}`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal} received, stopping`);
    void sim.close().then(() => {
      process.exitCode = 0;
    });
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

main().catch((err: unknown) => {
  const code = (err as { code?: string }).code;
  console.error(
    code === "EADDRINUSE"
      ? `simulator: ${(err as Error).message}: another process uses that port (an earlier simulator still running?); pick another with --port`
      : err,
  );
  process.exitCode = 1;
});
