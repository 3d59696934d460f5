// How every bench section prints: one aligned line per figure, medians, fixed number formats; and dropping the
// page cache before a cold read.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

export function fmt (n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

export function line (name: string, value: string, extra = ''): void {
  process.stdout.write(`${name.padEnd(44)} ${value.padStart(14)}  ${extra}\n`)
}

// Drops the OS page cache (needs root) so a read measures the disk, not memory; false when it cannot.
export function dropPageCache (): boolean {
  try { execFileSync('sync'); writeFileSync('/proc/sys/vm/drop_caches', '3\n'); return true } catch { return false }
}
