export type { CallContext } from "./authorized-client.js";
export type { DacReportSource } from "./di.js";
export type { DocumentName } from "./documents.js";
export type { DocumentSource, KreditCheckSource } from "./processctrl.js";
export type { DacReportResponse, KreditCheckResult } from "./schemas.js";
export type { TokenProvider } from "./token.js";
