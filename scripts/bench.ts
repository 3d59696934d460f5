// npm run bench [-- section ...]: prints figures (median of 3 runs), asserting nothing. With no section named it
// runs every one (tens of minutes); name sections to run a subset. Each starts what it needs in a temp folder:
//   core      = put + small + meta on one 3-chunkserver cluster (after dd 1 GiB, the disk baseline)
//     put       1 GiB put and get; throughput also as a ratio to the raw disk, because on one 2-core box every
//               replica shares the same disk and cores
//     small     4 KiB files put/get per second        meta   mkdir/stat per second
//   shadow    shadow lag and bootstrap (bench-shadow.ts)
//   restart   master restart over a 1M-file namespace (bench-restart.ts; minutes to fill)
//   fs        fs API and a 1 GiB tree put -r / get -r (bench-fs.ts)
//   recovery  re-replication after a SIGKILLed chunkserver, 1 GiB (bench-recovery.ts)
//   gc        10,000 files deleted until every replica file is gone (bench-gc.ts)
//   scrub     scrubber verify rate, the default cap, a flipped byte found (bench-scrub.ts; in-process, 1 GiB)
//   gray      read latency (worst, p99) with the master or a chunkserver frozen, library and CLI, and the hedges
//             a healthy cluster fires (bench-gray.ts)
//   failover  fault → first ack, worst write, failed/lost/wrong puts over N trials of a supervised restart, host
//             death, a 5 s freeze and a hand-over; the in-sync shadow's cost per put (bench-failover.ts;
//             GRANARY_BENCH_FAILOVER_TRIALS, default 20, each trial on a fresh cluster)
//   cli       `granary put FILE` and a cold `granary cat` beside the library, 1 GiB, CLI/library ratios (bench-cli.ts)
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { startCluster, type Cluster } from '../test/helpers/cluster.js'
import { benchShadowBootstrap, benchShadowLag } from './bench-shadow.js'
import { benchRestart } from './bench-restart.js'
import { ddMBps, dropPageCache, fmt, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const runs = 3




function source (totalBytes: number, pattern: Buffer): Readable {
  let sent = 0
  return new Readable({
    highWaterMark: 4 * MiB,
    read () {
      if (sent >= totalBytes) { this.push(null); return }
      const size = Math.min(MiB, totalBytes - sent)
      const offset = sent % (pattern.length - MiB)
      this.push(pattern.subarray(offset, offset + size))
      sent += size
    }
  })
}

function sink (): Writable & { bytes: number } {
  const w = new Writable({ highWaterMark: 4 * MiB, write (piece: Buffer, _enc, done) { w.bytes += piece.length; done() } }) as Writable & { bytes: number }
  w.bytes = 0
  return w
}

async function benchBigFile (cluster: Cluster, diskMBpsValue: number): Promise<void> {
  const fs = cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB })
  const pattern = randomBytes(64 * MiB + MiB)
  const putRates: number[] = []
  const getRates: number[] = []
  let cold = true
  for (let i = 0; i < runs; i++) {
    const path = `/bench/big-${i}.bin`
    let started = performance.now()
    await pipeline(source(GiB, pattern), fs.createWriteStream(path, { overwrite: true }))
    putRates.push(GiB / MiB / ((performance.now() - started) / 1000))
    cold = dropPageCache() && cold
    const out = sink()
    started = performance.now()
    await pipeline(fs.createReadStream(path), out)
    if (out.bytes !== GiB) throw new Error(`read ${out.bytes} bytes, wrote ${GiB}`)
    getRates.push(GiB / MiB / ((performance.now() - started) / 1000))
    await fs.rm(path)
  }
  const put = median(putRates)
  const get = median(getRates)
  line('1 GiB put, replication 3', `${fmt(put)} MB/s`, `ratio to disk ${fmt(put / diskMBpsValue, 2)}  runs ${putRates.map((r) => fmt(r)).join(' / ')}`)
  line(`1 GiB get (${cold ? 'cold: page cache dropped' : 'WARM: could not drop the page cache'})`, `${fmt(get)} MB/s`, `ratio to disk ${fmt(get / diskMBpsValue, 2)}  runs ${getRates.map((r) => fmt(r)).join(' / ')}`)
}

async function inFlight<T> (count: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

async function benchSmallFiles (cluster: Cluster): Promise<void> {
  const fs = cluster.client({ deadlineMs: 60_000 })
  const count = 2000
  const data = randomBytes(4096)
  const putRates: number[] = []
  const getRates: number[] = []
  for (let r = 0; r < runs; r++) {
    await fs.mkdir(`/small-${r}`, { recursive: true })
    let started = performance.now()
    await inFlight(count, 16, async (i) => { await fs.writeFile(`/small-${r}/f${i}`, data) })
    putRates.push(count / ((performance.now() - started) / 1000))
    started = performance.now()
    await inFlight(count, 16, async (i) => {
      const got = await fs.readFile(`/small-${r}/f${i}`)
      if (got.length !== data.length) throw new Error('short read')
    })
    getRates.push(count / ((performance.now() - started) / 1000))
  }
  line('4 KiB files put/s (16 in flight)', fmt(median(putRates)), `runs ${putRates.map((r) => fmt(r)).join(' / ')}`)
  line('4 KiB files get/s (16 in flight)', fmt(median(getRates)), `runs ${getRates.map((r) => fmt(r)).join(' / ')}`)
}

async function benchMetadata (cluster: Cluster): Promise<void> {
  const fs = cluster.client({ deadlineMs: 60_000 })
  const count = 5000
  const mkdirRates: number[] = []
  const statRates: number[] = []
  for (let r = 0; r < runs; r++) {
    await fs.mkdir(`/meta-${r}`)
    let started = performance.now()
    await inFlight(count, 16, async (i) => { await fs.mkdir(`/meta-${r}/d${i}`) })
    mkdirRates.push(count / ((performance.now() - started) / 1000))
    started = performance.now()
    await inFlight(count, 16, async (i) => { await fs.stat(`/meta-${r}/d${i}`) })
    statRates.push(count / ((performance.now() - started) / 1000))
  }
  line('mkdir/s (16 in flight)', fmt(median(mkdirRates)), `runs ${mkdirRates.map((r) => fmt(r)).join(' / ')}`)
  line('stat/s (16 in flight)', fmt(median(statRates)), `runs ${statRates.map((r) => fmt(r)).join(' / ')}`)
}

const sections = ['core', 'put', 'small', 'meta', 'shadow', 'restart', 'fs', 'recovery', 'gc', 'scrub', 'failover', 'gray', 'cli']

async function main (): Promise<void> {
  const named = process.argv.slice(2).filter((a) => !a.startsWith('-'))
  const unknown = named.filter((n) => !sections.includes(n))
  if (unknown.length > 0) throw new Error(`unknown bench section ${unknown.join(', ')}; sections: ${sections.join(' ')}`)
  const everything = named.length === 0
  const run = (section: string): boolean => everything || named.includes(section)
  const core = run('core')
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-'))
  process.stdout.write(`granary bench: ${new Date().toISOString()}, node ${process.version}, folder ${dir}, median of ${runs}, sections ${everything ? 'all' : named.join(' ')}\n`)
  try {
    if (core || run('put') || run('small') || run('meta')) await benchCore(dir, new Set(named), core)
    if (run('shadow')) {
      await benchShadowLag(dir, line)
      await benchShadowBootstrap(dir, line)
    }
    if (run('restart')) await benchRestart()   // fills a 1M-file namespace (minutes)
    if (run('fs')) await (await import('./bench-fs.js')).benchFs()   // its own cluster, a 1 GiB tree
    if (run('recovery')) await (await import('./bench-recovery.js')).benchRecovery()   // its own cluster, 1 GiB, a SIGKILLed chunkserver
    if (run('gc')) await (await import('./bench-gc.js')).benchGc()   // its own cluster, 10,000 files deleted
    if (run('scrub')) await (await import('./bench-scrub.js')).benchScrub()   // in this process, a 1 GiB chunk store
    if (run('failover')) await (await import('./bench-failover.js')).benchFailover()   // a fresh cluster per trial, 4 × N trials
    if (run('gray')) await (await import('./bench-gray.js')).benchGray()   // one cluster on 5 loopback hosts; freezes master, chunkserver
    if (run('cli')) await (await import('./bench-cli.js')).benchCli()   // its own cluster; the CLI's put and cold cat beside the library's
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function benchCore (dir: string, wanted: Set<string>, all: boolean): Promise<void> {
  const disk = median([ddMBps(dir), ddMBps(dir), ddMBps(dir)])
  line('disk: dd 1 GiB conv=fdatasync', `${fmt(disk)} MB/s`)
  const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster'), heartbeatIntervalMs: 1000, deadAfterMs: 10_000 })
  try {
    if (all || wanted.has('put')) await benchBigFile(cluster, disk)
    if (all || wanted.has('small')) await benchSmallFiles(cluster)
    if (all || wanted.has('meta')) await benchMetadata(cluster)
  } finally {
    await cluster.stop()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
