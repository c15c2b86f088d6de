import type { Callback } from "../callback.js";
import type { DacReportResponse, KreditCheckResult } from "../finapi/ports.js";
import type { Logger } from "../logger.js";

/** Something a person should know about a bundle: what is missing and why. */
export interface Problem {
  code: string;
  message: string;
  caseId?: string;
  /** The FETCH_DOCUMENTS name of a document that is missing. */
  document?: string;
  fix?: string;
}

/**
 * What every sink receives: the callback, the KreditCheck result and the DAC reports
 * keyed by caseId, all exactly as finAPI served them. `kreditCheck` is null when the
 * callback's status was not SUCCESSFUL; a DAC report that could not be had is missing
 * from `dacReports` and explained in `problems`.
 */
export interface Bundle {
  callback: Callback;
  kreditCheck: KreditCheckResult | null;
  dacReports: Record<string, DacReportResponse>;
  problems: Problem[];
  /** ISO 8601: when the callback was accepted. */
  receivedAt: string;
  /** ISO 8601: when the bundle was complete. */
  completedAt: string;
  /** Binary documents (FETCH_DOCUMENTS); absent when none were asked for. */
  documents?: BundleDocument[];
}

/** A document finAPI serves besides the JSON, e.g. the account analysis PDF. */
export interface BundleDocument {
  /** `account_pdf` or `dac_zip` (the FETCH_DOCUMENTS name). */
  name: string;
  contentType: string;
  data: Buffer;
}

/** The bundle as JSON: documents carried as base64 (job progress, http and stdout sinks). */
export type JsonBundle = Omit<Bundle, "documents"> & {
  documents?: { name: string; contentType: string; base64: string }[];
};

export function bundleToJson(bundle: Bundle): JsonBundle {
  const { documents, ...rest } = bundle;
  if (!documents) return rest;
  return {
    ...rest,
    documents: documents.map(({ name, contentType, data }) => ({
      name,
      contentType,
      base64: data.toString("base64"),
    })),
  };
}

export function bundleFromJson(json: JsonBundle): Bundle {
  const { documents, ...rest } = json;
  if (!documents) return rest;
  return {
    ...rest,
    documents: documents.map(({ name, contentType, base64 }) => ({
      name,
      contentType,
      data: Buffer.from(base64, "base64"),
    })),
  };
}

export interface DeliveryContext {
  logger: Logger;
  signal?: AbortSignal;
}

/**
 * Where bundles go. `deliver` must be idempotent (a bundle may come again after a crash)
 * and throw a ReceiverError saying whether a retry can help.
 */
export interface Sink {
  readonly name: string;
  deliver(bundle: Bundle, ctx: DeliveryContext): Promise<void>;
  close?(): Promise<void>;
}
