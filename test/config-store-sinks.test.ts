import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";

const base = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret" };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...base, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("configuration of the store and the sinks", () => {
  it("accepts sqlite:, postgres:// and postgresql:// store URLs and nothing else", () => {
    expect(loadConfig({ ...base, STORE_URL: "postgres://u@h/db" }).store.kind).toBe("postgres");
    expect(loadConfig({ ...base, STORE_URL: "postgresql://u@h/db" }).store.kind).toBe("postgres");
    expect(loadConfig({ ...base, STORE_URL: "sqlite:./x.db" }).store).toMatchObject({
      kind: "sqlite",
      sqlitePath: "./x.db",
    });
    expect(problemsOf({ STORE_URL: "mysql://h/db" })).toEqual([
      expect.stringMatching(/^STORE_URL: must be sqlite:<path> or postgres:\/\//),
    ]);
  });

  it("refuses an in-memory SQLite inbox (a 202 would not mean on disk) except with NODE_ENV=test", () => {
    expect(problemsOf({ STORE_URL: "sqlite::memory:" })).toEqual([
      expect.stringMatching(/^STORE_URL: sqlite::memory: keeps the inbox in memory.*sqlite:<path>/),
    ]);
    expect(
      problemsOf({
        STORE_URL: "sqlite::memory:",
        NODE_ENV: "production",
        ALLOWED_CIDRS: "10.0.0.0/8",
      }),
    ).toHaveLength(1);
    expect(
      loadConfig({ ...base, STORE_URL: "sqlite::memory:", NODE_ENV: "test" }).store.sqlitePath,
    ).toBe(":memory:");
  });

  it("stops at an unknown sink name, naming SINKS and the known ones", () => {
    expect(problemsOf({ SINKS: "file,kafka" })).toEqual([
      'SINKS: unknown sink "kafka" (known: file, stdout, http, postgres, module:<path>)',
    ]);
    expect(problemsOf({ SINKS: "file,file" })).toEqual(['SINKS: "file" is listed twice']);
  });

  it("takes built-in sink names in any letter case, and a module's path as written, blanks around it dropped", () => {
    const names = (sinks: string) => loadConfig({ ...base, SINKS: sinks }).sinks.names;
    expect(names("File, STDOUT")).toEqual(["file", "stdout"]);
    expect(names("file,module:./Sinks/Audit.mjs")).toEqual(["file", "module:./Sinks/Audit.mjs"]);
    expect(names("Module:./Sinks/Audit.mjs")).toEqual(["module:./Sinks/Audit.mjs"]);
    // A blank after the prefix is no part of the path (it was looked for as "<cwd>/ ./…").
    expect(names("file, module: ./Sinks/Audit.mjs ")).toEqual(["file", "module:./Sinks/Audit.mjs"]);
    expect(problemsOf({ SINKS: "module:./a.mjs,module: ./a.mjs" })).toEqual([
      'SINKS: "module: ./a.mjs" is listed twice',
    ]);
    expect(problemsOf({ SINKS: "module: " })).toEqual([
      'SINKS: unknown sink "module:" (known: file, stdout, http, postgres, module:<path>)',
    ]);
    expect(problemsOf({ SINKS: "file,FILE" })).toEqual(['SINKS: "FILE" is listed twice']);
    // The entry as written, not as lower-cased.
    expect(problemsOf({ SINKS: "Kafka" })).toEqual([
      'SINKS: unknown sink "Kafka" (known: file, stdout, http, postgres, module:<path>)',
    ]);
  });

  it("asks for the http sink's URL and secret when SINKS names http", () => {
    expect(problemsOf({ SINKS: "http" })).toEqual([
      "HTTP_SINK_URL is required when SINKS names http",
      expect.stringContaining("HTTP_SINK_SECRET is required"),
    ]);
  });

  it("refuses an HTTP_SINK_URL with a user name or password (never sent), pointing at HTTP_SINK_SECRET", () => {
    const problems = problemsOf({
      SINKS: "http",
      HTTP_SINK_URL: "https://hook:s3cr3t-pw@receiver.example/hook",
      HTTP_SINK_SECRET: "any plain secret",
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^HTTP_SINK_URL: must not contain a user name or password.*HTTP_SINK_SECRET/,
      ),
    ]);
    expect(problems.join("\n")).not.toContain("s3cr3t-pw");
  });

  it("refuses a whsec_ secret that decodes to no real key (anyone could sign with it)", () => {
    const http = { SINKS: "http", HTTP_SINK_URL: "http://127.0.0.1:9/hook" };
    for (const secret of ["whsec_", "whsec_!!!!", "whsec_a-b_c"]) {
      expect(problemsOf({ ...http, HTTP_SINK_SECRET: secret }), secret).toEqual([
        expect.stringMatching(
          /^HTTP_SINK_SECRET: a whsec_ secret must be followed by standard base64/,
        ),
      ]);
    }
    // Valid base64 of too few bytes is told so, with the count: not a character problem.
    const twelveBytes = `whsec_${Buffer.alloc(12, 7).toString("base64")}`;
    expect(problemsOf({ ...http, HTTP_SINK_SECRET: twelveBytes })).toEqual([
      expect.stringMatching(
        /^HTTP_SINK_SECRET: the base64 after whsec_ decodes to 12 bytes; the key needs at least 16/,
      ),
    ]);
    expect(problemsOf({ ...http, HTTP_SINK_SECRET: "whsec_c2hvcnQ=" })).toEqual([
      expect.stringMatching(/decodes to 5 bytes/),
    ]);
    const key = Buffer.alloc(24, 7).toString("base64");
    expect(problemsOf({ ...http, HTTP_SINK_SECRET: `whsec_${key}` })).toEqual([]);
    expect(problemsOf({ ...http, HTTP_SINK_SECRET: "any plain secret" })).toEqual([]);
  });

  it("refuses a plain HTTP_SINK_SECRET shorter than 16 characters (a guessable signing key)", () => {
    const http = { SINKS: "http", HTTP_SINK_URL: "http://127.0.0.1:9/hook" };
    for (const secret of ["s", "s3cret", "fifteen chars.."]) {
      expect(problemsOf({ ...http, HTTP_SINK_SECRET: secret }), secret).toEqual([
        expect.stringMatching(/^HTTP_SINK_SECRET: must be at least 16 characters/),
      ]);
    }
    expect(problemsOf({ ...http, HTTP_SINK_SECRET: "sixteen chars..." })).toEqual([]);
  });

  it("writes the postgres sink into the PostgreSQL store unless POSTGRES_SINK_URL says otherwise", () => {
    expect(problemsOf({ SINKS: "postgres" })).toEqual([
      expect.stringContaining("POSTGRES_SINK_URL is required when SINKS names postgres"),
    ]);
    const shared = loadConfig({
      ...base,
      SINKS: "postgres",
      STORE_URL: "postgres://u@h/db",
      PG_SCHEMA: "kc",
    });
    expect(shared.sinks.postgres).toEqual({
      url: "postgres://u@h/db",
      schema: "kc",
      variable: "STORE_URL",
      timeoutMs: 10_000,
    });
    const own = loadConfig({
      ...base,
      SINKS: "postgres",
      POSTGRES_SINK_URL: "postgres://u@other/db",
      POSTGRES_SINK_TIMEOUT_MS: "2500",
    });
    expect(own.sinks.postgres?.url).toBe("postgres://u@other/db");
    expect(own.sinks.postgres?.variable).toBe("POSTGRES_SINK_URL");
    expect(own.sinks.postgres?.timeoutMs).toBe(2500);
    expect(problemsOf({ ...base, POSTGRES_SINK_TIMEOUT_MS: "10s" })).toEqual([
      expect.stringMatching(/^POSTGRES_SINK_TIMEOUT_MS: must be a whole number/),
    ]);
  });

  it("fetches no documents by default and refuses unknown document names", () => {
    expect(loadConfig(base).documents).toEqual([]);
    expect(loadConfig({ ...base, FETCH_DOCUMENTS: "account_pdf, dac_zip" }).documents).toEqual([
      "account_pdf",
      "dac_zip",
    ]);
    // Named twice, fetched once: not two copies of the document in the bundle.
    expect(loadConfig({ ...base, FETCH_DOCUMENTS: "account_pdf,account_pdf" }).documents).toEqual([
      "account_pdf",
    ]);
    expect(problemsOf({ FETCH_DOCUMENTS: "account_pdf,statement" })).toEqual([
      'FETCH_DOCUMENTS: unknown document "statement" (known: account_pdf, dac_zip)',
    ]);
  });
});
