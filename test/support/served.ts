import type { RunningSimulator } from "../../src/simulator/server.js";
import { simulatorToken } from "./simulator-token.js";

/** GETs a resource straight from the simulator with a fresh token, as finAPI serves it. */
export async function servedBytes(simulator: RunningSimulator, url: string): Promise<Buffer> {
  const token = await simulatorToken(simulator);
  const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  return Buffer.from(await response.arrayBuffer());
}

/** The document URLs of one check on the simulator. */
export function documentUrls(
  simulator: RunningSimulator,
  callback: Record<string, unknown>,
): { account_pdf: string; dac_zip: string } {
  const check = `${simulator.processctrlUrl}/checks/${String(callback.processToken)}/kreditcheck/${String(callback.kreditCheckId)}`;
  return {
    account_pdf: `${check}/analysis/account/pdf`,
    dac_zip: `${check}/analysis/dacForLoan/zip`,
  };
}
