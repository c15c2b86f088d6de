import type { AuthorizedClient, CallContext } from "./authorized-client.js";
import { invalidResponseError } from "./errors.js";
import { type DacReportResponse, dacReportResponseSchema } from "./schemas.js";

export interface DacReportSource {
  /** `{caseId, reports: {<name>: report}}` exactly as finAPI served it. */
  getDacReports(caseId: string, ctx: CallContext): Promise<DacReportResponse>;
}

/** finAPI's Data Intelligence service: the DAC reports of one case (one account). */
export class DataIntelligenceClient implements DacReportSource {
  constructor(
    private readonly client: AuthorizedClient,
    private readonly baseUrl: string,
  ) {}

  async getDacReports(caseId: string, ctx: CallContext): Promise<DacReportResponse> {
    const url = `${this.baseUrl}/cases/${encodeURIComponent(caseId)}/reports`;
    const { body, requestId } = await this.client.getJson("dac", url, ctx);
    const parsed = dacReportResponseSchema.safeParse(body);
    if (!parsed.success) {
      throw invalidResponseError(
        { endpoint: "dac", requestId, body: JSON.stringify(body) },
        parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; "),
      );
    }
    return body as DacReportResponse;
  }
}
