// npm run bench -- gray: what a hung (not dead) server costs a reader (issue 11). One cluster, each process on
// its own loopback "host" (127.0.0.2..6): master, shadow, 3 chunkservers. Figures, each beside this machine's
// physical one from the same run (a bare node:http round trip on loopback):
//   healthy      stat + readFile of a 64 KiB file through the library (client given only the master's URL): p50,
//                p99, and how many reads fired a hedge (the healthy-case cost of hedging should be ~0)
//   master frozen 5 s (SIGSTOP): the same reads through the library: worst and p99; aim worst ≤ 300 ms
//   the CLI      `granary cat` of the 64 KiB file, a fresh process per read given master and shadow, always beside
//                the library's reads (on 2 shared cores a CLI timed alone against one timed beside a busy loop
//                compares the load, not the freeze): 5 s healthy, then 5 s with the master frozen. Printed: worst,
//                p99 and p50 of each; what the freeze added (frozen minus healthy, worst and p50); and the floor
//                any process pays on this machine at this moment, timed the same way in the same run: `node -e 0`
//                and `granary --version` (node plus the CLI's argument parsing, no client, no network). The aim
//                is worst frozen ≤ 300 ms, process included; where the floor's own worst already eats most of it,
//                the figure to hold to 300 ms is the added latency (worst frozen minus worst healthy).
//   chunkserver frozen 5 s: readFile of a 4 MiB file (4 chunks, 3 replicas) through the library: worst and p99
// Asserts nothing.
import { execFile } from 'node:child_process'
import { createServer, request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import diagnosticsChannel from 'node:diagnostics_channel'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { channelNames } from '../client/diagnostics.js'
import { startCluster, type Cluster, type ClusterProcess } from '../testing/cluster.js'
import { fmt, line, median } from './bench-format.js'

const run = promisify(execFile)
const freezeMs = 5_000
const healthyReads = 1_000
const cliReadsMax = 200                  // bounds the CLI loop during a freeze
const aimWorstMs = 300
const cliPath = join(import.meta.dirname, '..', 'client', 'cli', 'cli.js')

function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

// A bare HTTP round trip on loopback (keep-alive), the floor every read above stands on.
async function loopbackRoundTripMs (): Promise<number> {
  const server = createServer((_req, res) => { res.end('{}') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const times: number[] = []
  for (let i = 0; i < 500; i++) {
    const startedMs = performance.now()
    await new Promise<void>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => { res.resume(); res.on('end', resolve) }).on('error', reject).end()
    })
    times.push(performance.now() - startedMs)
  }
  server.close()
  return median(times)
}

async function timedReads (read: () => Promise<unknown>, untilMs: number, countMax: number): Promise<number[]> {
  const times: number[] = []
  while (Date.now() < untilMs && times.length < countMax) {
    const startedMs = performance.now()
    await read()
    times.push(performance.now() - startedMs)
  }
  return times
}

function report (name: string, times: number[], aim = ''): void {
  line(`${name}: worst / p99 / p50`, `${fmt(Math.max(...times))} ms`, `p99 ${fmt(percentile(times, 0.99), 1)} ms, p50 ${fmt(percentile(times, 0.5), 1)} ms over ${fmt(times.length)} reads${aim}`)
}

export async function benchGray (): Promise<void> {
  const floorMs = await loopbackRoundTripMs()
  line('gray: loopback HTTP round trip (physical)', `${fmt(floorMs, 2)} ms`, 'a new connection per request, median of 500')
  let cluster: Cluster | undefined
  try {
    cluster = await startCluster({ chunkservers: 3, shadow: true, hosts: 5, chunkSizeBytes: 1024 * 1024 })
    const shadow = cluster.shadow as ClusterProcess
    await cluster.waitFor(async () => ((await cluster?.report())?.isr?.length ?? 0) === 1, { what: 'the shadow in the in-sync set' })
    const fs = cluster.client({ masters: [cluster.master.url] })
    const small = randomBytes(64 * 1024)
    const big = randomBytes(4 * 1024 * 1024)
    await fs.writeFile('/small', small)
    await fs.writeFile('/big', big)
    await cluster.waitFor(() => fs.knownMasters.includes(shadow.url), { what: 'the client to learn the shadow' })
    const readSmall = async (): Promise<void> => { await fs.stat('/small'); await fs.readFile('/small') }

    // Healthy: the cost of hedging is the hedges that fire.
    let hedges = 0
    const onFailover = (message: unknown): void => { if ((message as { code?: string }).code === 'GRN_HEDGE') hedges++ }
    diagnosticsChannel.subscribe(channelNames.failover, onFailover)
    const healthy = await timedReads(readSmall, Infinity, healthyReads)
    diagnosticsChannel.unsubscribe(channelNames.failover, onFailover)
    report('gray: healthy stat+read 64 KiB (library)', healthy, `; hedges fired ${hedges} of ${healthy.length * 2} metadata reads`)

    // The CLI: a fresh process per read, given both URLs (a new process cannot learn the shadow from a frozen master).
    // Healthy, it reads for freezeMs beside the library's reads, as it does frozen. First the floor, the same way:
    // `node -e 0` and `granary --version` taking turns for freezeMs beside the library's reads.
    const env = { ...process.env, GRANARY_MASTER: fs.knownMasters.join(',') }
    const exec = async (args: string[]): Promise<void> => { await run(process.execPath, args, { env, encoding: 'buffer', maxBuffer: 1024 * 1024 }) }
    const cat = async (): Promise<void> => { await exec([cliPath, 'cat', '/small']) }
    // Untimed, once each: the first run of a command after a build compiles without the CLI bundle's code cache
    // and writes it (client/cli/bundle.ts); every later run, as on a user's machine, starts from it.
    await exec([cliPath, '--version'])
    await cat()
    const floorNode: number[] = []
    const floorVersion: number[] = []
    let turn = 0
    const floorProcess = async (): Promise<void> => {
      const [args, times] = turn++ % 2 === 0 ? [['-e', '0'], floorNode] : [[cliPath, '--version'], floorVersion]
      const startedMs = performance.now()
      await exec(args)
      times.push(performance.now() - startedMs)
    }
    const floorUntilMs = Date.now() + freezeMs
    await Promise.all([timedReads(readSmall, floorUntilMs, Infinity), timedReads(floorProcess, floorUntilMs, cliReadsMax)])
    const healthyUntilMs = Date.now() + freezeMs
    const [, cliHealthy] = await Promise.all([timedReads(readSmall, healthyUntilMs, Infinity), timedReads(cat, healthyUntilMs, cliReadsMax)])

    // The master's host frozen once (5 s is past its lease: the shadow takes over meanwhile), the library and the
    // CLI reading side by side throughout.
    const masterHost = cluster.host(cluster.master)
    masterHost.freeze()
    let frozen: number[]
    let cliFrozen: number[]
    try {
      const untilMs = Date.now() + freezeMs
      ;[frozen, cliFrozen] = await Promise.all([timedReads(readSmall, untilMs, Infinity), timedReads(cat, untilMs, cliReadsMax)])
    } finally {
      masterHost.thaw()
    }
    report('gray: master frozen, stat+read (library)', frozen, `; aim worst ≤ ${aimWorstMs} ms`)
    report('gray: floor, `node -e 0`', floorNode, ' (a new process each, beside the library reads)')
    report('gray: floor, `granary --version`', floorVersion, ' (node + the CLI\'s parsing, no client)')
    report('gray: healthy `granary cat` 64 KiB (CLI)', cliHealthy, ' (a new process each, beside the library reads)')
    report('gray: master frozen, `granary cat` (CLI)', cliFrozen, `; aim worst ≤ ${aimWorstMs} ms, process included`)
    const addedWorstMs = Math.max(...cliFrozen) - Math.max(...cliHealthy)
    const addedP50Ms = percentile(cliFrozen, 0.5) - percentile(cliHealthy, 0.5)
    line('gray: CLI latency added by the freeze', `${fmt(addedWorstMs)} ms`, `worst frozen − worst healthy (p50: ${fmt(addedP50Ms, 1)} ms); aim ≤ ${aimWorstMs} ms`)
    line('gray: CLI healthy above the floor (p50)', `${fmt(percentile(cliHealthy, 0.5) - percentile(floorNode, 0.5), 1)} ms`,
      `cat − node -e 0; --version − node -e 0: ${fmt(percentile(floorVersion, 0.5) - percentile(floorNode, 0.5), 1)} ms`)

    // A chunkserver's host frozen: 4 MiB reads.
    const readBig = async (): Promise<void> => { await fs.readFile('/big') }
    const bigHealthy = await timedReads(readBig, Infinity, 30)
    const csHost = cluster.host(cluster.chunkservers[0] as ClusterProcess)
    csHost.freeze()
    let bigFrozen: number[]
    try {
      bigFrozen = await timedReads(readBig, Date.now() + freezeMs, Infinity)
    } finally {
      csHost.thaw()
    }
    report('gray: healthy readFile 4 MiB (library)', bigHealthy)
    report('gray: a chunkserver frozen, readFile 4 MiB', bigFrozen, `; aim worst ≤ healthy + ${aimWorstMs} ms`)
  } catch (err) {
    line('gray: failed', (err as Error).message.slice(0, 600))
  } finally {
    await cluster?.stop()
  }
}
