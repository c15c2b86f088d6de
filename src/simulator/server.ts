import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createSimulatorListener, DI_BASE, PROCESSCTRL_BASE } from "./app.js";
import type { SimulatorFaults } from "./faults.js";
import type { LoggedRequest } from "./request-log.js";
import { createSimulatorState, type SimulatorState } from "./state.js";
import type { SimulatorStats } from "./stats.js";

export { createSimulatorApp, createSimulatorListener } from "./app.js";
export type { AccountShape, SimEndpoint, SimulatorFaults } from "./faults.js";
export type { LoggedRequest } from "./request-log.js";
export { createSimulatorState, type SimulatorState } from "./state.js";
export type { SimulatorStats } from "./stats.js";

export interface SimulatorOptions extends Partial<SimulatorFaults> {
  /** The token endpoint answers 503 (with Retry-After) for this long after start. */
  tokenDownForMs?: number;
  clientId?: string;
  clientSecret?: string;
  host?: string;
  port?: number;
}

/** The running server: the state's controls, plus its URLs and a way to stop it. */
export interface RunningSimulator
  extends Pick<SimulatorState, "setFaults" | "failNext" | "revokeToken" | "reset"> {
  url: string;
  tokenUrl: string;
  processctrlUrl: string;
  diUrl: string;
  clientId: string;
  clientSecret: string;
  stats(): SimulatorStats;
  /** Every token and data request with its arrival and answer times (bounded). */
  requests(): LoggedRequest[];
  /** Also ends hanging requests and idle keep-alive sockets, so a test run never waits on them. */
  close(): Promise<void>;
}

/** A wildcard bind address is not something a client can connect to. */
function urlHost(address: AddressInfo): string {
  if (address.address === "0.0.0.0") return "127.0.0.1";
  if (address.address === "::") return "[::1]";
  return address.family === "IPv6" ? `[${address.address}]` : address.address;
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<RunningSimulator> {
  const { host = "127.0.0.1", port = 0, ...stateOptions } = options;
  const state = createSimulatorState(stateOptions);
  const server = createServer(createSimulatorListener(state));

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });

  const url = `http://${urlHost(server.address() as AddressInfo)}:${(server.address() as AddressInfo).port}`;
  let closed: Promise<void> | undefined;

  return {
    url,
    tokenUrl: `${url}/api/v2/oauth/token`,
    processctrlUrl: `${url}${PROCESSCTRL_BASE}`,
    diUrl: `${url}${DI_BASE}`,
    clientId: state.clientId,
    clientSecret: state.clientSecret,
    stats: () => state.snapshot(),
    requests: () => state.requests.snapshot(),
    setFaults: (partial) => state.setFaults(partial),
    failNext: (endpoint, count, status, opts) => state.failNext(endpoint, count, status, opts),
    revokeToken: () => state.revokeToken(),
    reset: () => state.reset(),
    close: () => {
      closed ??= new Promise<void>((resolve) => {
        state.closing.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
