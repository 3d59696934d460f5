// npm run bench -- restart: how long a killed master takes to answer again, and whether that grows with the
// namespace. Fills a master database with 10k, then 100k, then 1M empty files (1,000 per directory) through
// the master's own write path — create + complete ops submitted to its CommitQueue and applied by apply(),
// each logged in the oplog, in-process on the data folder while no master process runs — then starts
// `granary master` on it and, 5 times per size, SIGKILLs it and times SIGKILL → first successful stat of a
// file deep in the namespace, two ways: a cold start (a new process, as systemd's Restart=always does) and
// granary up's warm spare (activated by "go"). Prints medians, the 1M/10k ratio, the master's RSS and the
// database size at 1M files, the report's (namespace-scanning) latency, then runs `granary chaos` for the
// 4 KiB-every-10 ms workload. Asserts nothing.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { request } from 'undici'
import { resolveMasterConfig } from '../shared/config.js'
import { newLeaseId, type InodeId } from '../shared/ids.js'
import { oplogRecordsKeptMax, oplogTrimBatchMax } from '../shared/limits.js'
import { cliPath, spawnRole, type SpawnedRole } from '../shared/process.js'
import { openMaster } from '../master/main.js'
import { trimOplog } from '../master/oplog.js'
import { SpareMaster } from '../client/cluster/up-standby.js'
import { fmt, line, median } from './bench-format.js'

const sizes = [10_000, 100_000, 1_000_000]
const filesPerDir = 1000
const restartsPerSize = 5
const submitWaveMax = 10_000          // ops submitted before awaiting them (the commit queue holds 50k)
const probeIntervalMs = 1
const readyTimeoutMs = 60_000


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
      if (size === sizes[sizes.length - 1]) {
        line(`master RSS at ${fmt(size)} files`, `${fmt(figures.rssBytes / 1024 / 1024, 1)} MiB`, 'VmRSS after the restarts and 1,000 stats')
        line(`database size at ${fmt(size)} files`, `${fmt(dbBytes(dataDir) / 1024 / 1024, 1)} MiB`, `master.db + WAL; the oplog trimmed to ${fmt(oplogRecordsKeptMax)} records`)
      }
    }
    line('ratio 1M / 10k: cold start', fmt((cold[2] as number) / (cold[0] as number), 2))
    line('ratio 1M / 10k: warm spare', fmt((warm[2] as number) / (warm[0] as number), 2))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  process.stdout.write('chaos: 4 KiB every 10 ms for 20 s, master SIGKILLed at 5 s (granary up restarts it)\n')
  await runChaosCommand(['--ops-per-second', '100', '--file-size', '4K', '--duration-ms', '20000', '--kill-at-ms', '5000'])
}

// Empty files /dNNNN/fNNNN from index `from` up to `to`, as create + complete ops through the master's commit
// queue (group commit, one oplog record per op), then the oplog trimmed the way the master's tick trims it.
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
    }
    while (trimOplog(master.db, oplogRecordsKeptMax, oplogTrimBatchMax * 10) > 0) { /* bounded batches, as the tick does */ }
  } finally {
    await master.close()
  }
}

interface RestartFigures { coldMs: number, warmMs: number, coldRuns: number[], warmRuns: number[], reportMs: number, rssBytes: number }

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
    for (let i = 0; i < 1000; i++) await statUntilOk(url, fileOf((i * 997) % size), Date.now() + 1000)
    const rssBytes = vmRssBytes(master.pid)
    const reportStartedMs = performance.now()
    const report = await request(`${url}/cluster/report`)
    await report.body.dump()
    return { coldMs: median(coldRuns), warmMs: median(warmRuns), coldRuns, warmRuns, reportMs: performance.now() - reportStartedMs, rssBytes }
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

function vmRssBytes (pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match === null ? 0 : Number(match[1]) * 1024
}

function dbBytes (dataDir: string): number {
  return ['master.db', 'master.db-wal', 'master.db-shm'].map((name) => join(dataDir, name)).filter((f) => existsSync(f)).reduce((sum, f) => sum + statSync(f).size, 0)
}

async function runChaosCommand (chaosArgs: string[]): Promise<void> {
  const child = spawn(process.execPath, [cliPath, 'chaos', ...chaosArgs], { stdio: ['ignore', 'inherit', 'inherit'] })
  await new Promise((resolve) => child.once('exit', resolve))
}

function dirOf (d: number): string { return `/d${String(d).padStart(4, '0')}` }
function fileOf (i: number): string { return `${dirOf(Math.floor(i / filesPerDir))}/f${String(i % filesPerDir).padStart(4, '0')}` }
function range (start: number, end: number): number[] { return Array.from({ length: end - start }, (_, i) => start + i) }
