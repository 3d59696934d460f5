// npm run bench -- small | ticker: small files against the disk's own small-file limit, measured in the same run.
//   disk      create + write 4 KiB + fsync + rename + folder fsync, in Node, on one thread and 16 at once: the
//             physical ceiling of one replica; three replicas share this one disk, so a replicated put's
//             ceiling here is about a third of the 16-thread figure
//   small     4 KiB files put and get per second, 16 in flight, on the default cluster (3 chunkservers and an
//             in-sync shadow, as `granary up` runs it), after an uncounted warm-up; the master calls per file; and
//             reserved files (one master call a put) against the create path (two), in alternating rounds
//   ticker    one writer, a 4 KiB file every 10 ms for 20 s (the master-kill workload, with nothing killed), after
//             the same warm-up:
//             files done of those due, and p50/p99/max latency, split into master calls and chunk PUTs; beside
//             it the disk alone doing the same every 10 ms (three replicas' durable writes at once, no servers)
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { masterCallsDuring } from '../testing/master-calls.js'
import { mkdir, open, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { startCluster, type Cluster } from '../testing/cluster.js'
import { fmt, line, median, processCpuUs } from './bench-format.js'
import { assert } from '../shared/assert.js'

const runs = 3
const fileBytes = 4096

// A chunk folder tree like a chunkserver's: 256 folders and a tmp folder under root.
async function chunkFolders (root: string): Promise<string[]> {
  const folders = Array.from({ length: 256 }, (_, i) => join(root, i.toString(16).padStart(2, '0')))
  for (const folder of folders) await mkdir(folder, { recursive: true })
  await mkdir(join(root, 'tmp'))
  return folders
}

// What one replica of a small chunk must do to be durable under its name: create + write + fsync in tmp, rename
// into its folder, fsync the folder.
async function writeDurably (root: string, folders: string[], i: number, data: Buffer): Promise<void> {
  const temp = join(root, 'tmp', `${i}.tmp`)
  const file = await open(temp, 'wx')
  try { await file.write(data); await file.sync() } finally { await file.close() }
  const folder = folders[i % folders.length] as string
  await rename(temp, join(folder, `${i}.chunk`))
  const handle = await open(folder, 'r')
  try { await handle.sync() } finally { await handle.close() }
}

// Open loop: start(i, dueAtMs) is called every periodMs, due times, whatever the earlier ones are doing (a slow
// store builds a backlog); resolves once the last has been started.
async function everyPeriod (periodMs: number, due: number, start: (i: number, dueAtMs: number) => void): Promise<void> {
  const started = performance.now()
  for (let i = 0; i < due; i++) {
    const dueAtMs = started + i * periodMs
    const waitMs = dueAtMs - performance.now()
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs))
    start(i, dueAtMs)
  }
}

// The disk's small-file rate: what one replica of a 4 KiB chunk must do to be durable under its name.
export async function diskSmallFilesPerSec (dir: string, concurrency: number, count = 2000): Promise<number> {
  const root = join(dir, `disk-small-${concurrency}`)
  const folders = await chunkFolders(root)
  const data = randomBytes(fileBytes)
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) await writeDurably(root, folders, next++, data)
  }))
  const perSec = count / ((performance.now() - started) / 1000)
  await rm(root, { recursive: true, force: true })
  return perSec
}

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

// CPU µs used so far by this process (the client) and each server of the cluster.
function cpuNow (cluster: Cluster): Map<string, number> {
  const own = process.cpuUsage()
  const servers: Array<[string, number]> = [['master', cluster.master.pid], ...(cluster.shadow === undefined ? [] : [['shadow', cluster.shadow.pid] as [string, number]]),
    ...cluster.chunkservers.map((cs, i): [string, number] => [`cs${i}`, cs.pid])]
  return new Map([['client', own.user + own.system], ...servers.map(([name, pid]): [string, number] => [name, processCpuUs(pid)])])
}

async function defaultCluster (dir: string): Promise<Cluster> {
  return await startCluster({ chunkservers: 3, shadow: true, dataDir: join(dir, `cluster-${Date.now()}`), deadAfterMs: 10_000 })
}

// Puts and gets before anything is measured, not counted: the first ~1,000 small files through a fresh cluster
// pay for compiling the write and read paths in all seven processes (a first measured round ran at ~half the rate
// of the next two: puts 159-207 vs 290-400/s, gets 976-1,589 vs 2,700-2,900/s). A server's steady state is warm.
const warmUpFiles = 1_000
async function warmUp (fs: ReturnType<Cluster['client']>, data: Buffer, folder = '/warm-up'): Promise<void> {
  await fs.mkdir(folder, { recursive: true })
  await inFlight(warmUpFiles, 16, async (i) => { await fs.writeFile(`${folder}/f${i}`, data) })
  await inFlight(warmUpFiles, 16, async (i) => { await fs.readFile(`${folder}/f${i}`) })
}

export async function benchSmall (dir: string): Promise<void> {
  const one = await diskSmallFilesPerSec(dir, 1)
  const sixteen = await diskSmallFilesPerSec(dir, 16)
  line('disk: 4 KiB create+fsync+rename+dir fsync', `${fmt(sixteen)}/s`, `16 at once; ${fmt(one)}/s on one; 3 replicas on this one disk → ceiling ≈ ${fmt(sixteen / 3)} puts/s`)
  const cluster = await defaultCluster(dir)
  try {
    const fs = cluster.client({ deadlineMs: 60_000 })
    const count = 2000
    const data = randomBytes(fileBytes)
    await warmUp(fs, data)
    const putRates: number[] = []
    const putCpu: Array<Map<string, number>> = []   // per run: process → CPU µs per put
    const getRates: number[] = []
    let calls = { calls: new Map<string, number>(), requests: 0 }
    for (let r = 0; r < runs; r++) {
      await fs.mkdir(`/small-${r}`, { recursive: true })
      let round: PutRound | undefined
      calls = await masterCallsDuring(async () => { round = await putRound(cluster, fs, `/small-${r}`, count, data) })
      assert(round !== undefined, 'the round ran')
      putRates.push(round.perSec)
      putCpu.push(round.cpuUsPerPut)
      const started = performance.now()
      await inFlight(count, 16, async (i) => {
        const got = await fs.readFile(`/small-${r}/f${i}`)
        if (!got.equals(data)) throw new Error('a small file read back wrong')
      })
      getRates.push(count / ((performance.now() - started) / 1000))
    }
    const perFile = [...calls.calls.entries()].map(([route, n]) => `${route.slice(4)} ${fmt(n / count, 2)}`).join(', ')
    line('4 KiB files put/s (16 in flight, shadow)', fmt(median(putRates)), `ratio to the 3-replica ceiling ${fmt(median(putRates) / (sixteen / 3), 2)}  runs ${putRates.map((v) => fmt(v)).join(' / ')}`)
    // Every process's CPU per put: on 2 cores, 2 s of CPU a second over their sum is the most puts/s the
    // processes themselves allow, whatever the disk could do.
    const names = [...(putCpu[0]?.keys() ?? [])]
    const perPut = names.map((name) => [name, median(putCpu.map((run) => run.get(name) ?? 0))] as const)
    const totalUs = perPut.reduce((sum, [, us]) => sum + us, 0)
    line('  CPU per put, every process', `${fmt(totalUs)} µs`, `${perPut.map(([name, us]) => `${name} ${fmt(us)}`).join(', ')}; ceiling on 2 cores ≈ ${fmt(2e6 / totalUs)} puts/s`)
    line('  master calls per put', fmt([...calls.calls.values()].reduce((a, b) => a + b, 0) / count, 2), `${perFile}; in ${fmt(calls.requests / count, 2)} HTTP requests per put (batches)`)
    line('4 KiB files get/s (16 in flight)', fmt(median(getRates)), `runs ${getRates.map((v) => fmt(v)).join(' / ')}`)
    // Reserved files (one master call a put) against the create path (two), paired in this cluster: rounds
    // alternate between this client and one with reserveFiles off, so the box's drift falls on both alike.
    const plain = cluster.client({ deadlineMs: 60_000, reserveFiles: false })
    await warmUp(plain, data, '/warm-up-plain')
    const pairs: Array<{ on: PutRound, off: PutRound }> = []
    for (let r = 0; r < runs; r++) {
      await fs.mkdir(`/paired-${r}/on`, { recursive: true })
      await fs.mkdir(`/paired-${r}/off`, { recursive: true })
      const on = await putRound(cluster, fs, `/paired-${r}/on`, pairedCount, data)
      const off = await putRound(cluster, plain, `/paired-${r}/off`, pairedCount, data)
      pairs.push({ on, off })
    }
    const cpuOf = (round: PutRound, name?: string): number => name === undefined ? [...round.cpuUsPerPut.values()].reduce((a, b) => a + b, 0) : round.cpuUsPerPut.get(name) ?? 0
    line('  one master call vs two, paired', fmt(median(pairs.map((p) => p.on.perSec / p.off.perSec)), 2),
      `puts/s with reserved files / with create, median of ${runs} pairs: ${pairs.map((p) => `${fmt(p.on.perSec)} / ${fmt(p.off.perSec)}`).join(', ')}`)
    line('    CPU per put, on / off', `${fmt(median(pairs.map((p) => cpuOf(p.on))))} / ${fmt(median(pairs.map((p) => cpuOf(p.off))))} µs`,
      ['client', 'master', 'shadow'].map((name) => `${name} ${fmt(median(pairs.map((p) => cpuOf(p.on, name))))} / ${fmt(median(pairs.map((p) => cpuOf(p.off, name))))}`).join(', '))
  } finally {
    await cluster.stop()
  }
}

const pairedCount = 1000
interface PutRound { perSec: number, cpuUsPerPut: Map<string, number> }

// count 4 KiB puts, 16 in flight, into folder (made already): the rate and every process's CPU µs per put.
async function putRound (cluster: Cluster, fs: ReturnType<Cluster['client']>, folder: string, count: number, data: Buffer): Promise<PutRound> {
  const cpu0 = cpuNow(cluster)
  const started = performance.now()
  await inFlight(count, 16, async (i) => { await fs.writeFile(`${folder}/f${i}`, data) })
  const perSec = count / ((performance.now() - started) / 1000)
  const cpu1 = cpuNow(cluster)
  return { perSec, cpuUsPerPut: new Map([...cpu1].map(([name, us]) => [name, (us - (cpu0.get(name) ?? 0)) / count])) }
}

// The ticker's physical floor on this disk, at this moment: every periodMs, three replicas' worth of what a
// chunkserver does to make a 4 KiB chunk durable (create + write + fsync + rename + folder fsync), the three at
// once as three chunkservers would; a put is done when its slowest replica is. Latency from when each was due.
async function diskTickerMs (dir: string, periodMs: number, due: number): Promise<number[]> {
  const root = join(dir, 'disk-ticker')
  const replicas = await Promise.all([0, 1, 2].map(async (r) => { const at = join(root, `r${r}`); return { at, folders: await chunkFolders(at) } }))
  const data = randomBytes(fileBytes)
  const latencies: number[] = []
  const puts: Array<Promise<void>> = []
  await everyPeriod(periodMs, due, (i, dueAtMs) => {
    puts.push(Promise.all(replicas.map(async (r) => { await writeDurably(r.at, r.folders, i, data) })).then(() => { latencies.push(performance.now() - dueAtMs) }))
  })
  await Promise.all(puts)
  await rm(root, { recursive: true, force: true })
  return latencies.sort((a, b) => a - b)
}

// Time from sending each request to its reply's headers, by kind (master calls, chunk PUTs), while fn runs.
async function requestTimesDuring (fn: () => Promise<void>): Promise<Map<string, number[]>> {
  const sentAt = new WeakMap<object, { kind: string, atMs: number }>()
  const times = new Map<string, number[]>()
  const onCreate = (message: unknown): void => {
    const request = (message as { request: { path: string, method: string } }).request
    const kind = request.path.startsWith('/chunks/') ? `chunk ${request.method}` : request.path.startsWith('/fs/') ? 'master call' : null
    if (kind !== null) sentAt.set(request, { kind, atMs: performance.now() })
  }
  const onHeaders = (message: unknown): void => {
    const sent = sentAt.get((message as { request: object }).request)
    if (sent === undefined) return
    const list = times.get(sent.kind) ?? []
    list.push(performance.now() - sent.atMs)
    times.set(sent.kind, list)
  }
  subscribe('undici:request:create', onCreate)
  subscribe('undici:request:headers', onHeaders)
  try { await fn() } finally {
    unsubscribe('undici:request:create', onCreate)
    unsubscribe('undici:request:headers', onHeaders)
  }
  for (const list of times.values()) list.sort((a, b) => a - b)
  return times
}

function percentileOf (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN
}

export async function benchTicker (dir: string): Promise<void> {
  const periodMs = 10
  const disk = await diskTickerMs(dir, periodMs, 1_000)
  line('ticker: the disk alone (physical)', `${fmt(percentileOf(disk, 0.5), 1)} ms`,
    `p99 ${fmt(percentileOf(disk, 0.99), 1)} ms, max ${fmt(disk[disk.length - 1] ?? NaN, 1)} ms: 3 replicas' create+write 4 KiB+fsync+rename+folder fsync at once, every ${periodMs} ms for 10 s`)
  const cluster = await defaultCluster(dir)
  try {
    const fs = cluster.client({ deadlineMs: 30_000 })
    const data = randomBytes(fileBytes)
    await warmUp(fs, data)
    await fs.mkdir('/ticker', { recursive: true })
    const durationMs = 20_000
    const due = durationMs / periodMs
    const latencies: number[] = []
    let failed = 0
    const writes: Array<Promise<void>> = []
    let doneWithinMs = 0
    let doneInTime = 0
    const phases = await requestTimesDuring(async () => {
      const started = performance.now()
      await everyPeriod(periodMs, due, (i, dueAtMs) => {
        writes.push(fs.writeFile(`/ticker/f${i}`, data).then(
          () => { latencies.push(performance.now() - dueAtMs) },
          () => { failed++ }))
      })
      doneWithinMs = performance.now() - started
      doneInTime = latencies.length
      await Promise.all(writes)
    })
    latencies.sort((a, b) => a - b)
    const at = (q: number): number => percentileOf(latencies, q)
    line('ticker: 4 KiB every 10 ms for 20 s', `${fmt(doneInTime)}/${fmt(due)}`, `done by the last tick (${fmt(doneWithinMs / 1000, 1)} s); ${fmt(latencies.length)} in all, ${failed} failed`)
    line('ticker latency p50 / p99 / max', `${fmt(at(0.5), 1)} ms`, `p99 ${fmt(at(0.99), 1)} ms, max ${fmt(latencies[latencies.length - 1] ?? NaN, 1)} ms (from when each was due)`)
    for (const [kind, times] of phases) {
      line(`  of which ${kind}s: p50 / p99 / max`, `${fmt(percentileOf(times, 0.5), 1)} ms`, `p99 ${fmt(percentileOf(times, 0.99), 1)} ms, max ${fmt(times[times.length - 1] ?? NaN, 1)} ms over ${fmt(times.length)} requests (sent → reply headers)`)
    }
  } finally {
    await cluster.stop()
  }
}
