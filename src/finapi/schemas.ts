import { z } from "zod";

/**
 * finAPI publishes no schema for these answers. We check the few fields we use and keep
 * everything else untouched; an unknown field never makes a result invalid.
 */
export const kreditCheckAccountSchema = z.looseObject({
  accountId: z.union([z.string(), z.number()]).nullish(),
  caseId: z.string().nullish(),
});

export const kreditCheckResultSchema = z.looseObject({
  status: z.string().nullish(),
  overallVerdict: z.string().nullish(),
  clientReference: z.string().nullish(),
  bankConnections: z
    .array(
      z.looseObject({
        bankConnectionId: z.union([z.string(), z.number()]).nullish(),
        accounts: z.array(kreditCheckAccountSchema).nullish(),
      }),
    )
    .nullish(),
});

export type KreditCheckResult = z.infer<typeof kreditCheckResultSchema>;

/** `reports` is an object keyed by report name; the names are open (more by product). */
export const dacReportResponseSchema = z.looseObject({
  caseId: z.string().nullish(),
  reports: z.record(z.string(), z.unknown()),
});

export type DacReportResponse = z.infer<typeof dacReportResponseSchema>;

/**
 * Seconds, as a number or a numeric string ("3599"): OAuth says a number, but gateways and
 * some servers send a string, and the token is as good.
 */
const seconds = z
  .union([
    z.number(),
    z
      .string()
      .regex(/^\s*\d+(?:\.\d+)?\s*$/)
      .transform(Number),
  ])
  .pipe(z.number().nonnegative());

/** finAPI Access' client_credentials answer; `refresh_token` may come and is ignored. */
export const tokenResponseSchema = z.looseObject({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  expires_in: seconds.optional(),
});

export type TokenResponse = z.infer<typeof tokenResponseSchema>;

/** Every caseId of the result, in order, once each. */
export function caseIdsOf(result: KreditCheckResult): string[] {
  const caseIds = new Set<string>();
  for (const connection of result.bankConnections ?? []) {
    for (const account of connection.accounts ?? []) {
      if (account.caseId) caseIds.add(account.caseId);
    }
  }
  return [...caseIds];
}
