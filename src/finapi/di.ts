import type { AuthorizedClient, CallContext } from "./authorized-client.js";
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
    return this.client.getJson("dac", url, ctx, dacReportResponseSchema);
  }
}
