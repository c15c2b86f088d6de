import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildPdf, buildZip } from "../../src/simulator/documents.js";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import { authed, checkUrl, tokenOf } from "./helpers.js";

/** Every xref entry must point at the "N 0 obj" it names, or strict readers reject the file. */
function expectValidXref(pdf: Buffer): void {
  const text = pdf.toString("latin1");
  expect(text.startsWith("%PDF-")).toBe(true);
  expect(text.trimEnd().endsWith("%%EOF")).toBe(true);
  const startxref = Number(/startxref\n(\d+)\n%%EOF/.exec(text)?.[1]);
  expect(text.slice(startxref, startxref + 4)).toBe("xref");
  const entries = [...text.slice(startxref).matchAll(/^(\d{10}) 00000 n $/gm)];
  expect(entries.length).toBeGreaterThan(0);
  entries.forEach((m, i) => {
    const offset = Number(m[1]);
    expect(text.slice(offset, offset + `${i + 1} 0 obj`.length)).toBe(`${i + 1} 0 obj`);
  });
}

interface ZipListing {
  name: string;
  data: Buffer;
}

/** Reads the zip the way unzip does: from the end-of-central-directory record backwards. */
function readZip(zip: Buffer): ZipListing[] {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  expect(eocd).toBe(zip.length - 22);
  const count = zip.readUInt16LE(eocd + 10);
  const cdSize = zip.readUInt32LE(eocd + 12);
  const cdOffset = zip.readUInt32LE(eocd + 16);
  expect(cdOffset + cdSize).toBe(eocd);
  const out: ZipListing[] = [];
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    expect(zip.readUInt32LE(p)).toBe(0x02014b50);
    const crc = zip.readUInt32LE(p + 16);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localAt = zip.readUInt32LE(p + 42);
    const name = zip.toString("utf8", p + 46, p + 46 + nameLen);
    expect(zip.readUInt32LE(localAt)).toBe(0x04034b50);
    const dataAt = localAt + 30 + zip.readUInt16LE(localAt + 26) + zip.readUInt16LE(localAt + 28);
    const data = zip.subarray(dataAt, dataAt + size);
    expect(crc32(data)).toBe(crc);
    out.push({ name, data });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

const hasUnzip = spawnSync("unzip", ["-v"], { stdio: "ignore" }).status === 0;

describe("document builders", () => {
  it("builds a PDF with a correct cross-reference table, escaping text", () => {
    expectValidXref(buildPdf("Title (with) \\ parens", ["Zeile äöü", "second"]));
  });

  it("builds a zip with several entries that reads back", () => {
    const entries = [
      { name: "a.pdf", data: buildPdf("a", []) },
      { name: "b.txt", data: Buffer.from("hello") },
    ];
    const listed = readZip(buildZip(entries));
    expect(listed.map((e) => e.name)).toEqual(["a.pdf", "b.txt"]);
    expect(listed[1]?.data.toString()).toBe("hello");
  });
});

describe("document endpoints", () => {
  let sim: RunningSimulator;
  let token: string;
  let dir: string;
  beforeAll(async () => {
    sim = await startSimulator();
    token = await tokenOf(sim);
    dir = mkdtempSync(join(tmpdir(), "sim-docs-"));
  });
  afterAll(async () => {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the account analysis as a valid PDF", async () => {
    const res = await fetch(`${checkUrl(sim)}/analysis/account/pdf`, authed(token));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/pdf");
    expect(res.headers.get("content-disposition")).toMatch(/attachment; filename=".+\.pdf"/);
    const pdf = Buffer.from(await res.arrayBuffer());
    expect(pdf.subarray(0, 5).toString("latin1")).toBe("%PDF-");
    expectValidXref(pdf);
    expect(
      Buffer.compare(
        pdf,
        Buffer.from(
          await (await fetch(`${checkUrl(sim)}/analysis/account/pdf`, authed(token))).arrayBuffer(),
        ),
      ),
    ).toBe(0);
  });

  it("serves the DAC-for-loan documents as a valid zip with one PDF", async () => {
    const res = await fetch(`${checkUrl(sim)}/analysis/dacForLoan/zip`, authed(token));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/zip");
    const zip = Buffer.from(await res.arrayBuffer());
    expect(zip.subarray(0, 4).toString("latin1")).toBe("PK\x03\x04");
    const entries = readZip(zip);
    expect(entries).toHaveLength(1);
    expect(entries[0]?.name).toMatch(/\.pdf$/);
    expectValidXref(entries[0]?.data ?? Buffer.alloc(0));

    if (hasUnzip) {
      const file = join(dir, "dac.zip");
      writeFileSync(file, zip);
      expect(execFileSync("unzip", ["-l", file]).toString()).toMatch(/1 file/);
      expect(execFileSync("unzip", ["-t", file]).toString()).toMatch(/No errors detected/);
    }
  });
});
