import type { RunningSimulator } from "../../src/simulator/server.js";

/** A token straight from the simulator, as the service would get it (finAPI returns the same one). */
export async function simulatorToken(simulator: RunningSimulator): Promise<string> {
  const response = await fetch(simulator.tokenUrl, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "client_credentials",
      client_id: simulator.clientId,
      client_secret: simulator.clientSecret,
    }),
  });
  return ((await response.json()) as { access_token: string }).access_token;
}
