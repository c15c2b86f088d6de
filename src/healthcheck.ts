import dotenv from "dotenv";
import { localAdminUrl } from "./admin/cli-target.js";
import { cleanEnv } from "./env-values.js";

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
// set in the environment wins.
dotenv.config({ quiet: true });

fetch(`${localAdminUrl(cleanEnv(process.env))}/healthz`, {
  signal: AbortSignal.timeout(TIMEOUT_MS),
}).then(
  (response) => process.exit(response.status === 200 ? 0 : 1),
  () => process.exit(1),
);
