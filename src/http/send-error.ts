import type { Response } from "express";

export interface ErrorDetail {
  field?: string;
  message: string;
}

/** Every error answer has the same shape: `{error, details}`. */
export function errorBody(error: string, details: ErrorDetail[] = []) {
  return { error, details };
}

export function sendError(
  res: Response,
  status: number,
  error: string,
  details: ErrorDetail[] = [],
): void {
  res.status(status).json(errorBody(error, details));
}

/** The 404 of a path that is no route (the same answer wherever it is decided). */
export function sendNotFound(res: Response): void {
  sendError(res, 404, "not_found", [{ message: "no such route" }]);
}

/** zod's issues as `details`: each names its field ("(body)" for the whole body). */
export function zodIssues(error: {
  issues: readonly { path: readonly PropertyKey[]; message: string }[];
}): ErrorDetail[] {
  return error.issues.map((issue) => ({
    field: issue.path.length > 0 ? issue.path.map(String).join(".") : "(body)",
    message: issue.message,
  }));
}
