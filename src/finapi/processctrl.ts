import type { AuthorizedClient, CallContext } from "./authorized-client.js";
import { invalidResponseError } from "./errors.js";
import { type KreditCheckResult, kreditCheckResultSchema } from "./schemas.js";

export interface KreditCheckSource {
  /** The result exactly as finAPI served it (checked, not rebuilt). */
  getKreditCheck(
    processToken: string,
    kreditCheckId: string,
    ctx: CallContext,
  ): Promise<KreditCheckResult>;
}

/** finAPI's Process Controller: the KreditCheck result of one check. */
export class ProcessCtrlClient implements KreditCheckSource {
  constructor(
    private readonly client: AuthorizedClient,
    private readonly baseUrl: string,
    private readonly pathTemplate: string,
  ) {}

  async getKreditCheck(
    processToken: string,
    kreditCheckId: string,
    ctx: CallContext,
  ): Promise<KreditCheckResult> {
    const path = this.pathTemplate
      .replace("{processToken}", encodeURIComponent(processToken))
      .replace("{kreditCheckId}", encodeURIComponent(kreditCheckId));
    const { body, requestId } = await this.client.getJson("kreditcheck", this.baseUrl + path, ctx);
    const parsed = kreditCheckResultSchema.safeParse(body);
    if (!parsed.success) {
      throw invalidResponseError(
        { endpoint: "kreditcheck", requestId, body: JSON.stringify(body) },
        parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; "),
      );
    }
    // Hand on what finAPI served, not zod's copy: key order and all fields stay as they were.
    return body as KreditCheckResult;
  }
}
