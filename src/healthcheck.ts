import { localAdminUrl } from "./admin/cli-target.js";
import { loadEnvFile } from "./env-file.js";
import { cleanEnv } from "./env-values.js";
import { fetchFailureCause } from "./fetch-failure.js";

/**
 * The image's HEALTHCHECK (`node dist/healthcheck.js`): exits 0 when GET /healthz on this
 * container's admin port answers 200, 1 otherwise. The port is found as `npm run cli` finds
 * it, from ADMIN_HOST and ADMIN_PORT read as the service reads them (trimmed, an IPv6
 * literal bracketed or not, a wildcard reached on loopback): an inline probe that read them
 * raw called a healthy container with ADMIN_HOST=[::1] unhealthy. ADMIN_URL is not read:
 * it may name another service's admin API, and this probe is about this container.
 */

/** Below the HEALTHCHECK's --timeout (5 s): a service that stopped answering fails here. */
const TIMEOUT_MS = 3000;

// The .env the service reads (its working folder's), with the same precedence: a variable
// set in the environment wins. One that cannot be read stopped the service too: unhealthy,
// saying why (probing the default port instead blamed the wrong thing).
const unreadable = loadEnvFile();
if (unreadable) {
  process.stderr.write(`unhealthy: ${unreadable}\n`, () => process.exit(1));
} else probe();

// One line on failure: `docker inspect` shows it in the container's health log, which was
// empty before whatever the cause.
function probe(): void {
  let url: string;
  try {
    url = `${localAdminUrl(cleanEnv(process.env))}/healthz`;
  } catch (error) {
    // ADMIN_HOST/ADMIN_PORT the service would not have started with.
    process.stderr.write(`unhealthy: ${(error as Error).message}\n`, () => process.exit(1));
    return;
  }
  fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) }).then(
    (response) => {
      if (response.status === 200) process.exit(0);
      process.stderr.write(`unhealthy: GET ${url} answered ${response.status}\n`, () =>
        process.exit(1),
      );
    },
    (error: unknown) => {
      const reason =
        fetchFailureCause(error) ?? (error instanceof Error ? error.message : String(error));
      process.stderr.write(`unhealthy: GET ${url} failed: ${reason}\n`, () => process.exit(1));
    },
  );
}
