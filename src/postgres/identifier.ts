/** Schema names are identifiers, which cannot be bound; only plain ones are accepted. */
export const SCHEMA_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;
