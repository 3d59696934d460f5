// How the CLI shows things to people: sizes, times, aligned tables, and the progress bar (stderr, only when
// stderr is a terminal — a pipe or a log file gets nothing extra).
import { Transform, type Writable } from 'node:stream'
import { createRequire } from 'node:module'
import type cliProgressModule from 'cli-progress'

// cli-progress is loaded by the first bar drawn, not with this file: every command formats something, and only
// a transfer on a terminal draws a bar (a piped `granary cat` or a `granary stat` need not load it).
let cliProgress: typeof cliProgressModule | undefined
function loadCliProgress (): typeof cliProgressModule {
  cliProgress ??= createRequire(import.meta.url)('cli-progress') as typeof cliProgressModule
  return cliProgress
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++ }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit] as string}`
}

export function formatRate (bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`
}

// Local time, to the second: '2025-11-21 12:50:01'.
export function formatTime (epochMs: number): string {
  const d = new Date(epochMs)
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

export function formatAge (ageMs: number | null): string {
  if (ageMs === null) return 'never'
  if (ageMs < 10_000) return `${(ageMs / 1000).toFixed(1)} s ago`
  if (ageMs < 120_000) return `${Math.round(ageMs / 1000)} s ago`
  return `${Math.round(ageMs / 60_000)} min ago`
}

// Columns padded to their widest cell; `right` names the columns aligned right (numbers).
export function formatTable (rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => { widths[i] = Math.max(widths[i] ?? 0, cell.length) })
  return rows.map((row) => row.map((cell, i) => {
    const width = widths[i] ?? 0
    if (i === row.length - 1 && !right.has(i)) return cell
    return right.has(i) ? cell.padStart(width) : cell.padEnd(width)
  }).join('  ')).join('\n') + '\n'
}

export interface ProgressTarget extends Writable { isTTY?: boolean }

// A transfer's progress: bytes, rate and ETA. start() returns undefined when the stream is not a TTY, and
// callers then add no counting stage at all.
export class Progress {
  readonly #bar: cliProgressModule.SingleBar
  readonly #startMs = Date.now()
  readonly #totalBytes: number | null
  #bytes = 0

  private constructor (stream: ProgressTarget, label: string, totalBytes: number | null) {
    this.#totalBytes = totalBytes
    const format = totalBytes === null
      ? `${label} {done} | {rate}`
      : `${label} [{bar}] {percentage}% | {done} / {total_h} | {rate} | ETA {eta_formatted}`
    const bars = loadCliProgress()
    this.#bar = new bars.SingleBar({ stream, format, hideCursor: true, barsize: 30, fps: 8, etaBuffer: 50 }, bars.Presets.shades_classic)
    this.#bar.start(totalBytes ?? 0, 0, this.#payload())
  }

  static start (stream: ProgressTarget, label: string, totalBytes: number | null): Progress | undefined {
    if (stream.isTTY !== true) return undefined
    return new Progress(stream, label, totalBytes)
  }

  get bytes (): number { return this.#bytes }

  // A pass-through stage that counts bytes; the Buffers themselves go on untouched.
  counter (): Transform {
    return new Transform({
      transform: (piece: Buffer, _encoding, callback) => {
        this.#bytes += piece.length
        this.#bar.update(this.#totalBytes === null ? 0 : this.#bytes, this.#payload())
        callback(null, piece)
      },
    })
  }

  stop (): void {
    this.#bar.update(this.#totalBytes === null ? 0 : this.#bytes, this.#payload())
    this.#bar.stop()
  }

  #payload (): Record<string, string> {
    const seconds = Math.max(0.001, (Date.now() - this.#startMs) / 1000)
    return { done: formatBytes(this.#bytes), total_h: formatBytes(this.#totalBytes ?? 0), rate: formatRate(this.#bytes / seconds) }
  }
}
