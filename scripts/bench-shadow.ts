// `npm run bench -- shadow`: the shadow master's numbers. (1) Lag under a sustained mutation load (mkdir and
// empty-file create through the client, 16 in flight): median and p99 of the time from the master's commit to
// the shadow's, in ms and in records, from the shadow's own per-record samples. (2) Bootstrap time of a fresh
// shadow against a master holding a 1M-file namespace (filled through the master's own ops in group-committed
// batches, its oplog trimmed to the default bound): spawn to ready, and the snapshot transfer alone. (3) stat/s
// served by that shadow (16 in flight). Figures only; nothing is asserted.
import { mkdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { connect } from '../client/index.js'
import { resolveMasterConfig } from '../shared/config.js'
import { newLeaseId, type InodeId } from '../shared/ids.js'
import { oplogTrimBatchMax } from '../shared/limits.js'
import { spawnRole, type SpawnedRole } from '../shared/process.js'
import type { HealthReply } from '../shared/protocol.js'
import { loadSecret } from '../shared/token.js'
import { openMaster } from '../master/main.js'
import { trimOplogRetained } from '../master/oplog.js'
import { defaultRetention } from '../master/tick.js'
import { startCluster } from '../testing/cluster.js'
import { fmt } from './bench-format.js'

type Line = (name: string, value: string, extra?: string) => void

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

async function health (url: string): Promise<HealthReply> {
  return await (await fetch(`${url}/healthz`)).json() as HealthReply
}

export async function benchShadowLag (dir: string, line: Line): Promise<void> {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, dataDir: join(dir, 'lag-cluster'), heartbeatIntervalMs: 1000, deadAfterMs: 10_000 })
  try {
    const fs = cluster.client({ deadlineMs: 60_000 })
    const dirCount = 5000
    const fileCount = 2500      // create + complete each: with the mkdirs, ~10k records, the shadow's sample window
    await fs.mkdir('/lag')
    const startedMs = performance.now()
    await Promise.all([
      inFlight(dirCount, 8, async (i) => await fs.mkdir(`/lag/d${i}`)),
      inFlight(fileCount, 8, async (i) => await fs.writeFile(`/lag/f${i}`, Buffer.alloc(0)))
    ])
    const seconds = (performance.now() - startedMs) / 1000
    const shadowUrl = cluster.shadow?.url as string
    const masterSeq = (await health(cluster.master.url)).seq
    while ((await health(shadowUrl)).seq < masterSeq) await new Promise((resolve) => setTimeout(resolve, 10))
    const f = (await health(shadowUrl)).following
    const records = dirCount + 2 * fileCount
    line('mutations/s during the lag run (16 in flight)', fmt(records / seconds), `${fmt(records)} records in ${fmt(seconds, 1)} s`)
    line('shadow lag, median', `${fmt(f?.lagMsP50 ?? NaN, 1)} ms`, `${fmt(f?.lagRecordsP50 ?? NaN)} records`)
    line('shadow lag, p99', `${fmt(f?.lagMsP99 ?? NaN, 1)} ms`, `${fmt(f?.lagRecordsP99 ?? NaN)} records  (aim: p99 <= 100 ms)`)
  } finally {
    await cluster.stop()
  }
}

// Fills a master's database in-process with `fileCount` empty files (1000 per directory) through apply(),
// 1000 ops per group commit, then trims the oplog to the default retention as the tick would.
export async function fillNamespace (dataDir: string, secretFile: string, fileCount: number): Promise<void> {
  const master = openMaster(resolveMasterConfig({ dataDir, secretFile, logLevel: 'silent' }), { tick: false, logger: pino({ level: 'silent' }) })
  const { queue } = master
  const perDir = 1000
  for (let d = 0; d * perDir < fileCount; d++) {
    await queue.submit({ type: 'mkdir', path: `/d${d}`, parents: false, mtimeMs: Date.now() })
    const nowMs = Date.now()
    const count = Math.min(perDir, fileCount - d * perDir)
    const created = await Promise.all(Array.from({ length: count }, async (_, i) => {
      const leaseId = newLeaseId()
      const reply = await queue.submit({ type: 'create', path: `/d${d}/f${i}`, replication: 3, chunkSizeBytes: 64 * 1024 * 1024, overwrite: false, leaseId, leaseExpiresAtMs: nowMs + 60_000, nowMs })
      return { inodeId: reply.inodeId as InodeId, leaseId }
    }))
    await Promise.all(created.map(async ({ inodeId, leaseId }) => await queue.submit({ type: 'complete', inodeId, leaseId, sizeBytes: 0, chunkCount: 0, mtimeMs: nowMs, nowMs })))
  }
  while (trimOplogRetained(master.db, defaultRetention, null, Date.now(), oplogTrimBatchMax * 10) > 0);
  await master.close()
}

export async function benchShadowBootstrap (dir: string, line: Line, fileCount = Number(process.env.GRANARY_BENCH_SHADOW_FILES ?? 1_000_000)): Promise<void> {
  const secretFile = join(dir, 'secret')
  loadSecret(secretFile, true)
  const masterDir = join(dir, 'big-master')
  mkdirSync(masterDir, { recursive: true })
  let started = performance.now()
  await fillNamespace(masterDir, secretFile, fileCount)
  const sizeBytes = statSync(join(masterDir, 'master.db')).size
  line(`fill: ${fmt(fileCount)} files via the master's ops`, `${fmt((performance.now() - started) / 1000, 1)} s`, `master.db ${fmt(sizeBytes / 1024 / 1024)} MiB (oplog trimmed to the default bound)`)
  const spawned: SpawnedRole[] = []
  try {
    const master = await spawnRole({ role: 'master', args: ['--data-dir', masterDir, '--port', '0', '--secret-file', secretFile], logPath: join(dir, 'logs', 'big-master.log'), readyTimeoutMs: 120_000 })
    spawned.push(master)
    const shadowDir = join(dir, 'big-shadow')
    started = performance.now()
    const shadow = await spawnRole({ role: 'shadow', args: ['--data-dir', shadowDir, '--port', '0', '--secret-file', secretFile, '--master', master.ready.url], logPath: join(dir, 'logs', 'big-shadow.log'), readyTimeoutMs: 600_000 })
    spawned.push(shadow)
    const readyMs = performance.now() - started
    const bootMs = await bootstrapDurationMs(join(dir, 'logs', 'big-shadow.log'))
    line(`shadow bootstrap, ${fmt(fileCount)}-file namespace`, `${fmt(readyMs / 1000, 2)} s`, `spawn to ready; snapshot fetch + check + install ${fmt(bootMs / 1000, 2)} s`)
    await benchShadowReads(shadow.ready.url, fileCount, line)
  } finally {
    for (const s of spawned) { s.child.kill('SIGKILL'); await s.exited }
    rmSync(masterDir, { recursive: true, force: true })
  }
}

async function bootstrapDurationMs (logPath: string): Promise<number> {
  const { readFileSync } = await import('node:fs')
  const line = readFileSync(logPath, 'utf8').split('\n').find((l) => l.includes('"bootstrapped from a snapshot"'))
  return line === undefined ? NaN : (JSON.parse(line) as { durationMs: number }).durationMs
}

async function benchShadowReads (shadowUrl: string, fileCount: number, line: Line): Promise<void> {
  const fs = connect({ masters: [shadowUrl], deadlineMs: 60_000 })
  try {
    const count = 20_000
    const rates: number[] = []
    for (let r = 0; r < 3; r++) {
      const started = performance.now()
      await inFlight(count, 16, async () => {
        const n = Math.floor(Math.random() * fileCount)
        await fs.stat(`/d${Math.floor(n / 1000)}/f${n % 1000}`)
      })
      rates.push(count / ((performance.now() - started) / 1000))
    }
    rates.sort((a, b) => a - b)
    line('stat/s served by the shadow (16 in flight)', fmt(rates[1] as number), `runs ${rates.map((x) => fmt(x)).join(' / ')}, random files of the big namespace`)
  } finally {
    await fs.close()
  }
}
