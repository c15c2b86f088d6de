/**
 * Documents the Process Controller serves under a KreditCheck (../shared/finapi/FACTS.md):
 * the account analysis PDF and the DAC-for-loan PDFs as a zip. The key is the name used
 * in FETCH_DOCUMENTS, in simulator statistics and in the bundle.
 */
export const DOCUMENTS = {
  account_pdf: { path: "/analysis/account/pdf", contentType: "application/pdf" },
  dac_zip: { path: "/analysis/dacForLoan/zip", contentType: "application/zip" },
} as const;

export type DocumentName = keyof typeof DOCUMENTS;
export const DOCUMENT_NAMES = Object.keys(DOCUMENTS) as DocumentName[];
