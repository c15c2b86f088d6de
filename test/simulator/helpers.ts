import { caseIdFor } from "../../src/simulator/data.js";
import type { RunningSimulator } from "../../src/simulator/server.js";

export const FORM = { "content-type": "application/x-www-form-urlencoded" };

export function requestToken(
  sim: Pick<RunningSimulator, "tokenUrl" | "clientId" | "clientSecret">,
  overrides: Record<string, string> = {},
  url = sim.tokenUrl,
): Promise<Response> {
  const body = new URLSearchParams({
    grant_type: "client_credentials",
    client_id: sim.clientId,
    client_secret: sim.clientSecret,
    ...overrides,
  });
  return fetch(url, { method: "POST", headers: FORM, body });
}

export async function tokenOf(sim: RunningSimulator): Promise<string> {
  const res = await requestToken(sim);
  if (res.status !== 200) throw new Error(`token request failed: ${res.status}`);
  const body = (await res.json()) as { access_token: string };
  return body.access_token;
}

export function checkUrl(
  sim: RunningSimulator,
  processToken = "pt-1",
  kreditCheckId = "kc-1",
): string {
  return `${sim.processctrlUrl}/checks/${processToken}/kreditcheck/${kreditCheckId}`;
}

/** A caseId the simulator issued (for check `label`): the DAC route answers 404 for others. */
export function issuedCase(label: string): string {
  return caseIdFor(label, 0);
}

export function caseUrl(sim: RunningSimulator, caseId: string): string {
  return `${sim.diUrl}/cases/${caseId}/reports`;
}

export function authed(
  token: string,
  extra: Record<string, string> = {},
  signal?: AbortSignal,
): RequestInit {
  return { headers: { authorization: `Bearer ${token}`, ...extra }, ...(signal ? { signal } : {}) };
}

export interface ErrorBody {
  errors: { message: string; code: string; type: string }[];
}
