import type { AuthorizedClient, CallContext } from "./authorized-client.js";
import { DOCUMENTS, type DocumentName } from "./documents.js";
import { type KreditCheckResult, kreditCheckResultSchema } from "./schemas.js";

export interface KreditCheckSource {
  /** The result exactly as finAPI served it (checked, not rebuilt). */
  getKreditCheck(
    processToken: string,
    kreditCheckId: string,
    ctx: CallContext,
  ): Promise<KreditCheckResult>;
}

export interface DocumentSource {
  /** One document of a check, as bytes; a missing one is a `finapi_not_found` error. */
  getDocument(
    processToken: string,
    kreditCheckId: string,
    name: DocumentName,
    ctx: CallContext,
  ): Promise<{ contentType: string; data: Buffer }>;
}

/** finAPI's Process Controller: the KreditCheck result of one check and its documents. */
export class ProcessCtrlClient implements KreditCheckSource, DocumentSource {
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
    const url = this.checkUrl(processToken, kreditCheckId);
    return this.client.getJson("kreditcheck", url, ctx, kreditCheckResultSchema);
  }

  async getDocument(
    processToken: string,
    kreditCheckId: string,
    name: DocumentName,
    ctx: CallContext,
  ): Promise<{ contentType: string; data: Buffer }> {
    const document = DOCUMENTS[name];
    const url = this.checkUrl(processToken, kreditCheckId) + document.path;
    const data = await this.client.getBinary(name, url, ctx, document.contentType);
    return { contentType: document.contentType, data };
  }

  /** Documents live under the result's path, so FINAPI_KREDITCHECK_PATH moves them too. */
  private checkUrl(processToken: string, kreditCheckId: string): string {
    const path = this.pathTemplate
      .replace("{processToken}", encodeURIComponent(processToken))
      .replace("{kreditCheckId}", encodeURIComponent(kreditCheckId));
    return this.baseUrl + path;
  }
}
