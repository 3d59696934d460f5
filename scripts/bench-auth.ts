// npm run bench -- auth: what signing every control-plane request costs, and TLS on top (issue 12). The same
// cluster shape three times in the same run: --auth off (unsigned), authentication on (the default: every
// metadata request HMAC-signed by the client and checked by the master), and auth on + TLS on every hop (a CA
// and certificates made by openssl at run time, test/helpers/tls.ts; client → master, client → chunkserver,
// chunkserver → chunkserver pipelines and heartbeats all https): stat/s and mkdir/s with 16 in flight, 4 KiB
// puts/s with 16 in flight, and a 1 GiB put (chunk data carries the master's token either way; only its metadata
// calls are signed). Printed side by side with the ratios to the unsigned figure; the aims are ≥ 0.95 with auth
// and ≥ 0.85 with auth + TLS. Asserts nothing.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { startCluster, type Cluster, type StartClusterOptions } from '../testing/cluster.js'
import type { GranaryClient } from '../client/index.js'
import { makeTestCa } from '../test/helpers/tls.js'
import { fmt, line, median, processCpuUs } from './bench-format.js'

const MiB = 1024 * 1024
const runs = 3
const metaOps = 20_000   // per run, after warmUp: 5,000 cold ops measured JIT and GC warm-up as much as signing
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

interface Figures { stat: number[], mkdir: number[], small: number[], big: number[], statCpuUs: number[], mkdirCpuUs: number[] }

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
    mode, cluster, figures: { stat: [], mkdir: [], small: [], big: [], statCpuUs: [], mkdirCpuUs: [] },
    fs: cluster.client({ deadlineMs: 120_000, credentials }),
    big: cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB, credentials })
  }
}

// JIT and GC warm-up on every side of every cluster before anything is measured (as bench meta does): the
// same 2,000 mkdirs and 20,000 stats on each, so no mode's first round pays for compiling what the others already did.
async function warmUp (r: Rig): Promise<void> {
  await r.fs.mkdir('/warm')
  await inFlight(2_000, 16, async (i) => { await r.fs.mkdir(`/warm/d${i}`) })
  await inFlight(20_000, 16, async (i) => { await r.fs.stat(`/warm/d${i % 2_000}`) })
}

// One round on one cluster. The CPU each metadata op costs (this client process + the master) is the figure a
// busy machine does not distort: it is what signing and checking add, whatever else runs.
async function round (r: Rig, run: number, small: Buffer, pattern: Buffer): Promise<void> {
  const { fs, big, figures, cluster } = r
  await fs.mkdir(`/m${run}`)
  for (const op of ['mkdir', 'stat'] as const) {
    const client0 = process.cpuUsage()
    const master0 = processCpuUs(cluster.master.pid)
    figures[op].push(await rate(metaOps, async (i) => op === 'mkdir' ? await fs.mkdir(`/m${run}/d${i}`) : await fs.stat(`/m${run}/d${i}`)))
    const client = process.cpuUsage(client0)
    figures[op === 'mkdir' ? 'mkdirCpuUs' : 'statCpuUs'].push((client.user + client.system + processCpuUs(cluster.master.pid) - master0) / metaOps)
  }
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
  await pipeline(source, big.createWriteStream(`/big-${run}.bin`))
  figures.big.push(bigBytes / MiB / ((performance.now() - started) / 1000))
  await big.rm(`/big-${run}.bin`, { skipTrash: true })
}

export async function benchAuth (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-auth-'))
  const rigs: Rig[] = []
  try {
    // All three clusters up at once, their rounds interleaved in a rotating order, so a drift of the machine
    // (page cache, writeback, another process) does not land on one mode only.
    for (const mode of ['off', 'on', 'tls'] as const) rigs.push(await rig(dir, mode))
    for (const r of rigs) await warmUp(r)
    const small = randomBytes(4096)
    const pattern = randomBytes(65 * MiB)
    for (let run = 0; run < runs; run++) {
      for (let k = 0; k < rigs.length; k++) await round(rigs[(run + k) % rigs.length] as Rig, run, small, pattern)
    }
    const [off, on, tls] = rigs.map((r) => r.figures) as [Figures, Figures, Figures]
    const runsOf = (values: number[]): string => values.map((v) => fmt(v)).join(' / ')
    const row = (name: string, unit: string, key: keyof Figures): void => {
      const a = median(on[key])
      const b = median(off[key])
      const c = median(tls[key])
      line(`${name}: auth on / off / on+TLS`, `${fmt(a)} / ${fmt(b)} / ${fmt(c)} ${unit}`,
        `ratio auth ${fmt(a / b, 2)} (aim ≥ 0.95), auth+TLS ${fmt(c / b, 2)} (aim ≥ 0.85)  runs on ${runsOf(on[key])}, off ${runsOf(off[key])}, on+TLS ${runsOf(tls[key])}`)
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
  } finally {
    for (const r of rigs) await r.cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
