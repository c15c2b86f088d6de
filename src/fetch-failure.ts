/**
 * Why fetch got no answer, from its error's cause: the cause's code (ECONNREFUSED,
 * ENOTFOUND, …), or its message when it has none (fetch's "bad port"). fetch's own message
 * says only "fetch failed". Undefined without a cause (a timeout's abort): each caller says
 * what applies then.
 */
export function fetchFailureCause(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause;
  if (typeof cause?.code === "string") return cause.code;
  return typeof cause?.message === "string" ? cause.message : undefined;
}
