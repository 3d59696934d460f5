// `granary chaos`: kill the master on purpose and measure what clients see. Starts a real cluster with
// `granary up` on a folder of its own, runs an open-loop write workload (chaos-workload.ts), SIGKILLs the
// master at the given times, lets the supervisor restart it, and prints per outage: detection (SIGKILL → the
// supervisor saw the exit), recovery (the new master process started or its warm spare was activated → it
// listened → the first successful stat → the first acknowledged write), the worst latency of the writes in
// flight meanwhile, and how many failed. Then every acknowledged file is read back and sha256-checked.
// Exit code 1 when a write failed or a file did not verify.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { signClient, type Credentials } from '../../shared/auth.js'
import { readCredentialsFile } from '../credentials.js'
import { GranaryError } from '../../shared/errors.js'
import { connect } from '../index.js'
import { UpCluster, processStartMs } from './chaos-cluster.js'
import { WriteWorkload, verifyAcknowledged, opsDuring, firstSuccessAfter, latencySummary, workloadOpsMax, type OpRecord, type VerifyResult } from './chaos-workload.js'

export const chaosUsage = `Usage: granary chaos [options]

Starts a local cluster with 'granary up' in a temporary folder, writes small files at a fixed rate, SIGKILLs
the master at the given times and lets the supervisor restart it. Prints per outage: detection ms, recovery
ms (process start or spare activation → listening → first successful stat → first acknowledged write), the
worst write latency and the failed writes; then reads back every acknowledged file and checks its sha256.
Exits 1 if any write failed or any file did not verify.

Options:
  --ops-per-second N        files started per second, whatever the cluster is doing (default 100)
  --file-size BYTES         size of each file; K and M suffixes allowed (default 4K)
  --duration-ms MS          how long the workload runs (default 20000)
  --kill-at-ms LIST         comma-separated times after the start to SIGKILL the master (default 5000)
  --down-ms MS              keep the master down this long before the restart (up --restart-delay-ms; default 0)
  --deadline-ms MS          each client operation's budget (default 10000)
  --chunkservers N          (default 3)
  --shadows N               shadow masters (default 0: the workload only writes)
  --heartbeat-interval-ms MS   chunkserver heartbeat interval (default 200)
  --data DIR                cluster folder (default: a new temporary folder, removed afterwards)
  --keep                    keep the cluster folder (logs) afterwards
  --json                    print the figures as JSON
  -h, --help                this text

Example:
  granary chaos --ops-per-second 100 --file-size 4K --duration-ms 20000 --kill-at-ms 5000,12000 --down-ms 1000
`

interface ChaosOptions {
  opsPerSecond: number, fileSizeBytes: number, durationMs: number, killAtMs: number[], downMs: number, deadlineMs: number,
  chunkservers: number, shadows: number, heartbeatIntervalMs: number, dataDir: string | null, keep: boolean, json: boolean
}

export interface OutageReport {
  killAtOffsetMs: number          // after the workload started
  oldPid: number
  newPid: number | null
  spare: boolean                  // restarted from granary up's warm spare (else a cold process start)
  detectionMs: number | null      // SIGKILL → the supervisor's "restarting" line
  startMs: number | null          // SIGKILL → the new process started, or the spare was activated
  listeningMs: number | null      // SIGKILL → the new master's ready line
  firstStatMs: number | null      // SIGKILL → the first successful stat
  firstWriteMs: number | null     // SIGKILL → the first acknowledged write
  worstLatencyMs: number
  inFlightCount: number
  failedCount: number
  failedCodes: Record<string, number>
}

const startTimeoutMs = 60_000
const probeIntervalMs = 5
const probeTimeoutMs = 1_000
const outageWaitMs = 60_000       // a master not back within this is reported as not recovered

export async function runChaos (argv: string[]): Promise<void> {
  const options = parseChaosArgs(argv)
  if (options === null) { process.stdout.write(chaosUsage); return }
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'granary-chaos-'))
  const cluster = new UpCluster({
    dataDir, chunkservers: options.chunkservers, shadows: options.shadows, heartbeatIntervalMs: options.heartbeatIntervalMs,
    restartDelayMs: options.downMs, startTimeoutMs
  })
  // Whatever ends this process, the cluster it started goes too (granary up stops its children on SIGTERM).
  const onExit = (): void => { cluster.killSync() }
  const onSignal = (signal: NodeJS.Signals): void => { cluster.killSync(); process.exit(signal === 'SIGINT' ? 130 : 143) }
  process.once('exit', onExit)
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    say(options, `granary chaos: cluster in ${dataDir}; ${options.opsPerSecond} files/s of ${options.fileSizeBytes} bytes for ${options.durationMs} ms, master SIGKILLed at ${options.killAtMs.join(', ')} ms, down ${options.downMs} ms`)
    await cluster.start()
    const result = await runWorkload(cluster, options)
    print(options, result)
    if (result.failedCount > 0 || result.verify.missing.length + result.verify.corrupt.length + result.verify.unreadable.length > 0) process.exitCode = 1
  } finally {
    await cluster.stop()
    process.removeListener('exit', onExit)
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
    if (!options.keep && options.dataDir === null) rmSync(dataDir, { recursive: true, force: true })
  }
}

interface ChaosResult {
  outages: OutageReport[]
  records: readonly OpRecord[]
  failedCount: number
  skippedCount: number
  verify: VerifyResult
  latency: ReturnType<typeof latencySummary>
}

async function runWorkload (cluster: UpCluster, options: ChaosOptions): Promise<ChaosResult> {
  const masterUrl = cluster.master().url
  const client = connect({ masters: masterUrl, deadlineMs: options.deadlineMs, keepAliveTimeoutMs: 1_000, credentials: cluster.credentialsFile })
  try {
    const dir = `/chaos-${Date.now()}`
    await client.mkdir(dir)
    const workload = new WriteWorkload(client, { opsPerSecond: options.opsPerSecond, fileSizeBytes: options.fileSizeBytes, durationMs: options.durationMs, dir })
    const startMs = Date.now()
    const running = workload.run()
    const outages: Array<OutageReport & { killAtMs: number }> = []
    for (const offsetMs of options.killAtMs) {
      const waitMs = startMs + offsetMs - Date.now()
      if (waitMs > 0) await sleep(waitMs)
      outages.push(await killAndWatch(cluster, masterUrl, startMs))
    }
    const done = await running
    const reports = outages.map(({ killAtMs, ...outage }): OutageReport => {
      const firstWriteAtMs = firstSuccessAfter(done.records, killAtMs)
      const ops = opsDuring(done.records, { killAtMs, recoveredAtMs: firstWriteAtMs ?? done.endMs })
      return {
        ...outage, firstWriteMs: firstWriteAtMs === null ? null : firstWriteAtMs - killAtMs,
        worstLatencyMs: ops.worstLatencyMs, inFlightCount: ops.opCount, failedCount: ops.failedCount, failedCodes: ops.failedCodes
      }
    })
    const verify = await verifyAcknowledged(client, done.records)
    return {
      outages: reports, records: done.records, failedCount: done.records.filter((r) => !r.ok).length,
      skippedCount: done.skippedCount, verify, latency: latencySummary(done.records)
    }
  } finally {
    await client.close()
  }
}

// One outage: SIGKILL the current master by pid, then time the supervisor noticing (cluster.json lastExit),
// the new process (start or spare activation, from /proc and its log), its ready line, and the first stat.
async function killAndWatch (cluster: UpCluster, masterUrl: string, startMs: number): Promise<OutageReport & { killAtMs: number }> {
  const old = cluster.master()
  if (old.state !== 'running') throw new GranaryError('GRN_UNAVAILABLE', ['the master', `is ${old.state}, not running: cannot kill it`])
  const fromLine = cluster.lines.length
  const killAtMs = Date.now()
  process.kill(old.pid, 'SIGKILL')
  const probe = firstSuccessfulStat(masterUrl, killAtMs + outageWaitMs, readCredentialsFile(cluster.credentialsFile))
  const noticed = await cluster.waitForLine((text) => text.includes(`(pid ${old.pid})`) && text.includes('restarting'), fromLine, outageWaitMs, 'the supervisor to notice the kill').catch(() => null)
  const restarted = await cluster.waitForLine((text) => text.includes('restarted as pid'), noticed?.index ?? fromLine, outageWaitMs, 'the supervisor to restart the master').catch(() => null)
  const firstStatAtMs = await probe
  const newPid = restarted === null ? null : Number(/restarted as pid (\d+)/.exec(restarted.text)?.[1])
  // The supervisor's own clock for the exit (cluster.json), not when its line reached this busy process.
  const lastExit = cluster.master().lastExit
  const noticedAtMs = lastExit?.pid === old.pid ? lastExit.atMs : noticed?.atMs
  const logLines = newPid === null ? [] : cluster.masterLogLines(old.logPath, newPid)
  const activated = logLines.find((l) => l.msg.startsWith('standby activated'))
  const ready = logLines.find((l) => l.msg === 'ready')
  const startedAtMs = activated?.time ?? (newPid === null ? null : processStartMs(newPid))
  const since = (atMs: number | null | undefined): number | null => atMs === null || atMs === undefined ? null : atMs - killAtMs
  return {
    killAtMs, killAtOffsetMs: killAtMs - startMs, oldPid: old.pid, newPid, spare: activated !== undefined,
    detectionMs: since(noticedAtMs), startMs: since(startedAtMs), listeningMs: since(ready?.time), firstStatMs: since(firstStatAtMs),
    firstWriteMs: null, worstLatencyMs: 0, inFlightCount: 0, failedCount: 0, failedCodes: {}
  }
}

async function firstSuccessfulStat (masterUrl: string, untilMs: number, credentials: Credentials): Promise<number | null> {
  while (Date.now() < untilMs) {
    try {
      const res = await request(`${masterUrl}/fs/stat?path=/`, { headersTimeout: probeTimeoutMs, bodyTimeout: probeTimeoutMs, headers: signClient(credentials, 'GET', '/fs/stat?path=/', null) })
      await res.body.dump()
      if (res.statusCode === 200) return Date.now()
    } catch {}
    await sleep(probeIntervalMs)
  }
  return null
}

function print (options: ChaosOptions, result: ChaosResult): void {
  if (options.json) {
    const { records, ...rest } = result
    process.stdout.write(JSON.stringify({ ...rest, opCount: records.length, options }, null, 2) + '\n')
    return
  }
  const ms = (value: number | null): string => value === null ? '—' : `${value} ms`
  for (const [i, o] of result.outages.entries()) {
    say(options, `outage ${i + 1} at +${(o.killAtOffsetMs / 1000).toFixed(2)} s: master pid ${o.oldPid} → ${String(o.newPid ?? 'none')} (${o.spare ? 'warm spare activated' : 'cold start'})`)
    say(options, `  detection     ${ms(o.detectionMs).padStart(9)}  SIGKILL → the supervisor saw the exit`)
    say(options, `  recovery      ${ms(o.firstWriteMs).padStart(9)}  ${o.spare ? 'spare activated' : 'process start'} ${ms(o.startMs)} → listening ${ms(o.listeningMs)} → first stat ${ms(o.firstStatMs)} → first write ${ms(o.firstWriteMs)} (all after SIGKILL)`)
    say(options, `  worst write   ${ms(o.worstLatencyMs).padStart(9)}  of ${o.inFlightCount} writes in flight during the outage; failed ${o.failedCount}${o.failedCount > 0 ? ` ${JSON.stringify(o.failedCodes)}` : ''}`)
  }
  const v = result.verify
  say(options, `writes: ${result.records.length} started, ${result.records.length - result.failedCount} acknowledged, ${result.failedCount} failed, ${result.skippedCount} skipped; latency p50 ${result.latency.p50Ms} ms, p99 ${result.latency.p99Ms} ms, max ${result.latency.maxMs} ms`)
  say(options, `verify: ${v.checkedCount} acknowledged files read back: ${v.checkedCount - v.missing.length - v.corrupt.length - v.unreadable.length} intact, ${v.missing.length} missing, ${v.corrupt.length} corrupt, ${v.unreadable.length} unreadable`)
}

function say (options: ChaosOptions, text: string): void {
  if (!options.json) process.stdout.write(text + '\n')
}

// null = help was asked for.
export function parseChaosArgs (argv: string[]): ChaosOptions | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      'ops-per-second': { type: 'string', default: '100' }, 'file-size': { type: 'string', default: '4K' },
      'duration-ms': { type: 'string', default: '20000' }, 'kill-at-ms': { type: 'string', default: '5000' },
      'down-ms': { type: 'string', default: '0' }, 'deadline-ms': { type: 'string', default: '10000' },
      chunkservers: { type: 'string', default: '3' }, shadows: { type: 'string', default: '0' },
      'heartbeat-interval-ms': { type: 'string', default: '200' }, data: { type: 'string' },
      keep: { type: 'boolean', default: false }, json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true,
    allowPositionals: false
  })
  if (values.help === true) return null
  const durationMs = whole('--duration-ms', values['duration-ms'], 1, 3_600_000)
  const killAtMs = (values['kill-at-ms'] ?? '').split(',').filter((s) => s.trim() !== '').map((s) => whole('--kill-at-ms', s.trim(), 0, durationMs))
  if (killAtMs.some((at, i) => i > 0 && at <= (killAtMs[i - 1] as number))) throw usage('--kill-at-ms must list increasing times')
  const opsPerSecond = whole('--ops-per-second', values['ops-per-second'], 1, 10_000)
  if (opsPerSecond * durationMs / 1000 > workloadOpsMax) throw usage(`--ops-per-second × --duration-ms starts more than ${workloadOpsMax} writes`)
  return {
    opsPerSecond,
    fileSizeBytes: bytes('--file-size', values['file-size'] ?? ''),
    durationMs, killAtMs,
    downMs: whole('--down-ms', values['down-ms'], 0, 600_000),
    deadlineMs: whole('--deadline-ms', values['deadline-ms'], 1, 3_600_000),
    chunkservers: whole('--chunkservers', values.chunkservers, 1, 64),
    shadows: whole('--shadows', values.shadows, 0, 4),
    heartbeatIntervalMs: whole('--heartbeat-interval-ms', values['heartbeat-interval-ms'], 10, 60_000),
    dataDir: values.data ?? null, keep: values.keep === true, json: values.json === true
  }
}

function whole (flag: string, raw: string | undefined, min: number, max: number): number {
  const value = Number(raw)
  if (raw === undefined || !/^\d+$/.test(raw) || value < min || value > max) throw usage(`${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  return value
}

const sizeUnits: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1024 * 1024, mib: 1024 * 1024 }
const fileSizeBytesMax = 64 * 1024 * 1024   // the workload keeps each file's bytes while it writes it

function bytes (flag: string, raw: string): number {
  const match = /^(\d+)\s*([a-zA-Z]*)$/.exec(raw.trim())
  const unit = sizeUnits[(match?.[2] ?? '?').toLowerCase()]
  const value = match === null || unit === undefined ? NaN : Number(match[1]) * unit
  if (!Number.isSafeInteger(value) || value > fileSizeBytesMax) throw usage(`${flag} must be bytes (K and M suffixes allowed) up to ${fileSizeBytesMax}, got ${JSON.stringify(raw)}`)
  return value
}

function usage (message: string): GranaryError {
  return new GranaryError('GRN_INVALID_ARGUMENT', [`${message} (see 'granary chaos --help')`])
}
