/**
 * Credentials taken out of an answer's text before it goes into an error message (and so
 * into the log and the job's last error). An endpoint that echoes the request (a gateway's
 * 400 page, a debug endpoint behind a wrong URL) would otherwise put the client secret
 * there, or the access token it was sent.
 */
export const REDACTED = "[redacted]";

/** An access token's value wherever an answer may name one: JSON, a form, a header. */
const TOKEN_FIELDS = [
  /("access_token"\s*:\s*")(?:[^"\\]|\\.)*(")/gi,
  /(access_token=)[^&\s"']+()/gi,
  /(bearer\s+)[A-Za-z0-9._~+/=-]+()/gi,
];

/**
 * `text` with each of `secrets` replaced by [redacted]: as sent, URL-encoded (as a form
 * or a URL carries it, with either case of hex digits) and JSON-escaped; then any access
 * token's value.
 */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    forms.add(secret);
    forms.add(encodeURIComponent(secret));
    forms.add(new URLSearchParams({ s: secret }).toString().slice(2));
    forms.add(JSON.stringify(secret).slice(1, -1));
  }
  let redacted = text;
  // Longest first: a form that contains another is replaced whole.
  for (const form of [...forms].sort((a, b) => b.length - a.length)) {
    // Case-insensitive only where it changes nothing but hex digits (%2f and %2F).
    const flags = form.includes("%") ? "gi" : "g";
    redacted = redacted.replace(new RegExp(escapeRegExp(form), flags), REDACTED);
  }
  for (const field of TOKEN_FIELDS) redacted = redacted.replace(field, `$1${REDACTED}$2`);
  return redacted;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
