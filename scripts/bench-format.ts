// How every bench section prints: one aligned line per figure, medians, fixed number formats; dropping the
// page cache before a cold read; and the disk's own rate (dd), the baseline the data path is measured against.
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
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

// user + system CPU a process has used so far, in µs (Linux /proc; clock ticks of 10 ms). A busy machine
// distorts a CPU figure far less than a rate.
export function processCpuUs (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
  return (Number(fields[11]) + Number(fields[12])) * 10_000
}

// Drops the OS page cache (needs root) so a read measures the disk, not memory; false when it cannot.
export function dropPageCache (): boolean {
  try { execFileSync('sync'); writeFileSync('/proc/sys/vm/drop_caches', '3\n'); return true } catch { return false }
}

// dd writes 1 GiB of zeros into `dir` and fdatasyncs it: the disk's sequential write rate in MB/s (MiB/s).
export function ddMBps (dir: string): number {
  const file = join(dir, 'dd.bin')
  const started = process.hrtime.bigint()
  execFileSync('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=1024', 'conv=fdatasync'], { stdio: 'ignore' })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  rmSync(file, { force: true })
  return 1024 / seconds
}
