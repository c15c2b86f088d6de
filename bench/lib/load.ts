import autocannon from "autocannon";

export interface LoadResult {
  requests: number;
  seconds: number;
  /** 2xx answers per second: a fast 503 is no callback taken. */
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  rejected: number;
  errors: number;
}

let sequence = 0;
const run = `${process.pid.toString(36)}${Date.now().toString(36)}`;

/** A callback as finAPI sends it, with ids no other request of this process has used. */
export function uniqueCallback(): string {
  sequence += 1;
  return JSON.stringify({
    processToken: `pt-${run}-${sequence}`,
    kreditCheckId: `kc-${run}-${sequence}`,
    status: "SUCCESSFUL",
    clientReference: `CU-${sequence}`,
    errorMessage: null,
  });
}

/**
 * POSTs distinct callbacks to `url` with autocannon, for `seconds` or `amount` requests.
 * Every request body is made fresh in setupRequest, so the receiver never sees a duplicate.
 */
export async function postCallbacks(
  url: string,
  options: { connections: number; seconds?: number; amount?: number },
): Promise<LoadResult> {
  const result = await autocannon({
    url,
    method: "POST",
    headers: { "content-type": "application/json" },
    connections: options.connections,
    ...(options.amount ? { amount: options.amount } : { duration: options.seconds ?? 5 }),
    timeout: 30,
    requests: [{ setupRequest: (request) => ({ ...request, body: uniqueCallback() }) }],
  });
  const ok = result["2xx"];
  return {
    requests: result.requests.total,
    seconds: result.duration,
    rps: ok / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok,
    rejected: result.non2xx,
    // autocannon 9 counts timeouts among its errors already (lib/run.js).
    errors: result.errors,
  };
}
