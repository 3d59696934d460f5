// The workload `granary chaos` runs (and the master-killed cluster tests run): an open-loop writer that starts
// one small file every 1000/opsPerSecond ms whatever the cluster is doing, so an outage piles up in-flight
// operations instead of quietly slowing the writer down. Every operation is recorded (start, end, code); the
// files that were acknowledged are read back and sha256-checked afterwards. Times are epoch ms (Date.now) so
// they line up with the servers' log lines.
import { createHash, randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { isGranaryError } from '../../shared/errors.js'
import { assert } from '../../shared/assert.js'
import type { GranaryClient } from '../index.js'

export interface WorkloadOptions {
  opsPerSecond: number          // files started per second (open loop)
  fileSizeBytes: number
  durationMs: number            // how long new files keep being started
  dir: string                   // files go to `${dir}/f<index>`
  deadlineMs?: number           // each write's budget (default: the client's)
  inFlightMax?: number          // past this many unfinished writes, a due write is skipped (and counted)
}

export interface OpRecord {
  index: number
  path: string
  startMs: number
  endMs: number | null          // null while in flight
  ok: boolean
  code: string | null           // the error code of a failed write
  message: string | null
  sha256: string                // of the bytes written
}

export interface WorkloadResult {
  records: OpRecord[]
  skippedCount: number          // due but not started: inFlightMax writes were already unfinished
  startMs: number
  endMs: number
}

export const workloadInFlightMaxDefault = 10_000
export const workloadOpsMax = 1_000_000          // records kept (one per write): opsPerSecond × durationMs is bounded
export const verifyConcurrency = 16

export class WriteWorkload {
  readonly #client: GranaryClient
  readonly #options: Required<Omit<WorkloadOptions, 'deadlineMs'>> & { deadlineMs: number | undefined }
  readonly #records: OpRecord[] = []
  #inFlight = 0
  #skippedCount = 0
  #stopped = false

  constructor (client: GranaryClient, options: WorkloadOptions) {
    assert(options.opsPerSecond > 0 && options.opsPerSecond <= 100_000, 'opsPerSecond within 1..100000')
    assert(Number.isSafeInteger(options.fileSizeBytes) && options.fileSizeBytes >= 0, 'fileSizeBytes is a whole number')
    assert(options.durationMs > 0, 'durationMs is positive')
    assert(options.opsPerSecond * options.durationMs / 1000 <= workloadOpsMax, 'the workload starts at most workloadOpsMax writes')
    this.#client = client
    this.#options = { inFlightMax: workloadInFlightMaxDefault, ...options, deadlineMs: options.deadlineMs }
  }

  get records (): readonly OpRecord[] { return this.#records }
  get inFlightCount (): number { return this.#inFlight }
  get acknowledgedCount (): number { return this.#records.filter((r) => r.ok).length }

  // Ends the schedule early (writes already started still finish).
  stop (): void { this.#stopped = true }

  // Starts writes on schedule until durationMs has passed, then waits for every write to settle.
  async run (): Promise<WorkloadResult> {
    const { opsPerSecond, durationMs, inFlightMax } = this.#options
    const intervalMs = 1000 / opsPerSecond
    const startMs = Date.now()
    const pending = new Set<Promise<void>>()
    for (let index = 0; !this.#stopped; index++) {
      const dueMs = startMs + index * intervalMs
      if (dueMs - startMs >= durationMs) break
      const waitMs = dueMs - Date.now()
      if (waitMs > 0) await sleep(waitMs)
      if (this.#inFlight >= inFlightMax) { this.#skippedCount++; continue }
      const write = this.#writeOne(index)
      pending.add(write)
      void write.finally(() => pending.delete(write))
    }
    await Promise.all(pending)
    return { records: this.#records, skippedCount: this.#skippedCount, startMs, endMs: Date.now() }
  }

  async #writeOne (index: number): Promise<void> {
    const data = randomBytes(this.#options.fileSizeBytes)
    const record: OpRecord = {
      index, path: `${this.#options.dir}/f${index}`, startMs: Date.now(), endMs: null, ok: false, code: null, message: null,
      sha256: createHash('sha256').update(data).digest('hex')
    }
    this.#records.push(record)
    this.#inFlight++
    try {
      const options = this.#options.deadlineMs === undefined ? {} : { deadlineMs: this.#options.deadlineMs }
      await this.#client.writeFile(record.path, data, options)
      record.ok = true
    } catch (err) {
      record.code = isGranaryError(err) ? err.code : String((err as { code?: unknown })?.code ?? 'ERROR')
      record.message = err instanceof Error ? err.message : String(err)
    } finally {
      record.endMs = Date.now()
      this.#inFlight--
    }
  }
}

export interface VerifyResult { checkedCount: number, missing: string[], corrupt: string[], unreadable: Array<{ path: string, code: string }> }

// Reads back every acknowledged file and compares its sha256 with what was written.
export async function verifyAcknowledged (client: GranaryClient, records: readonly OpRecord[], concurrency = verifyConcurrency): Promise<VerifyResult> {
  const acknowledged = records.filter((r) => r.ok)
  const result: VerifyResult = { checkedCount: 0, missing: [], corrupt: [], unreadable: [] }
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, acknowledged.length) }, async () => {
    while (next < acknowledged.length) {
      const record = acknowledged[next++] as OpRecord
      try {
        const data = await client.readFile(record.path)
        if (createHash('sha256').update(data).digest('hex') !== record.sha256) result.corrupt.push(record.path)
      } catch (err) {
        const code = isGranaryError(err) ? err.code : 'ERROR'
        if (code === 'GRN_NOT_FOUND') result.missing.push(record.path)
        else result.unreadable.push({ path: record.path, code })
      }
      result.checkedCount++
    }
  }))
  return result
}

export interface OutageWindow { killAtMs: number, recoveredAtMs: number }
export interface OutageOps { opCount: number, failedCount: number, worstLatencyMs: number, failedCodes: Record<string, number> }

// The writes that were in flight at some moment of [killAtMs, recoveredAtMs]: how many, how many failed, and
// the slowest one's latency (a write still unfinished counts up to nowMs).
export function opsDuring (records: readonly OpRecord[], window: OutageWindow, nowMs = Date.now()): OutageOps {
  const out: OutageOps = { opCount: 0, failedCount: 0, worstLatencyMs: 0, failedCodes: {} }
  for (const record of records) {
    const endMs = record.endMs ?? nowMs
    if (record.startMs > window.recoveredAtMs || endMs < window.killAtMs) continue
    out.opCount++
    out.worstLatencyMs = Math.max(out.worstLatencyMs, endMs - record.startMs)
    if (record.endMs !== null && !record.ok) {
      out.failedCount++
      const code = record.code ?? 'ERROR'
      out.failedCodes[code] = (out.failedCodes[code] ?? 0) + 1
    }
  }
  return out
}

// The first write that finished successfully at or after atMs (the cluster's first acknowledged mutation).
export function firstSuccessAfter (records: readonly OpRecord[], atMs: number): number | null {
  let first: number | null = null
  for (const record of records) {
    if (record.ok && record.endMs !== null && record.endMs >= atMs && (first === null || record.endMs < first)) first = record.endMs
  }
  return first
}

export function latencySummary (records: readonly OpRecord[]): { count: number, p50Ms: number, p99Ms: number, maxMs: number } {
  const latencies = records.filter((r) => r.endMs !== null).map((r) => (r.endMs as number) - r.startMs).sort((a, b) => a - b)
  const at = (q: number): number => latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] as number
  return { count: latencies.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: latencies[latencies.length - 1] ?? 0 }
}
