import type { RunningSimulator } from "../../src/simulator/server.js";

/** GETs a resource straight from the simulator with a fresh token, as finAPI serves it. */
export async function servedBytes(simulator: RunningSimulator, url: string): Promise<Buffer> {
  const tokenResponse = await fetch(simulator.tokenUrl, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: simulator.clientId,
      client_secret: simulator.clientSecret,
    }),
  });
  const { access_token } = (await tokenResponse.json()) as { access_token: string };
  const response = await fetch(url, { headers: { Authorization: `Bearer ${access_token}` } });
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
