// npm run bench -- auth: what signing every control-plane request costs, and TLS on top (issue 12). The same
// cluster shape three times in the same run: --auth off (unsigned), authentication on (the default: every
// metadata request HMAC-signed by the client and checked by the master), and auth on + TLS on every hop (a CA
// and certificates made by openssl at run time, test/helpers/tls.ts; client → master, client → chunkserver,
// chunkserver → chunkserver pipelines and heartbeats all https): stat/s and mkdir/s with 16 in flight, 4 KiB
// puts/s with 16 in flight, and a 1 GiB put (chunk data carries the master's token either way; only its metadata
// calls are signed). Printed side by side with the ratios to the unsigned figure; the aims are ≥ 0.95 with auth
// and ≥ 0.85 with auth + TLS. Metadata figures are medians of metaRuns short rounds, puts of `runs`; in each round
// the three modes run back to back, in a rotating order, and a ratio is the median of the rounds' ratios. Asserts nothing.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { startCluster, type Cluster, type StartClusterOptions } from '../testing/cluster.js'
import type { GranaryClient } from '../client/index.js'
import { makeTestCa } from '../test/helpers/tls.js'
import { fmt, hopCpuSPerGiB, line, median, processCpuUs } from './bench-format.js'

const MiB = 1024 * 1024
const runs = 5            // rounds of puts per mode
const metaRuns = 15       // rounds of each metadata op per mode: short, many and interleaved, so a stall of the box lands on one round of one mode, not on a third of a mode's figure
const metaOps = 4_000     // per round, after warmUp: 5,000 cold ops measured JIT and GC warm-up as much as signing
const smallFiles = 1_000
const bigBytes = 1024 * MiB

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

async function rate (count: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await inFlight(count, 16, fn)
  return count / ((performance.now() - started) / 1000)
}

interface Figures { stat: number[], mkdir: number[], small: number[], big: number[], statCpuUs: number[], mkdirCpuUs: number[], bigCpuS: number[] }

type Mode = 'off' | 'on' | 'tls'   // auth off; auth on; auth on and TLS on every hop

// Flags and the kit's CA for a cluster whose every server speaks TLS (one certificate per server, 127.0.0.1).
function tlsOptions (dir: string): StartClusterOptions {
  const ca = makeTestCa(join(dir, 'certs'))
  const args = (name: string): string[] => {
    const { cert, key } = ca.issue(name)
    return ['--tls-cert', cert, '--tls-key', key, '--ca-file', ca.caFile]
  }
  return { caFile: ca.caFile, masterArgs: args('master'), chunkservers: [0, 1, 2].map((i) => ({ args: args(`cs${i}`) })) }
}


interface Rig { mode: Mode, cluster: Cluster, fs: GranaryClient, big: GranaryClient, figures: Figures }

async function rig (dir: string, mode: Mode): Promise<Rig> {
  const auth = mode === 'off' ? 'off' : 'on'
  const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, `auth-${mode}`), deadAfterMs: 10_000, auth, ...(mode === 'tls' ? tlsOptions(dir) : {}) })
  const credentials = auth === 'on' ? undefined : null
  return {
    mode, cluster, figures: { stat: [], mkdir: [], small: [], big: [], statCpuUs: [], mkdirCpuUs: [], bigCpuS: [] },
    fs: cluster.client({ deadlineMs: 120_000, credentials }),
    big: cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB, credentials })
  }
}

// JIT and GC warm-up on every side of every cluster before anything is measured (as bench meta and bench small
// do): the same 2,000 mkdirs, 20,000 stats and 1,000 small puts on each, so no mode's first round pays for compiling
// what the others already did (a cold first round of puts ran at ~60% of the later ones).
async function warmUp (r: Rig): Promise<void> {
  await r.fs.mkdir('/warm')
  await inFlight(2_000, 16, async (i) => { await r.fs.mkdir(`/warm/d${i}`) })
  await inFlight(20_000, 16, async (i) => { await r.fs.stat(`/warm/d${i % 2_000}`) })
  const small = Buffer.alloc(4096, 1)
  await inFlight(1_000, 16, async (i) => { await r.fs.writeFile(`/warm/d${i}/f`, small) })
}

// One metadata round on one cluster. The CPU each op costs (this client process + the master) is the figure a
// busy machine does not distort: it is what signing and checking add, whatever else runs.
async function metaRound (r: Rig, op: 'mkdir' | 'stat', run: number): Promise<void> {
  const { fs, figures, cluster } = r
  if (op === 'mkdir') await fs.mkdir(`/m${run}`)
  const client0 = process.cpuUsage()
  const master0 = processCpuUs(cluster.master.pid)
  figures[op].push(await rate(metaOps, async (i) => op === 'mkdir' ? await fs.mkdir(`/m${run}/d${i}`) : await fs.stat(`/m${run}/d${i}`)))
  const client = process.cpuUsage(client0)
  figures[op === 'mkdir' ? 'mkdirCpuUs' : 'statCpuUs'].push((client.user + client.system + processCpuUs(cluster.master.pid) - master0) / metaOps)
}

// One round of puts on one cluster: 4 KiB files, then 1 GiB.
async function putRound (r: Rig, run: number, small: Buffer, pattern: Buffer): Promise<void> {
  const { fs, big, figures } = r
  await fs.mkdir(`/s${run}`)
  figures.small.push(await rate(smallFiles, async (i) => await fs.writeFile(`/s${run}/f${i}`, small)))
  let sent = 0
  const source = new Readable({
    read () {
      if (sent >= bigBytes) { this.push(null); return }
      this.push(pattern.subarray(sent % (64 * MiB), sent % (64 * MiB) + MiB))
      sent += MiB
    }
  })
  const started = performance.now()
  const cpuBefore = clusterCpuUs(r.cluster)
  await pipeline(source, big.createWriteStream(`/big-${run}.bin`))
  figures.big.push(bigBytes / MiB / ((performance.now() - started) / 1000))
  figures.bigCpuS.push((clusterCpuUs(r.cluster) - cpuBefore) / 1e6)
  // The next round (another mode's) starts once the chunkservers have unlinked this file's 3 GiB of replicas:
  // deletes running under it slowed whichever mode came next (a 1 GiB put swung 152-285 MB/s within one mode).
  const replicasBefore = storedReplicas(r.cluster) - Math.ceil(bigBytes / (64 * MiB)) * 3
  await big.rm(`/big-${run}.bin`, { skipTrash: true })
  await r.cluster.waitFor(() => storedReplicas(r.cluster) <= replicasBefore, { timeoutMs: 120_000, intervalMs: 100, what: 'the 1 GiB file\'s replicas deleted' })
}

// CPU µs so far of this process (the client) and every server of `cluster`.
function clusterCpuUs (cluster: Cluster): number {
  const own = process.cpuUsage()
  return own.user + own.system + cluster.processes.reduce((sum, p) => sum + processCpuUs(p.pid), 0)
}

async function hopFigures (dir: string): Promise<{ tcp: number, tls: number, tlsExtra: number }> {
  const ca = makeTestCa(join(dir, 'hop-certs'))
  const certificate = { ...ca.issue('hop'), caFile: ca.caFile }
  const pairs: Array<[number, number]> = []
  await hopCpuSPerGiB()   // warm-up, not counted: the first GiB through a fresh process pays for compiling its path
  await hopCpuSPerGiB(certificate)
  for (let i = 0; i < 5; i++) pairs.push([await hopCpuSPerGiB(), await hopCpuSPerGiB(certificate)])
  return { tcp: median(pairs.map(([tcp]) => tcp)), tls: median(pairs.map(([, tls]) => tls)), tlsExtra: median(pairs.map(([tcp, tls]) => tls - tcp)) }
}

function storedReplicas (cluster: Cluster): number {
  return cluster.chunkservers.reduce((sum, _cs, i) => sum + cluster.chunkFiles(i).length, 0)
}

export async function benchAuth (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-auth-'))
  const rigs: Rig[] = []
  try {
    // The physical figure beside the TLS ratio, taken before any cluster runs: a put crosses three hops (client →
    // chunkserver → chunkserver → chunkserver), and on two busy cores its rate is its CPU, so TLS keeps at most
    // put CPU / (put CPU + 3 × a TLS hop's extra CPU) of it. TCP and TLS alternate; the extra is the median of pairs.
    const hops = await hopFigures(dir)
    // All three clusters up at once, their rounds interleaved in a rotating order, so a drift of the machine
    // (page cache, writeback, another process) does not land on one mode only.
    for (const mode of ['off', 'on', 'tls'] as const) rigs.push(await rig(dir, mode))
    for (const r of rigs) await warmUp(r)
    const small = randomBytes(4096)
    const pattern = randomBytes(65 * MiB)
    // Metadata first, before any put has left the clusters chunks to delete and pages to write back.
    for (const op of ['mkdir', 'stat'] as const) {
      for (let run = 0; run < metaRuns; run++) {
        for (let k = 0; k < rigs.length; k++) await metaRound(rigs[(run + k) % rigs.length] as Rig, op, run)
      }
    }
    for (let run = 0; run < runs; run++) {
      for (let k = 0; k < rigs.length; k++) await putRound(rigs[(run + k) % rigs.length] as Rig, run, small, pattern)
    }
    const [off, on, tls] = rigs.map((r) => r.figures) as [Figures, Figures, Figures]
    const runsOf = (values: number[]): string => values.map((v) => fmt(v)).join(' / ')
    // The ratios are medians of each round's own ratio (the three modes of a round ran back to back): this box
    // drifts by ±20 % within a minute, and a ratio of medians taken from different moments carried that drift.
    const pairedRatio = (mode: Figures, key: keyof Figures): number => median(mode[key].map((value, run) => value / (off[key][run] as number)))
    const row = (name: string, unit: string, key: keyof Figures): void => {
      line(`${name}: auth on / off / on+TLS`, `${fmt(median(on[key]))} / ${fmt(median(off[key]))} / ${fmt(median(tls[key]))} ${unit}`,
        `ratio auth ${fmt(pairedRatio(on, key), 2)} (aim ≥ 0.95), auth+TLS ${fmt(pairedRatio(tls, key), 2)} (aim ≥ 0.85), medians of rounds' ratios  runs on ${runsOf(on[key])}, off ${runsOf(off[key])}, on+TLS ${runsOf(tls[key])}`)
    }
    const cpu = (name: string, key: 'statCpuUs' | 'mkdirCpuUs'): void => {
      const a = median(on[key])
      const b = median(off[key])
      const c = median(tls[key])
      line(`  ${name} CPU per op (client + master): on / off / on+TLS`, `${fmt(a)} / ${fmt(b)} / ${fmt(c)} µs`,
        `signing adds ${fmt(a - b)} µs (${fmt(100 * (a - b) / b)} %), TLS ${fmt(c - a)} µs more; 2-core ceiling ≈ ${fmt(2e6 / a)} / ${fmt(2e6 / b)} / ${fmt(2e6 / c)} ops/s`)
    }
    row('stat/s (16 in flight)', '/s', 'stat')
    cpu('stat', 'statCpuUs')
    row('mkdir/s (16 in flight)', '/s', 'mkdir')
    cpu('mkdir', 'mkdirCpuUs')
    row('4 KiB puts/s (16 in flight)', '/s', 'small')
    row('1 GiB put, replication 3', 'MB/s', 'big')
    const putCpu = median(off.bigCpuS)
    line('  1 GiB put CPU-s (all processes): on / off / on+TLS', `${fmt(median(on.bigCpuS), 2)} / ${fmt(putCpu, 2)} / ${fmt(median(tls.bigCpuS), 2)}`,
      `one hop's CPU-s per GiB (physical, both ends, this run): TCP ${fmt(hops.tcp, 2)}, TLS ${fmt(hops.tls, 2)}; 3 TLS hops leave a CPU-bound put at most ${fmt(putCpu / (putCpu + 3 * hops.tlsExtra), 2)} of its rate`)
  } finally {
    for (const r of rigs) await r.cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
