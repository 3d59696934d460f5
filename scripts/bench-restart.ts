// npm run bench -- restart: how long a killed master takes to answer again, and whether that grows with the
// namespace. Fills a master database with 10k, then 100k, then 1M empty files (1,000 per directory) through
// the master's own write path — create + complete ops submitted to its CommitQueue and applied by apply(),
// each logged in the oplog, in-process on the data folder while no master process runs — then starts
// `granary master` on it and, 5 times per size, SIGKILLs it and times SIGKILL → first successful stat of a
// file deep in the namespace, two ways: a cold start (a new process, as systemd's Restart=always does) and
// granary up's warm spare (activated by "go"). Prints medians, the 1M/10k ratio, the master's memory and the
// database size at 1M files beside issue 13's targets (RSS ≤ 150 MB, database ≤ 400 MB): VmRSS and VmHWM
// (peak) of the serving master right after the last restart, and again after a walk that lists every
// directory and stats 1,000 files; master.db and its WAL apart. Then the report's (namespace-scanning)
// latency, and `granary chaos` for the 4 KiB-every-10 ms workload. Asserts nothing.
// GRANARY_BENCH_RESTART_SIZES (comma-separated file counts, ascending; default 10000,100000,1000000) runs
// only those sizes, e.g. 1000000 for the memory and size figures alone; GRANARY_BENCH_RESTART_CHAOS=0 skips chaos.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import Database from 'better-sqlite3'
import { request } from 'undici'
import { resolveMasterConfig } from '../shared/config.js'
import { newLeaseId, type InodeId } from '../shared/ids.js'
import { oplogRecordAgeMsMax, oplogRecordsKeptMax, oplogRecordsKeptMin, oplogTrimBatchMax } from '../shared/limits.js'
import { cliPath, spawnRole, type SpawnedRole } from '../shared/process.js'
import { openMaster } from '../master/main.js'
import { trimOplogRetained, type RetentionBounds } from '../master/oplog.js'
import type { Db } from '../master/db.js'
import { SpareMaster } from '../client/cluster/up-standby.js'
import { fmt, line, median } from './bench-format.js'

const defaultSizes = [10_000, 100_000, 1_000_000]
const sizesMax = 10_000_000
const rssTargetBytes = 150e6           // issue 13: master RSS ≤ 150 MB at 1M files
const dbTargetBytes = 400e6            // issue 13: database ≤ 400 MB at 1M files
const filesPerDir = 1000
const restartsPerSize = 5
const submitWaveMax = 10_000          // ops submitted before awaiting them (the commit queue holds 50k)
const probeIntervalMs = 1
const readyTimeoutMs = 60_000
const listPageSize = 1000             // the walk's page (a directory holds filesPerDir entries)
const listPagesMax = 100              // a directory with more pages than this is a bug in the fill


export async function benchRestart (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-restart-'))
  const secretFile = join(dir, 'secret')
  writeFileSync(secretFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 })
  const dataDir = join(dir, 'master')
  const logPath = join(dir, 'master.log')
  // Restart time is measured here, not authentication: a loopback master without it (the cost of signing is
  // the auth section's figure).
  const args = ['--data-dir', dataDir, '--port', '0', '--secret-file', secretFile, '--auth', 'off']
  process.stdout.write(`granary bench restart: ${new Date().toISOString()}, node ${process.version}, folder ${dir}, median of ${restartsPerSize}\n`)
  const sizes = restartSizes()
  const cold: number[] = []
  const warm: number[] = []
  try {
    let filled = 0
    for (const size of sizes) {
      const fillStartedMs = performance.now()
      await fill(dataDir, secretFile, filled, size)
      const fillSeconds = (performance.now() - fillStartedMs) / 1000
      filled = size
      const figures = await measureRestarts(args, logPath, size)
      cold.push(figures.coldMs)
      warm.push(figures.warmMs)
      line(`restart at ${fmt(size)} files: cold start`, `${fmt(figures.coldMs)} ms`, `SIGKILL → first stat; runs ${figures.coldRuns.map((r) => fmt(r)).join(' / ')}`)
      line(`restart at ${fmt(size)} files: warm spare (granary up)`, `${fmt(figures.warmMs)} ms`, `runs ${figures.warmRuns.map((r) => fmt(r)).join(' / ')}`)
      line(`report at ${fmt(size)} files (scans counts)`, `${fmt(figures.reportMs)} ms`, `filled ${fmt(size - (sizes[sizes.indexOf(size) - 1] ?? 0))} files in ${fmt(fillSeconds, 1)} s`)
      if (size === sizes[sizes.length - 1]) printMemory(size, figures, dataDir)
    }
    if (sizes.length > 1) {
      const last = sizes.length - 1
      line(`ratio ${fmt(sizes[last] as number)} / ${fmt(sizes[0] as number)}: cold start`, fmt((cold[last] as number) / (cold[0] as number), 2))
      line(`ratio ${fmt(sizes[last] as number)} / ${fmt(sizes[0] as number)}: warm spare`, fmt((warm[last] as number) / (warm[0] as number), 2))
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  if (process.env.GRANARY_BENCH_RESTART_CHAOS === '0') return
  process.stdout.write('chaos: 4 KiB every 10 ms for 20 s, master SIGKILLed at 5 s (granary up restarts it)\n')
  await runChaosCommand(['--ops-per-second', '100', '--file-size', '4K', '--duration-ms', '20000', '--kill-at-ms', '5000'])
}

function printMemory (size: number, figures: RestartFigures, dataDir: string): void {
  const mb = (bytes: number): string => `${fmt(bytes / 1e6, 1)} MB`
  const verdict = (bytes: number, target: number): string => `target ≤ ${fmt(target / 1e6)} MB: ${bytes <= target ? 'met' : 'MISSED'}`
  const { afterRestart, afterWalk } = figures
  line(`master VmRSS at ${fmt(size)} files, restarted`, mb(afterRestart.rssBytes), `${verdict(afterRestart.rssBytes, rssTargetBytes)}; after the restarts and their first stat`)
  line(`master VmHWM at ${fmt(size)} files, restarted`, mb(afterRestart.hwmBytes), 'peak RSS of that process so far')
  line(`master VmRSS at ${fmt(size)} files, after a walk`, mb(afterWalk.rssBytes), `${verdict(afterWalk.rssBytes, rssTargetBytes)}; ${fmt(figures.walkedEntries)} entries listed in ${fmt(figures.walkedDirs)} dirs, 1,000 stats`)
  line(`master VmHWM at ${fmt(size)} files, after a walk`, mb(afterWalk.hwmBytes), 'peak RSS of that process')
  const db = dbBytes(dataDir)
  line(`database at ${fmt(size)} files`, mb(db.totalBytes), `${verdict(db.totalBytes, dbTargetBytes)}; master.db ${mb(db.mainBytes)} + WAL ${mb(db.walBytes)}`)
  const { oplogRecords, oplogBytes, inodeBytes, freeBytes } = dbParts(dataDir)   // the master is gone: nothing writes it
  const perRecord = oplogRecords === 0 ? 0 : oplogBytes / oplogRecords
  line(`  of which the namespace (inodes + index)`, mb(inodeBytes), `${fmt(inodeBytes / size)} bytes a file`)
  line(`  of which the oplog`, mb(oplogBytes), `${fmt(oplogRecords)} records as the tick trims them (no shadow), ${fmt(perRecord)} bytes each`)
  line(`  of which free pages`, mb(freeBytes), '')
  line(`database at the oplog's count bound (estimate)`, mb(db.totalBytes - oplogBytes + perRecord * oplogRecordsKeptMax), `${verdict(db.totalBytes - oplogBytes + perRecord * oplogRecordsKeptMax, dbTargetBytes)}; a shadow lagging ${fmt(oplogRecordsKeptMax)} records (within ${fmt(oplogRecordAgeMsMax / 60_000)} min) holds them all back`)
}

interface DbParts { oplogRecords: number, oplogBytes: number, inodeBytes: number, freeBytes: number }

// What the database holds, read (dbstat, read-only) while no master writes it.
function dbParts (dataDir: string): DbParts {
  const db = new Database(join(dataDir, 'master.db'), { readonly: true })
  try {
    const bytesOf = (names: string[]): number => (db.prepare(`SELECT COALESCE(SUM(pgsize), 0) AS bytes FROM dbstat WHERE name IN (${names.map(() => '?').join(', ')})`).get(...names) as { bytes: number }).bytes
    const pageSize = db.pragma('page_size', { simple: true }) as number
    const freePages = db.pragma('freelist_count', { simple: true }) as number
    const oplogRecords = (db.prepare('SELECT COUNT(*) AS n FROM oplog').get() as { n: number }).n
    return { oplogRecords, oplogBytes: bytesOf(['oplog']), inodeBytes: bytesOf(['inodes', 'sqlite_autoindex_inodes_1', 'inodes_pending', 'inodes_lease']), freeBytes: freePages * pageSize }
  } finally {
    db.close()
  }
}

function restartSizes (): number[] {
  const given = process.env.GRANARY_BENCH_RESTART_SIZES
  if (given === undefined || given === '') return defaultSizes
  const sizes = given.split(',').map((s) => Number(s.trim()))
  const ascending = sizes.every((n, i) => Number.isSafeInteger(n) && n >= filesPerDir && n <= sizesMax && n % filesPerDir === 0 && (i === 0 || n > (sizes[i - 1] as number)))
  if (!ascending) throw new Error(`GRANARY_BENCH_RESTART_SIZES must be ascending multiples of ${filesPerDir} up to ${fmt(sizesMax)}, got '${given}'`)
  return sizes
}

// Empty files /dNNNN/fNNNN from index `from` up to `to`, as create + complete ops through the master's commit
// queue (group commit, one oplog record per op), the oplog trimmed after each wave the way the master's tick
// trims it (trimOplogRetained with the tick's bounds; no shadow here, so down to oplogRecordsKeptMin records).
// Trimming only at the end, to the count bound, measured a database no running master has: 2M records written,
// 1M kept (~370 MB, what a shadow lagging up to the age bound can hold back), 1M freed (~370 MB of free pages).
async function fill (dataDir: string, secretFile: string, from: number, to: number): Promise<void> {
  const config = resolveMasterConfig({ dataDir, secretFile, createSecret: false, port: 0, logLevel: 'silent' })
  const master = openMaster(config, { logger: pino({ level: 'silent' }), tick: false })
  try {
    const { queue } = master
    for (let d = Math.floor(from / filesPerDir); d < Math.ceil(to / filesPerDir); d++) await queue.submit({ type: 'mkdir', path: dirOf(d), parents: false, mtimeMs: Date.now() })
    for (let start = from; start < to; start += submitWaveMax) {
      const end = Math.min(to, start + submitWaveMax)
      const nowMs = Date.now()
      const created = await Promise.all(range(start, end).map(async (i) => {
        const leaseId = newLeaseId()
        const reply = await queue.submit({ type: 'create', path: fileOf(i), replication: 3, chunkSizeBytes: 64 * 1024 * 1024, overwrite: false, leaseId, leaseExpiresAtMs: nowMs + 60_000, nowMs })
        return { inodeId: reply.inodeId as InodeId, leaseId }
      }))
      await Promise.all(created.map(async ({ inodeId, leaseId }) => await queue.submit({ type: 'complete', inodeId, leaseId, sizeBytes: 0, chunkCount: 0, mtimeMs: nowMs, nowMs })))
      trimAsTheTickDoes(master.db)
    }
  } finally {
    await master.close()
  }
}

const tickRetention: RetentionBounds = { recordsKeptMin: oplogRecordsKeptMin, recordsKeptMax: oplogRecordsKeptMax, recordAgeMsMax: oplogRecordAgeMsMax }
const trimCallsPerWaveMax = 1000       // a wave of submitWaveMax × 2 records needs 2 calls of oplogTrimBatchMax

function trimAsTheTickDoes (db: Db): void {
  for (let call = 0; call < trimCallsPerWaveMax; call++) {
    if (trimOplogRetained(db, tickRetention, null, Date.now(), oplogTrimBatchMax) === 0) return
  }
}

interface Memory { rssBytes: number, hwmBytes: number }
interface RestartFigures { coldMs: number, warmMs: number, coldRuns: number[], warmRuns: number[], reportMs: number, afterRestart: Memory, afterWalk: Memory, walkedDirs: number, walkedEntries: number }

async function measureRestarts (args: string[], logPath: string, size: number): Promise<RestartFigures> {
  let master = await spawnRole({ role: 'master', args, logPath, readyTimeoutMs })
  const statPath = fileOf(Math.floor(size / 2))
  const url = master.ready.url
  const portArgs = args.map((a, i) => args[i - 1] === '--port' ? String(master.ready.port) : a)
  const coldRuns: number[] = []
  const warmRuns: number[] = []
  const spare = new SpareMaster()
  try {
    await statUntilOk(url, statPath, Date.now() + readyTimeoutMs)
    for (let run = 0; run < restartsPerSize; run++) {
      // Cold: kill, then start a new process at once.
      let killedAtMs = await kill(master)
      const starting = spawnRole({ role: 'master', args: portArgs, logPath, readyTimeoutMs })
      const coldOkAtMs = await statUntilOk(url, statPath, killedAtMs + readyTimeoutMs)
      master = await starting
      coldRuns.push(coldOkAtMs - killedAtMs)
      // Warm: a spare that has finished loading, activated once the master is gone.
      spare.prepare({ args: portArgs, logPath, readyTimeoutMs }, 0)
      await waitForStandbyLine(logPath)
      killedAtMs = await kill(master)
      const taking = spare.take({ args: portArgs, logPath, readyTimeoutMs })
      const warmOkAtMs = await statUntilOk(url, statPath, killedAtMs + readyTimeoutMs)
      const taken = await taking
      if (taken === undefined) throw new Error('the spare master was not there to take')
      master = taken
      warmRuns.push(warmOkAtMs - killedAtMs)
    }
    const afterRestart = memoryOf(master.pid)
    const walkedDirs = Math.ceil(size / filesPerDir)
    let walkedEntries = 0
    for (let d = 0; d < walkedDirs; d++) walkedEntries += await listAll(url, dirOf(d))
    for (let i = 0; i < 1000; i++) await statUntilOk(url, fileOf((i * 997) % size), Date.now() + 1000)
    const afterWalk = memoryOf(master.pid)
    const reportStartedMs = performance.now()
    const report = await request(`${url}/cluster/report`)
    await report.body.dump()
    return { coldMs: median(coldRuns), warmMs: median(warmRuns), coldRuns, warmRuns, reportMs: performance.now() - reportStartedMs, afterRestart, afterWalk, walkedDirs, walkedEntries }
  } finally {
    spare.stop()
    master.child.kill('SIGKILL')
    await master.exited
  }
}

async function kill (master: SpawnedRole): Promise<number> {
  const atMs = Date.now()
  master.child.kill('SIGKILL')
  await master.exited
  return atMs
}

async function statUntilOk (url: string, path: string, untilMs: number): Promise<number> {
  while (Date.now() < untilMs) {
    try {
      const res = await request(`${url}/fs/stat?path=${encodeURIComponent(path)}`, { headersTimeout: 2000, bodyTimeout: 2000 })
      await res.body.dump()
      if (res.statusCode === 200) return Date.now()
      if (res.statusCode !== 503) throw new Error(`stat ${path} answered ${res.statusCode}`)
    } catch (err) {
      if ((err as Error).message.startsWith('stat ')) throw err
    }
    await sleep(probeIntervalMs)
  }
  throw new Error(`stat ${path} did not succeed in time`)
}

async function waitForStandbyLine (logPath: string): Promise<void> {
  const deadlineMs = Date.now() + readyTimeoutMs
  const before = countStandbyLines(logPath)
  while (countStandbyLines(logPath) === before) {
    if (Date.now() > deadlineMs) throw new Error('the spare master did not get ready')
    await sleep(10)
  }
}

function countStandbyLines (logPath: string): number {
  if (!existsSync(logPath)) return 0
  return readFileSync(logPath, 'utf8').split('\n').filter((l) => l.includes('"msg":"standby"')).length
}

// Every entry of one directory, page by page; returns how many.
async function listAll (url: string, path: string): Promise<number> {
  let entries = 0
  let after: string | null = null
  for (let page = 0; page < listPagesMax; page++) {
    const query = new URLSearchParams({ path, limit: String(listPageSize), ...(after === null ? {} : { after }) })
    const res = await request(`${url}/fs/list?${query.toString()}`)
    if (res.statusCode !== 200) throw new Error(`list ${path} answered ${res.statusCode}: ${await res.body.text()}`)
    const reply = await res.body.json() as { entries: unknown[], nextAfter: string | null }
    entries += reply.entries.length
    after = reply.nextAfter
    if (after === null) return entries
  }
  throw new Error(`list ${path} had more than ${listPagesMax} pages`)
}

function memoryOf (pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kB = (field: string): number => {
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)
    return match === null ? 0 : Number(match[1]) * 1024
  }
  return { rssBytes: kB('VmRSS'), hwmBytes: kB('VmHWM') }
}

function dbBytes (dataDir: string): { mainBytes: number, walBytes: number, totalBytes: number } {
  const size = (name: string): number => { const f = join(dataDir, name); return existsSync(f) ? statSync(f).size : 0 }
  const mainBytes = size('master.db')
  const walBytes = size('master.db-wal') + size('master.db-shm')
  return { mainBytes, walBytes, totalBytes: mainBytes + walBytes }
}

async function runChaosCommand (chaosArgs: string[]): Promise<void> {
  const child = spawn(process.execPath, [cliPath, 'chaos', ...chaosArgs], { stdio: ['ignore', 'inherit', 'inherit'] })
  await new Promise((resolve) => child.once('exit', resolve))
}

function dirOf (d: number): string { return `/d${String(d).padStart(4, '0')}` }
function fileOf (i: number): string { return `${dirOf(Math.floor(i / filesPerDir))}/f${String(i % filesPerDir).padStart(4, '0')}` }
function range (start: number, end: number): number[] { return Array.from({ length: end - start }, (_, i) => start + i) }
