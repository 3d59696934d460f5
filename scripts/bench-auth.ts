// npm run bench -- auth: what signing every control-plane request costs, and TLS on top (issue 12). The same
// cluster shape three times in the same run: --auth off (unsigned), authentication on (the default: every
// metadata request HMAC-signed by the client and checked by the master), and auth on + TLS on every hop (a CA
// and certificates made by openssl at run time, test/helpers/tls.ts; client → master, client → chunkserver,
// chunkserver → chunkserver pipelines and heartbeats all https): stat/s and mkdir/s with 16 in flight, 4 KiB
// puts/s with 16 in flight, and a 1 GiB put (chunk data carries the master's token either way; only its metadata
// calls are signed). Printed side by side with the ratios to the unsigned figure; the aims are ≥ 0.95 with auth
// and ≥ 0.85 with auth + TLS. Asserts nothing.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { startCluster, type StartClusterOptions } from '../testing/cluster.js'
import { makeTestCa } from '../test/helpers/tls.js'
import { fmt, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const runs = 3
const metaOps = 5_000
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

interface Figures { stat: number[], mkdir: number[], small: number[], big: number[] }

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

async function measure (dir: string, mode: Mode): Promise<Figures> {
  const auth = mode === 'off' ? 'off' : 'on'
  const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, `auth-${mode}`), deadAfterMs: 10_000, auth, ...(mode === 'tls' ? tlsOptions(dir) : {}) })
  const figures: Figures = { stat: [], mkdir: [], small: [], big: [] }
  try {
    const fs = cluster.client({ deadlineMs: 120_000, credentials: auth === 'on' ? undefined : null })
    const big = cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB, credentials: auth === 'on' ? undefined : null })
    const small = randomBytes(4096)
    const pattern = randomBytes(65 * MiB)
    for (let r = 0; r < runs; r++) {
      await fs.mkdir(`/m${r}`)
      figures.mkdir.push(await rate(metaOps, async (i) => await fs.mkdir(`/m${r}/d${i}`)))
      figures.stat.push(await rate(metaOps, async (i) => await fs.stat(`/m${r}/d${i}`)))
      await fs.mkdir(`/s${r}`)
      figures.small.push(await rate(smallFiles, async (i) => await fs.writeFile(`/s${r}/f${i}`, small)))
      let sent = 0
      const source = new Readable({
        read () {
          if (sent >= bigBytes) { this.push(null); return }
          this.push(pattern.subarray(sent % (64 * MiB), sent % (64 * MiB) + MiB))
          sent += MiB
        }
      })
      const started = performance.now()
      await pipeline(source, big.createWriteStream(`/big-${r}.bin`))
      figures.big.push(bigBytes / MiB / ((performance.now() - started) / 1000))
      await big.rm(`/big-${r}.bin`, { skipTrash: true })
    }
  } finally {
    await cluster.stop()
  }
  return figures
}

export async function benchAuth (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-auth-'))
  try {
    const off = await measure(dir, 'off')
    const on = await measure(dir, 'on')
    const tls = await measure(dir, 'tls')
    const runsOf = (values: number[]): string => values.map((v) => fmt(v)).join(' / ')
    const row = (name: string, unit: string, key: keyof Figures): void => {
      const a = median(on[key])
      const b = median(off[key])
      const c = median(tls[key])
      line(`${name}: auth on / off / on+TLS`, `${fmt(a)} / ${fmt(b)} / ${fmt(c)} ${unit}`,
        `ratio auth ${fmt(a / b, 2)} (aim ≥ 0.95), auth+TLS ${fmt(c / b, 2)} (aim ≥ 0.85)  runs on ${runsOf(on[key])}, off ${runsOf(off[key])}, on+TLS ${runsOf(tls[key])}`)
    }
    row('stat/s (16 in flight)', '/s', 'stat')
    row('mkdir/s (16 in flight)', '/s', 'mkdir')
    row('4 KiB puts/s (16 in flight)', '/s', 'small')
    row('1 GiB put, replication 3', 'MB/s', 'big')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
