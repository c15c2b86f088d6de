import type { Response } from "express";

export interface ErrorDetail {
  field?: string;
  message: string;
}

/** Every error answer has the same shape: `{error, details}`. */
export function sendError(
  res: Response,
  status: number,
  error: string,
  details: ErrorDetail[] = [],
): void {
  res.status(status).json({ error, details });
}
