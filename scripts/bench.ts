// npm run bench [-- section ...]: prints figures (median of 3 runs), asserting nothing. With no section named it
// runs every one (tens of minutes); name sections to run a subset. Each starts what it needs in a temp folder:
//   core      = put + meta on one 3-chunkserver cluster, then small (after dd 1 GiB, the disk baseline)
//     put       1 GiB put and get; throughput also as a ratio to the raw disk, because on one 2-core box every
//               replica shares the same disk and cores
//     meta      mkdir/stat per second
//   small     4 KiB files put/get per second on the default cluster (with a shadow), beside the disk's own
//             small-file rate; master calls per file (bench-small.ts)
//   ticker    one writer, 4 KiB every 10 ms for 20 s: files done, p50/p99/max latency (bench-small.ts)
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
//   s3        1 GiB put/get through the S3 gateway with the AWS SDK beside the library, and 4 KiB puts/s (bench-s3.ts)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { startCluster, type Cluster } from '../testing/cluster.js'
import { benchShadowBootstrap, benchShadowLag } from './bench-shadow.js'
import { benchRestart } from './bench-restart.js'
import { benchSmall, benchTicker } from './bench-small.js'
import { ddMBps, dropPageCache, fmt, line, median, processCpuUs } from './bench-format.js'

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

// Also the CPU each op costs the client (this process) and the master (its /proc stat), which a busy machine
// does not distort the way it does a rate: on 2 cores, 2 s of CPU per second over (client + master) µs per op
// is the most ops/s that HTTP/JSON between the two processes allows here.
async function benchMetadata (cluster: Cluster): Promise<void> {
  const fs = cluster.client({ deadlineMs: 60_000 })
  // 20,000 per run after a warm-up: 5,000 ops just after the 1 GiB transfers were half JIT and GC warm-up
  // (a warm A/B measured stat at 16.7–20k/s where this section printed 10.7k).
  const count = 20_000
  await fs.mkdir('/meta-warm')
  await inFlight(2_000, 16, async (i) => { await fs.mkdir(`/meta-warm/d${i}`) })
  await inFlight(20_000, 16, async (i) => { await fs.stat(`/meta-warm/d${i % 2_000}`) })
  const rates: Record<'mkdir' | 'stat', number[]> = { mkdir: [], stat: [] }
  const cpu: Record<'mkdir' | 'stat', Array<{ client: number, master: number }>> = { mkdir: [], stat: [] }
  const masterCpuUs = (): number => processCpuUs(cluster.master.pid)
  for (let r = 0; r < runs; r++) {
    await fs.mkdir(`/meta-${r}`)
    for (const [op, fn] of [['mkdir', async (i: number) => { await fs.mkdir(`/meta-${r}/d${i}`) }], ['stat', async (i: number) => { await fs.stat(`/meta-${r}/d${i}`) }]] as const) {
      const client0 = process.cpuUsage()
      const master0 = masterCpuUs()
      const started = performance.now()
      await inFlight(count, 16, fn)
      rates[op].push(count / ((performance.now() - started) / 1000))
      const client = process.cpuUsage(client0)
      cpu[op].push({ client: (client.user + client.system) / count, master: (masterCpuUs() - master0) / count })
    }
  }
  for (const op of ['mkdir', 'stat'] as const) {
    const clientUs = median(cpu[op].map((c) => c.client))
    const masterUs = median(cpu[op].map((c) => c.master))
    line(`${op}/s (16 in flight)`, fmt(median(rates[op])), `runs ${rates[op].map((v) => fmt(v)).join(' / ')}`)
    line(`  ${op} CPU per op: client + master`, `${fmt(clientUs)} + ${fmt(masterUs)} µs`, `ceiling on 2 cores ≈ ${fmt(2e6 / (clientUs + masterUs))}/s`)
  }
}


const sections = ['core', 'put', 'small', 'ticker', 'meta', 'shadow', 'restart', 'fs', 'recovery', 'gc', 'scrub', 'failover', 'gray', 'cli', 'auth', 's3']

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
    if (core || run('put') || run('meta')) await benchCore(dir, new Set(named), core)
    if (core || run('small')) await benchSmall(dir)      // its own cluster with an in-sync shadow, beside the disk's small-file rate
    if (run('ticker')) await benchTicker(dir)            // one writer, 4 KiB every 10 ms for 20 s
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
    if (run('auth')) await (await import('./bench-auth.js')).benchAuth()   // three clusters: --auth off, signed requests, signed requests + TLS
    if (run('s3')) await (await import('./bench-s3.js')).benchS3()   // its own cluster and gateway; the SDK beside the library
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function benchCore (dir: string, wanted: Set<string>, all: boolean): Promise<void> {
  const disk = median([ddMBps(dir), ddMBps(dir), ddMBps(dir)])
  line('disk: dd 1 GiB conv=fdatasync', `${fmt(disk)} MB/s`)
  // The kit's heartbeat interval: the master lease is 1 s, and a 1 s interval let it lapse under load.
  const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster'), deadAfterMs: 10_000 })
  try {
    if (all || wanted.has('put')) await benchBigFile(cluster, disk)
    if (all || wanted.has('meta')) await benchMetadata(cluster)
  } finally {
    await cluster.stop()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
