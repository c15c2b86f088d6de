import type { Callback } from "../callback.js";
import type { DacReportResponse, KreditCheckResult } from "../finapi/ports.js";
import type { Logger } from "../logger.js";

/** Something a person should know about a bundle: what is missing and why. */
export interface Problem {
  code: string;
  message: string;
  caseId?: string;
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
