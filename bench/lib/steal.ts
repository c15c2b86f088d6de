import { readFileSync } from "node:fs";

interface CpuTotals {
  steal: number;
  total: number;
}

function readTotals(): CpuTotals | undefined {
  try {
    // First line of /proc/stat: "cpu user nice system idle iowait irq softirq steal ..."
    const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
      .trim()
      .split(/\s+/)
      .slice(1, 9)
      .map(Number);
    if (fields.length < 8 || fields.some((value) => !Number.isFinite(value))) return undefined;
    return { steal: fields[7] ?? 0, total: fields.reduce((sum, value) => sum + value, 0) };
  } catch {
    return undefined;
  }
}

/**
 * The share of the machine's CPU time the hypervisor gave to other guests (Linux "steal")
 * between start() and the call of the function it returns, in percent; undefined where
 * /proc/stat is not there. The build machines are shared VMs: at 25-30 % steal, two
 * cores are about 1.4, and a CPU-bound figure moves with it. Printed beside the figures
 * so that runs can be compared.
 */
export function startStealMeter(): () => number | undefined {
  const before = readTotals();
  return () => {
    const after = readTotals();
    if (!before || !after || after.total <= before.total) return undefined;
    return (100 * (after.steal - before.steal)) / (after.total - before.total);
  };
}

export function formatSteal(percent: number | undefined): string {
  return percent === undefined ? "n/a" : `${percent.toFixed(0)} %`;
}
