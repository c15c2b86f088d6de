import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, redactUrl, SHUTDOWN_EXIT_GRACE_MS } from "../src/config.js";

const credentials = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret" };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("needs only the client credentials; everything else has a working default", () => {
    const config = loadConfig(credentials);
    expect(config.http).toMatchObject({ port: 3000, callbackPath: "/callbacks/kreditcheck" });
    expect(config.store.url).toBe("sqlite:./data/receiver.db");
    expect(config.worker).toMatchObject({ leaseMs: 30_000, concurrency: 4, maxAttempts: 25 });
    expect(config.finapi.notFoundGraceMs).toBe(600_000);
    expect(config.finapi.tokenUrl).toBe("https://sandbox.finapi.io/api/v2/oauth/token");
    expect(config.sinks).toEqual({
      names: ["file"],
      fileDir: "./data/results",
      moduleTimeoutMs: 60_000,
      unusedSettings: [],
    });
  });

  it("names every missing or bad variable at once", () => {
    const problems = problemsOf({
      PORT: "seventy",
      WORKER_CONCURRENCY: "0",
      FINAPI_DI_URL: "ftp://x",
    });
    const named = problems.map((problem) => problem.split(":")[0]);
    expect(named).toEqual(
      expect.arrayContaining([
        "PORT",
        "WORKER_CONCURRENCY",
        "FINAPI_DI_URL",
        "FINAPI_CLIENT_ID is required",
        "FINAPI_CLIENT_SECRET is required",
      ]),
    );
  });

  it("names a misspelt variable beside the required one it probably meant", () => {
    expect(problemsOf({ FINAPI_CLIENTID: "id", FINAPI_CLIENT_SECRET: "secret" })).toEqual([
      "FINAPI_CLIENT_ID is required (FINAPI_CLIENTID is set: a misspelling of FINAPI_CLIENT_ID?)",
    ]);
  });

  it("does not start with a protection setting misspelt while the real one is unset", () => {
    expect(problemsOf({ ...credentials, CALLBAK_SECRET: "s".repeat(32) })).toEqual([
      "CALLBAK_SECRET is set, but no variable of that name is read: did you mean CALLBACK_SECRET? Rename it (or unset it): the service does not start without the protection CALLBACK_SECRET gives",
    ]);
    for (const [typo, meant, valid] of [
      ["CALLBACK_SECRETS", "CALLBACK_SECRET", "s".repeat(32)],
      ["ALLOWED_CIDR", "ALLOWED_CIDRS", "10.0.0.0/8"],
      ["ADMIN_TOKENS", "ADMIN_TOKEN", "t".repeat(32)],
      ["HTTP_SINK_SECRETS", "HTTP_SINK_SECRET", "h".repeat(32)],
    ] as const) {
      expect(problemsOf({ ...credentials, [typo]: "x".repeat(32) }).join("\n"), typo).toContain(
        `did you mean ${meant}?`,
      );
      // With the real one set too, the typo is only a warning (startup-warnings).
      expect(() =>
        loadConfig({ ...credentials, [typo]: "x".repeat(32), [meant]: valid }),
      ).not.toThrow();
    }
    // Any other misspelling is only a warning.
    expect(loadConfig({ ...credentials, SINK: "stdout" }).misspelt).toEqual([
      { variable: "SINK", meant: "SINKS", meantIsSet: false },
    ]);
  });

  it("names a misspelt ALLOWED_CIDRS beside the production check that needs it", () => {
    expect(
      problemsOf({ ...credentials, NODE_ENV: "production", ALLOWED_CIDR: "10.0.0.0/8" }),
    ).toEqual([
      "ALLOWED_CIDRS: must be set when NODE_ENV=production (finAPI's IP range from finAPI support; 0.0.0.0/0,::/0 allows everyone) (ALLOWED_CIDR is set: a misspelling of ALLOWED_CIDRS?)",
    ]);
  });

  it("selects the live presets and says which of them are unconfirmed", () => {
    const config = loadConfig({ ...credentials, FINAPI_ENV: "live" });
    expect(config.finapi.processctrlUrl).toBe(
      "https://di-processctl-finapi-general-live.finapi.io/api/v1",
    );
    expect(config.finapi.diUrl).toBe("https://di-live.finapi.io/api/v1");
    expect(config.finapi.unconfirmed.join(" ")).toMatch(/FINAPI_PROCESSCTRL_URL.*FINAPI_DI_URL/);
  });

  it("takes LOG_LEVEL and FINAPI_ENV in any letter case, and still refuses other words", () => {
    const config = loadConfig({ ...credentials, FINAPI_ENV: "Live", LOG_LEVEL: "INFO" });
    expect(config.finapi.diUrl).toBe("https://di-live.finapi.io/api/v1");
    expect(config.log.level).toBe("info");
    expect(loadConfig({ ...credentials }).log.level).toBe("info");
    expect(problemsOf({ ...credentials, LOG_LEVEL: "verbose" }).join("\n")).toMatch(/^LOG_LEVEL/m);
    expect(problemsOf({ ...credentials, FINAPI_ENV: "prod" }).join("\n")).toMatch(/^FINAPI_ENV/m);
  });

  it("lets each URL be overridden, and then does not warn about its preset", () => {
    const config = loadConfig({
      ...credentials,
      FINAPI_ENV: "live",
      FINAPI_PROCESSCTRL_URL: "http://127.0.0.1:9/processctrl/api/v1/",
      FINAPI_DI_URL: "http://127.0.0.1:9/di/api/v1",
      FINAPI_TOKEN_URL: "http://127.0.0.1:9/oauth/token",
    });
    expect(config.finapi.processctrlUrl).toBe("http://127.0.0.1:9/processctrl/api/v1");
    expect(config.finapi.tokenUrl).toBe("http://127.0.0.1:9/oauth/token");
    expect(config.finapi.unconfirmed.some((name) => name.startsWith("FINAPI_DI_URL"))).toBe(false);
  });

  it("refuses finAPI URLs with a user name or password (never sent), without echoing the password", () => {
    const problems = problemsOf({
      ...credentials,
      FINAPI_TOKEN_URL: "https://id:pa55word@sandbox.finapi.io/api/v2/oauth/token",
      FINAPI_PROCESSCTRL_URL: "https://pa55word@processctrl.example/api/v1",
      FINAPI_DI_URL: "https://:pa55word@di.example/api/v1",
    });
    expect(problems).toEqual(
      ["FINAPI_TOKEN_URL", "FINAPI_PROCESSCTRL_URL", "FINAPI_DI_URL"].map((name) =>
        expect.stringMatching(
          new RegExp(`^${name}: must not contain a user name or password.*FINAPI_CLIENT_SECRET`),
        ),
      ),
    );
    expect(problems.join("\n")).not.toContain("pa55word");
  });

  it("names each URL variable without a scheme, beside the other problems of the run", () => {
    // Each used to end loadConfig with a bare "Invalid URL" and no variable named.
    const problems = problemsOf({
      FINAPI_CLIENT_SECRET: "secret",
      SINKS: "http",
      HTTP_SINK_URL: "127.0.0.1:3490/h",
      HTTP_SINK_SECRET: "a-signing-secret",
      FINAPI_TOKEN_URL: "sandbox.finapi.io/api/v2/oauth/token",
      FINAPI_PROCESSCTRL_URL: "/processctrl/api/v1",
      FINAPI_DI_URL: "di-sandbox",
    });
    const noScheme = (name: string) =>
      expect.stringMatching(
        new RegExp(`^${name}: must be an http\\(s\\) URL, with http:// or https:// in front`),
      );
    expect(problems).toEqual([
      noScheme("FINAPI_TOKEN_URL"),
      noScheme("FINAPI_PROCESSCTRL_URL"),
      noScheme("FINAPI_DI_URL"),
      "FINAPI_CLIENT_ID is required",
      noScheme("HTTP_SINK_URL"),
    ]);
    expect(problemsOf({ ...credentials, HTTP_SINK_URL: "/hook" })).toEqual([
      noScheme("HTTP_SINK_URL"),
    ]);
  });

  it("refuses a query or fragment in a finAPI service's base URL, which each call's path follows", () => {
    // The path went after the query: every call asked for …/v1?tenant=acme/checks/….
    expect(
      problemsOf({
        ...credentials,
        FINAPI_PROCESSCTRL_URL: "https://gw.example/finapi/api/v1?tenant=acme",
        FINAPI_DI_URL: "https://gw.example/di/api/v1#x",
      }),
    ).toEqual([
      "FINAPI_PROCESSCTRL_URL: must not hold a query (?) or fragment (#): each call's path is appended to it",
      "FINAPI_DI_URL: must not hold a query (?) or fragment (#): each call's path is appended to it",
    ]);
  });

  it("names a postgres:// URL the PostgreSQL driver cannot read, beside the other problems", () => {
    // pg refused these at start-up only, with "Invalid URL", after the other checks passed.
    const problems = problemsOf({
      FINAPI_CLIENT_SECRET: "secret",
      STORE_URL: "postgres://app:p/w@db/x",
      SINKS: "postgres",
      POSTGRES_SINK_URL: "postgres://app@db:99999/x",
    });
    expect(problems).toEqual([
      expect.stringMatching(
        /^STORE_URL: must be a postgres:\/\/ URL the PostgreSQL driver can read/,
      ),
      "FINAPI_CLIENT_ID is required",
      expect.stringMatching(
        /^POSTGRES_SINK_URL: must be a postgres:\/\/ URL the PostgreSQL driver/,
      ),
    ]);
    expect(problems.join("\n")).not.toContain("p/w");
    // A stray escape pg's decoding refuses (URIError), in the password or the database;
    // a password starting with / ? # ends the host early ("kc", empty port): the driver
    // would call host kc, and the password would be shown as the path.
    for (const url of [
      "postgres://u:%ff@db/x",
      "postgres://u@db/%ff",
      "postgres://kc:/Xy9-pass@127.0.0.1:5432/kc",
      "postgres://kc:?Xy9@db/kc",
      "postgres://kc:#Xy9@db/kc",
    ]) {
      expect(problemsOf({ ...credentials, STORE_URL: url })[0]).toMatch(
        /^STORE_URL: must be a postgres:\/\/ URL the PostgreSQL driver can read/,
      );
    }
    // What pg reads: spaces and a lone % are encoded first, user@/db has no host (PGHOST).
    for (const url of ["postgres://app@/x", "postgres://app:a b%@db/x", "postgresql://db/x"]) {
      expect(loadConfig({ ...credentials, STORE_URL: url }).store.kind).toBe("postgres");
    }
  });

  it("treats empty values as unset, as a .env file with KEY= means", () => {
    expect(loadConfig({ ...credentials, PORT: "", FINAPI_TOKEN_URL: "" }).http.port).toBe(3000);
  });

  it("trims values as dotenv trims a .env file: whitespace alone means unset", () => {
    const config = loadConfig({
      ...credentials,
      FILE_SINK_DIR: " ",
      FINAPI_CLIENT_SECRET: " secret\r\n",
      ALLOWED_CIDRS: "10.0.0.0/8,\n192.168.0.0/16\n",
    });
    expect(config.sinks.fileDir).toBe("./data/results");
    expect(config.finapi.clientSecret).toBe("secret");
    // Inside a list, whitespace was already allowed around the entries.
    expect(config.http.allowedCidrs).toBe("10.0.0.0/8,\n192.168.0.0/16");
  });

  it("reads the proxy variables as axios does (lower case first), trimmed, host:port as http://", () => {
    expect(loadConfig(credentials).proxies).toEqual({
      http: undefined,
      https: undefined,
      all: undefined,
      noProxy: undefined,
    });
    const config = loadConfig({
      ...credentials,
      HTTPS_PROXY: " http://upper:3128 ",
      https_proxy: "http://lower:3128\n",
      HTTP_PROXY: "proxy.internal:3128",
      ALL_PROXY: " ",
      NO_PROXY: " localhost,.internal ",
    });
    expect(config.proxies).toEqual({
      http: { url: "http://proxy.internal:3128", variable: "HTTP_PROXY" },
      https: { url: "http://lower:3128", variable: "https_proxy" },
      all: undefined,
      noProxy: { hosts: "localhost,.internal", variable: "NO_PROXY" },
    });
  });

  it("refuses a proxy variable in effect that is no HTTP proxy URL, naming it, not repeating its password", () => {
    const problems = problemsOf({
      ...credentials,
      HTTPS_PROXY: "socks5://ops:pr0xy-pw@proxy:1080",
      http_proxy: "http://",
    });
    expect(problems).toEqual(
      ["http_proxy", "HTTPS_PROXY"].map((name) =>
        expect.stringMatching(new RegExp(`^${name}: must be the URL of an HTTP proxy`)),
      ),
    );
    expect(problems.join("\n")).not.toContain("pr0xy-pw");
    // ALL_PROXY is in effect for a scheme without a proxy of its own.
    expect(
      problemsOf({ ...credentials, HTTP_PROXY: "proxy:3128", ALL_PROXY: "http://bad host:1" }),
    ).toEqual([expect.stringMatching(/^ALL_PROXY: must be the URL of an HTTP proxy/)]);
    // A user name alone is sent as nothing at all.
    expect(problemsOf({ ...credentials, HTTPS_PROXY: "http://sk-live-7f3a@proxy:3128" })).toEqual([
      expect.stringMatching(/^HTTPS_PROXY: has a user name but no password/),
    ]);
  });

  it("starts with proxy variables that are never used, whatever they hold (a desktop's socks all_proxy)", () => {
    const config = loadConfig({
      ...credentials,
      http_proxy: "http://proxy:3128/",
      https_proxy: "http://proxy:3128/",
      all_proxy: "socks://proxy:1080/",
      HTTPS_PROXY: "not a url",
    });
    expect(config.proxies).toMatchObject({
      http: { url: "http://proxy:3128/", variable: "http_proxy" },
      https: { url: "http://proxy:3128/", variable: "https_proxy" },
      all: undefined,
    });
  });

  it("masks the password of a URL in logs, also one the URL parser refuses or misreads", () => {
    expect(redactUrl("postgres://app:pw@db:5432/x")).toBe("postgres://app:***@db:5432/x");
    expect(redactUrl("postgres://app:p/w@db/x")).toBe("postgres://app:***@db/x");
    expect(redactUrl("postgres://app:p@s#s@db/x")).toBe("postgres://app:***@db/x");
    expect(redactUrl("postgres://app@db/x")).toBe("postgres://app@db/x");
    // An "@" in the user name (Azure's legacy user@server logins), as pg reads it.
    expect(redactUrl("postgres://kc@myserver:PGSECRET99@db.example:5432/db")).toBe(
      "postgres://kc@myserver:***@db.example:5432/db",
    );
    expect(redactUrl("postgres://kc%40myserver:PGSECRET99@db.example/db")).toBe(
      "postgres://kc%40myserver:***@db.example/db",
    );
    expect(redactUrl("postgres://kc:/Xy9-pass@127.0.0.1:5432/kc")).toBe(
      "postgres://kc:***@127.0.0.1:5432/kc",
    );
    expect(redactUrl("postgres://kc:?Xy9@db/kc")).toBe("postgres://kc:***@db/kc");
    // libpq takes the password from the query too.
    expect(redactUrl("postgres://app@db/x?password=s3cret&sslmode=require")).toBe(
      "postgres://app@db/x?password=***&sslmode=require",
    );
    expect(redactUrl("postgres://a:b/c@db/x?sslpassword=s3cret")).toBe(
      "postgres://a:***@db/x?sslpassword=***",
    );
    // The rest of the query stays as written.
    expect(redactUrl("postgres://u@db/x?options=-c%20a=b~&password=p&x=1+2")).toBe(
      "postgres://u@db/x?options=-c%20a=b~&password=***&x=1+2",
    );
  });

  it("rejects a result path without its placeholders", () => {
    expect(problemsOf({ ...credentials, FINAPI_KREDITCHECK_PATH: "/checks/x" })[0]).toMatch(
      /^FINAPI_KREDITCHECK_PATH/,
    );
  });

  it("refuses numbers that are not plain whole decimals, and inverted backoff bounds", () => {
    const problems = problemsOf({
      ...credentials,
      PORT: "80.0",
      ADMIN_PORT: "0x50",
      LEASE_MS: "1e4",
      BACKOFF_BASE_MS: "5000",
      BACKOFF_MAX_MS: "1000",
    });
    expect(problems.map((problem) => problem.split(":")[0])).toEqual(
      expect.arrayContaining(["PORT", "ADMIN_PORT", "LEASE_MS"]),
    );
    expect(
      problemsOf({ ...credentials, BACKOFF_BASE_MS: "5000", BACKOFF_MAX_MS: "1000" })[0],
    ).toMatch(/^BACKOFF_BASE_MS/);
  });

  it("reports the checks across variables together with the bad variables, in one run", () => {
    const problems = problemsOf({
      ...credentials,
      NODE_ENV: "production",
      PORT: "-1",
      BACKOFF_BASE_MS: "5000",
      BACKOFF_MAX_MS: "1000",
      ADMIN_HOST: "0.0.0.0",
      SINKS: "http,postgres",
    });
    expect(problems.map((problem) => problem.split(/[: ]/)[0])).toEqual([
      "PORT",
      "HTTP_SINK_URL",
      "HTTP_SINK_SECRET",
      "POSTGRES_SINK_URL",
      "ALLOWED_CIDRS",
      "BACKOFF_BASE_MS",
      "ADMIN_TOKEN",
    ]);
  });

  it("leaves a check across variables to their own messages when one of them is bad", () => {
    expect(
      problemsOf({
        ...credentials,
        NODE_ENV: "staging",
        BACKOFF_BASE_MS: "5000",
        BACKOFF_MAX_MS: "1e3",
        SINKS: "http",
        HTTP_SINK_URL: "ftp://x",
        HTTP_SINK_SECRET: "a-signing-secret",
      }).map((problem) => problem.split(":")[0]),
    ).toEqual(["NODE_ENV", "BACKOFF_MAX_MS", "HTTP_SINK_URL"]);
  });

  it("caps the public port at 1000 connections unless MAX_CONNECTIONS says otherwise (at least 1)", () => {
    expect(loadConfig(credentials).http.maxConnections).toBe(1000);
    expect(loadConfig({ ...credentials, MAX_CONNECTIONS: "50" }).http.maxConnections).toBe(50);
    expect(problemsOf({ ...credentials, MAX_CONNECTIONS: "0" })).toEqual([
      "MAX_CONNECTIONS: must be from 1 to 1000000 (default 1000)",
    ]);
  });

  // Each whole-number setting at its bounds, written out here (not read from the schema): a
  // minimum that slips lets through LEASE_MS=5 (every running job taken over and delivered
  // twice) or MAX_ATTEMPTS=0 (every failure final).
  const TIMER = 2 ** 31 - 1;
  const DATE_SPAN = 100 * 365 * 24 * 3_600_000;
  it.each([
    ["PORT", 0, 65535],
    ["REQUEST_TIMEOUT_MS", 100, TIMER],
    ["MAX_CONNECTIONS", 1, 1_000_000],
    ["ADMIN_PORT", 0, 65535],
    ["SHUTDOWN_TIMEOUT_MS", 100, TIMER - SHUTDOWN_EXIT_GRACE_MS],
    ["SHUTDOWN_DELAY_MS", 0, TIMER],
    ["LEASE_MS", 1000, TIMER],
    ["WORKER_CONCURRENCY", 1, undefined],
    ["WORKER_POLL_MS", 10, TIMER],
    ["MAX_ATTEMPTS", 1, undefined],
    ["JOB_MAX_AGE_MS", 1000, undefined],
    ["BACKOFF_BASE_MS", 1, DATE_SPAN, { BACKOFF_MAX_MS: String(DATE_SPAN) }],
    ["BACKOFF_MAX_MS", 1, DATE_SPAN, { BACKOFF_BASE_MS: "1" }],
    ["NOT_FOUND_GRACE_MS", 0, undefined],
    ["DONE_RETENTION_MS", 0, DATE_SPAN],
    ["DEAD_RETENTION_MS", 0, DATE_SPAN],
    ["PRUNE_INTERVAL_MS", 10, TIMER],
    ["FINAPI_TIMEOUT_MS", 100, TIMER],
    ["FINAPI_RETRIES", 0, undefined],
    ["TOKEN_REFRESH_MARGIN_MS", 0, undefined],
    ["DAC_CONCURRENCY", 1, undefined],
    ["HTTP_SINK_TIMEOUT_MS", 100, TIMER],
    ["POSTGRES_SINK_TIMEOUT_MS", 100, TIMER],
    ["MODULE_SINK_TIMEOUT_MS", 100, TIMER],
  ] as [string, number, number | undefined, Record<string, string>?][])(
    "%s takes %i and refuses one less, and one more than its maximum if it has one",
    (name, min, max, others = {}) => {
      const env = { ...credentials, ...others };
      expect(() => loadConfig({ ...env, [name]: String(min) })).not.toThrow();
      expect(problemsOf({ ...env, [name]: String(min - 1) })).toEqual([
        expect.stringMatching(new RegExp(`^${name}: must be (from )?${min} `)),
      ]);
      if (max !== undefined) {
        expect(() => loadConfig({ ...env, [name]: String(max) })).not.toThrow();
        expect(problemsOf({ ...env, [name]: String(max + 1) })).toEqual([
          expect.stringMatching(new RegExp(`^${name}: must be .*\\b${max}\\b`)),
        ]);
      }
    },
  );

  it("tells a negative number that it is below the minimum, not that it is no number", () => {
    const [problem] = problemsOf({ ...credentials, WORKER_CONCURRENCY: "-1" });
    expect(problem).toBe("WORKER_CONCURRENCY: must be 1 or more (default 4)");
    expect(problem).not.toContain("whole number");
  });

  it("refuses addresses an operator would misread (octal, short forms) and proxy settings Express cannot use", () => {
    expect(problemsOf({ ...credentials, ALLOWED_CIDRS: "192.168.010.0/24" })[0]).toMatch(
      /^ALLOWED_CIDRS/,
    );
    expect(problemsOf({ ...credentials, ALLOWED_CIDRS: "10.1" })[0]).toMatch(/^ALLOWED_CIDRS/);
    // Every bad entry of a list in one run, not only the first.
    const [all] = problemsOf({ ...credentials, ALLOWED_CIDRS: "foo, 10.0.0.0/8, bar,1.2.3.4/40" });
    expect(all).toMatch(/"foo".*"bar".*"1\.2\.3\.4\/40"/);
    expect(problemsOf({ ...credentials, TRUST_PROXY: "0.0.0.0/0" })[0]).toMatch(/^TRUST_PROXY/);
    // Nearly everyone, which proxy-addr takes: half of IPv4, all of it written as IPv6.
    // A netmask spells a range too: 0.0.0.0/128.0.0.0 is 0.0.0.0/1.
    for (const wide of [
      "0.0.0.0/1",
      "::ffff:0:0/96",
      "::ffff:0.0.0.0/100",
      "::/8",
      "8000::/1",
      "0.0.0.0/128.0.0.0,128.0.0.0/128.0.0.0",
      "1.0.0.0/254.0.0.0",
    ]) {
      expect(problemsOf({ ...credentials, TRUST_PROXY: `10.0.0.1,${wide}` })[0]).toMatch(
        /^TRUST_PROXY: .*trusts nearly everyone/,
      );
    }
    for (const usual of [
      "10.0.0.0/8,172.16.0.0/12,fc00::/7",
      "10.0.0.0/255.0.0.0",
      "::ffff:10.0.0.0/104",
      "uniquelocal",
    ]) {
      expect(loadConfig({ ...credentials, TRUST_PROXY: usual }).http.trustProxy).toBe(usual);
    }
    expect(loadConfig({ ...credentials, TRUST_PROXY: "loopback,10.0.0.0/8" }).http.trustProxy).toBe(
      "loopback,10.0.0.0/8",
    );
    expect(loadConfig({ ...credentials, TRUST_PROXY: "2" }).http.trustProxy).toBe(2);
    // proxy-addr reads a leading 0 as octal (010.000.000.001 is 8.0.0.1) and 10.1 as 10.0.0.1.
    for (const odd of ["010.000.000.001", "loopback, 10.1", "010.0.0.0/8"]) {
      expect(problemsOf({ ...credentials, TRUST_PROXY: odd }).join("\n")).toMatch(
        /^TRUST_PROXY: .*not an IPv4 address of four decimal parts: proxy-addr reads 010\.0\.0\.1 as octal/m,
      );
    }
  });

  it("refuses an admin API open beyond this machine without ADMIN_TOKEN, and a bare / as callback path", () => {
    expect(problemsOf({ ...credentials, ADMIN_HOST: "0.0.0.0" })[0]).toMatch(/^ADMIN_TOKEN/);
    expect(
      loadConfig({ ...credentials, ADMIN_HOST: "0.0.0.0", ADMIN_TOKEN: "long-enough" }).admin.host,
    ).toBe("0.0.0.0");
    expect(problemsOf({ ...credentials, CALLBACK_PATH: "/" })[0]).toMatch(/^CALLBACK_PATH/);
  });

  it("refuses an ADMIN_TOKEN beyond visible ASCII, which curl and the CLI would send differently", () => {
    // Node reads header bytes as Latin-1: a token with ä matched the CLI's request but not
    // curl's, one with € matched nothing (and the CLI could not send it).
    for (const token of ["geheim-€-token", "schlüssel-1234", "two words here", "tab\there-123"]) {
      const problems = problemsOf({ ...credentials, ADMIN_TOKEN: token });
      expect(problems).toEqual([
        expect.stringMatching(
          /^ADMIN_TOKEN: must contain only visible ASCII characters \(no spaces, no letters beyond ASCII\)/,
        ),
      ]);
      // A secret: the message does not repeat it.
      expect(problems.join("\n")).not.toContain(token);
    }
    // What openssl rand -base64 and -hex make, and a hand-made one, start.
    for (const token of [
      "q83vEjRWeJq8/+9rGg0HUB2nK6s5mZ1XyLp4tQ0fA8E=",
      "0123456789abcdef",
      "Ab.c_d~e-f",
      // Tokens in use before the check, with punctuation curl sends as it is.
      "s3cret!$#%&*()",
    ]) {
      expect(loadConfig({ ...credentials, ADMIN_TOKEN: token }).admin.token).toBe(token);
    }
  });

  it("reads LOG_PRETTY as yes/no in any case, and names it when it is neither", () => {
    for (const value of ["1", "TRUE", "Yes", "on"]) {
      expect(loadConfig({ ...credentials, LOG_PRETTY: value }).log.pretty).toBe(true);
    }
    for (const value of ["0", "False", "NO", "off", ""]) {
      expect(loadConfig({ ...credentials, LOG_PRETTY: value }).log.pretty).toBe(false);
    }
    expect(problemsOf({ ...credentials, LOG_PRETTY: "maybe" })[0]).toMatch(/^LOG_PRETTY/);
  });

  it("lists in .env.example every LOG_PRETTY value it accepts", () => {
    const lines = readFileSync(new URL("../.env.example", import.meta.url), "utf8").split("\n");
    const comment = lines[lines.indexOf("# LOG_PRETTY=0") - 1] ?? "";
    for (const value of ["1", "true", "yes", "on", "0", "false", "no", "off"]) {
      expect(comment).toMatch(new RegExp(`\\b${value}\\b`));
    }
  });

  it("takes an IPv6 listen address bracketed as in a URL, and knows [::1] is this machine", () => {
    const config = loadConfig({ ...credentials, ADMIN_HOST: "[::1]", HOST: "[::]" });
    expect(config.admin.host).toBe("::1");
    expect(config.http.host).toBe("::");
    expect(loadConfig({ ...credentials, HOST: "[fe80::1%eth0]" }).http.host).toBe("fe80::1%eth0");
  });

  it("keeps done jobs 7 days and dead jobs 30 days, prunes hourly, and reads 0 as keep forever", () => {
    expect(loadConfig(credentials).retention).toEqual({
      doneMs: 604_800_000,
      deadMs: 2_592_000_000,
      pruneIntervalMs: 3_600_000,
    });
    expect(
      loadConfig({
        ...credentials,
        DONE_RETENTION_MS: "86400000",
        DEAD_RETENTION_MS: "0",
        PRUNE_INTERVAL_MS: "60000",
      }).retention,
    ).toEqual({ doneMs: 86_400_000, deadMs: null, pruneIntervalMs: 60_000 });
    expect(loadConfig({ ...credentials, DONE_RETENTION_MS: "0" }).retention.doneMs).toBeNull();
  });

  it("refuses a retention that is not a whole number or beyond 100 years, and a prune interval under 10 ms", () => {
    const problems = problemsOf({
      ...credentials,
      DONE_RETENTION_MS: "7d",
      DEAD_RETENTION_MS: String(101 * 365 * 24 * 3600 * 1000),
      PRUNE_INTERVAL_MS: "0",
    });
    expect(problems.map((problem) => problem.split(":")[0]).sort()).toEqual([
      "DEAD_RETENTION_MS",
      "DONE_RETENTION_MS",
      "PRUNE_INTERVAL_MS",
    ]);
  });

  it("refuses a duration a Node timer would run after 1 ms (over 2^31-1 ms), naming each variable", () => {
    const timers = [
      "REQUEST_TIMEOUT_MS",
      "LEASE_MS",
      "WORKER_POLL_MS",
      "PRUNE_INTERVAL_MS",
      "FINAPI_TIMEOUT_MS",
      "HTTP_SINK_TIMEOUT_MS",
      "POSTGRES_SINK_TIMEOUT_MS",
      "MODULE_SINK_TIMEOUT_MS",
      "SHUTDOWN_DELAY_MS",
    ];
    const tooLong = Object.fromEntries(timers.map((name) => [name, "2147483648"]));
    const problems = problemsOf({ ...credentials, ...tooLong, SHUTDOWN_TIMEOUT_MS: "2200000000" });
    expect(problems.map((problem) => problem.split(":")[0]).sort()).toEqual(
      [...timers, "SHUTDOWN_TIMEOUT_MS"].sort(),
    );
    expect(problems.join("\n")).toMatch(/WORKER_POLL_MS: must be at most 2147483647 .*1 ms/);
    const longest = Object.fromEntries(timers.map((name) => [name, "2147483647"]));
    const config = loadConfig({ ...credentials, ...longest, SHUTDOWN_TIMEOUT_MS: "2147481647" });
    expect(config.worker.pollMs).toBe(2_147_483_647);
    // main.ts's last-resort exit waits SHUTDOWN_EXIT_GRACE_MS longer: that timer must fit too.
    expect(config.shutdownTimeoutMs + SHUTDOWN_EXIT_GRACE_MS).toBe(2 ** 31 - 1);
    expect(problemsOf({ ...credentials, SHUTDOWN_TIMEOUT_MS: "2147481648" })[0]).toMatch(
      /^SHUTDOWN_TIMEOUT_MS: must be at most 2147481647/,
    );
  });

  it("has no shutdown delay unless SHUTDOWN_DELAY_MS asks for one, and refuses a negative one", () => {
    expect(loadConfig(credentials).shutdownDelayMs).toBe(0);
    expect(loadConfig({ ...credentials, SHUTDOWN_DELAY_MS: "5000" }).shutdownDelayMs).toBe(5000);
    expect(problemsOf({ ...credentials, SHUTDOWN_DELAY_MS: "-1" })[0]).toMatch(
      /^SHUTDOWN_DELAY_MS: /,
    );
  });

  it("lets ages and backoffs, which only set dates, go past 2^31-1 ms but not past a valid date", () => {
    const month = String(40 * 24 * 3600 * 1000);
    const config = loadConfig({
      ...credentials,
      JOB_MAX_AGE_MS: String(90 * 24 * 3600 * 1000),
      BACKOFF_MAX_MS: month,
      NOT_FOUND_GRACE_MS: month,
    });
    expect(config.worker.backoffMaxMs).toBe(Number(month));
    expect(
      problemsOf({ ...credentials, BACKOFF_MAX_MS: String(Number.MAX_SAFE_INTEGER) })[0],
    ).toMatch(/^BACKOFF_MAX_MS/);
  });

  it("returns a frozen config", () => {
    const config = loadConfig(credentials);
    expect(Object.isFrozen(config.finapi)).toBe(true);
  });
});
