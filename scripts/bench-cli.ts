// `npm run bench -- cli`: the `granary` CLI beside the library it is built on (issue 13), on its own cluster
// (3 chunkservers, replication 3, 64 MiB chunks, the kit's default heartbeats) in a temp folder:
//   put  a 1 GiB local file already in the page cache: `granary put FILE /path`, spawned, against the library's
//        createWriteStream fed the same bytes from memory (as `bench -- put` does)
//   get  cold (page cache dropped before each read): `granary cat /path > /dev/null`, spawned, against the
//        library's createReadStream into a sink
// MB/s (MiB per second) as medians of 3, the CLI timed from spawn to exit (node's start-up included: a user
// waits for it too), the CLI/library ratio of the medians, and the disk's dd figure measured in the same run.
// Within a run the two sides alternate which goes first. Beside each rate, the CPU it cost per GiB (user +
// system, medians): the CLI's own process (its resourceUsage at exit, through a preloaded probe) and the
// library's (this process; the cluster runs in processes of its own), with the CLI's peak RSS and minor page
// faults per GiB. Nothing is asserted.
import { spawn } from 'node:child_process'
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { startCluster, type Cluster } from '../testing/cluster.js'
import type { GranaryClient } from '../client/index.js'
import { cliPath } from '../shared/process.js'
import { ddMBps, dropPageCache, fmt, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const runs = 3
const cliDeadlineMs = 120_000           // the library client's budget too
const cliTimeoutMs = 10 * 60_000        // a CLI run that takes longer is a hang: kill it and fail the bench

interface Rates { libraryPut: number[], cliPut: number[], libraryGet: number[], cliGet: number[] }
// CPU seconds per GiB of each side, and the CLI's peak RSS (MiB) and minor page faults per GiB.
interface Costs { libraryPut: number[], cliPut: number[], libraryGet: number[], cliGet: number[], cliPutRssMiB: number[], cliPutFaults: number[] }
interface ChildUsage { cpuSeconds: number, maxRssMiB: number, minorFaults: number }

// Preloaded into each CLI process (--import): writes its resourceUsage when it exits, to the file the
// environment names.
const probeSource = `import { writeFileSync } from 'node:fs'
process.on('exit', () => {
  const u = process.resourceUsage()
  writeFileSync(process.env.GRANARY_BENCH_USAGE_FILE, JSON.stringify({ cpuSeconds: (u.userCPUTime + u.systemCPUTime) / 1e6, maxRssMiB: u.maxRSS / 1024, minorFaults: u.minorPageFault }))
})
`

export async function benchCli (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-cli-'))
  try {
    const disk = median([ddMBps(dir), ddMBps(dir), ddMBps(dir)])
    const pattern = randomBytes(64 * MiB)
    const file = join(dir, 'source.bin')
    writeLocalFile(file, pattern)
    const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster') })
    try {
      const rates: Rates = { libraryPut: [], cliPut: [], libraryGet: [], cliGet: [] }
      const costs: Costs = { libraryPut: [], cliPut: [], libraryGet: [], cliGet: [], cliPutRssMiB: [], cliPutFaults: [] }
      const probe = join(dir, 'usage-probe.mjs')
      writeFileSync(probe, probeSource)
      let cold = true
      const fs = cluster.client({ deadlineMs: cliDeadlineMs, chunkSizeBytes: 64 * MiB })
      for (let i = 0; i < runs; i++) cold = await benchRun(cluster, fs, { file, pattern, run: i, rates, costs, probe, usageFile: join(dir, 'usage.json') }) && cold
      printRates(rates, costs, disk, cold)
    } finally {
      await cluster.stop()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

interface RunInput { file: string, pattern: Buffer, run: number, rates: Rates, costs: Costs, probe: string, usageFile: string }

// One run: both puts, then both cold reads of the library's file; returns false if the page cache could not
// be dropped (the reads were warm).
async function benchRun (cluster: Cluster, fs: GranaryClient, input: RunInput): Promise<boolean> {
  const { file, pattern, run, rates, costs } = input
  const cli = async (args: string[], stdout: 'ignore' | number): Promise<ChildUsage> => await runCli(args, cluster, stdout, input)
  const libraryPath = `/bench-cli/library-${run}.bin`
  const cliTarget = `/bench-cli/cli-${run}.bin`
  const cliFirst = run % 2 === 1
  const libraryPut = async (): Promise<void> => {
    const cpu = process.cpuUsage()
    rates.libraryPut.push(await timedMBps(async () => { await pipeline(patternPieces(pattern, GiB), fs.createWriteStream(libraryPath, { overwrite: true })) }))
    costs.libraryPut.push(cpuSecondsSince(cpu))
  }
  const cliPut = async (): Promise<void> => {
    warmLocalFile(file)   // a cold read before the put would drop it from the page cache
    let usage: ChildUsage | undefined
    rates.cliPut.push(await timedMBps(async () => { usage = await cli(['put', file, cliTarget], 'ignore') }))
    costs.cliPut.push(usage?.cpuSeconds ?? NaN)
    costs.cliPutRssMiB.push(usage?.maxRssMiB ?? NaN)
    costs.cliPutFaults.push(usage?.minorFaults ?? NaN)
    const stat = await fs.stat(cliTarget)
    if (stat.sizeBytes !== GiB) throw new Error(`granary put stored ${stat.sizeBytes} bytes, the file has ${GiB}`)
  }
  let cold = true
  const libraryGet = async (): Promise<void> => {
    cold = dropPageCache() && cold
    const out = sink()
    const cpu = process.cpuUsage()
    rates.libraryGet.push(await timedMBps(async () => { await pipeline(fs.createReadStream(libraryPath), out) }))
    costs.libraryGet.push(cpuSecondsSince(cpu))
    if (out.bytes !== GiB) throw new Error(`the library read ${out.bytes} bytes, the file has ${GiB}`)
  }
  const cliGet = async (): Promise<void> => {
    cold = dropPageCache() && cold
    const devNull = openSync('/dev/null', 'w')
    try {
      let usage: ChildUsage | undefined
      rates.cliGet.push(await timedMBps(async () => { usage = await cli(['cat', libraryPath], devNull) }))
      costs.cliGet.push(usage?.cpuSeconds ?? NaN)
    } finally {
      closeSync(devNull)
    }
  }
  for (const step of cliFirst ? [cliPut, libraryPut, cliGet, libraryGet] : [libraryPut, cliPut, libraryGet, cliGet]) await step()
  await fs.rm(libraryPath, { skipTrash: true })
  await fs.rm(cliTarget, { skipTrash: true })
  return cold
}

function printRates (rates: Rates, costs: Costs, disk: number, cold: boolean): void {
  const runsOf = (values: number[]): string => `runs ${values.map((r) => fmt(r)).join(' / ')}`
  const libraryPut = median(rates.libraryPut)
  const cliPut = median(rates.cliPut)
  const libraryGet = median(rates.libraryGet)
  const cliGet = median(rates.cliGet)
  const temperature = cold ? 'cold' : 'WARM: could not drop the page cache'
  line('disk: dd 1 GiB conv=fdatasync', `${fmt(disk)} MB/s`)
  line('1 GiB put, r3: library createWriteStream', `${fmt(libraryPut)} MB/s`, `ratio to disk ${fmt(libraryPut / disk, 2)}  ${runsOf(rates.libraryPut)}`)
  line('1 GiB put, r3: granary put FILE', `${fmt(cliPut)} MB/s`, `CLI/library ${fmt(cliPut / libraryPut, 2)}  ${runsOf(rates.cliPut)}`)
  line(`1 GiB get (${temperature}): library`, `${fmt(libraryGet)} MB/s`, `ratio to disk ${fmt(libraryGet / disk, 2)}  ${runsOf(rates.libraryGet)}`)
  line(`1 GiB get (${temperature}): granary cat`, `${fmt(cliGet)} MB/s`, `CLI/library ${fmt(cliGet / libraryGet, 2)}  ${runsOf(rates.cliGet)}`)
  const cpuRuns = (values: number[]): string => `runs ${values.map((r) => fmt(r, 2)).join(' / ')}`
  line('CPU per GiB put: library (client process)', `${fmt(median(costs.libraryPut), 2)} s`, cpuRuns(costs.libraryPut))
  line('CPU per GiB put: granary put (whole process)', `${fmt(median(costs.cliPut), 2)} s`, `${cpuRuns(costs.cliPut)}; peak RSS ${fmt(median(costs.cliPutRssMiB))} MiB, ${fmt(median(costs.cliPutFaults))} minor faults`)
  line('CPU per GiB get: library (client process)', `${fmt(median(costs.libraryGet), 2)} s`, cpuRuns(costs.libraryGet))
  line('CPU per GiB get: granary cat (whole process)', `${fmt(median(costs.cliGet), 2)} s`, cpuRuns(costs.cliGet))
}

function cpuSecondsSince (start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1e6
}

async function timedMBps (fn: () => Promise<void>): Promise<number> {
  const started = performance.now()
  await fn()
  return GiB / MiB / ((performance.now() - started) / 1000)
}

// Runs the built CLI against the cluster; stdout goes to `stdout` (ignored, or a descriptor such as /dev/null).
// Rejects on a non-zero exit with the CLI's stderr; resolves with what the process used, as its probe wrote.
async function runCli (args: string[], cluster: Cluster, stdout: 'ignore' | number, usage: { probe: string, usageFile: string }): Promise<ChildUsage> {
  rmSync(usage.usageFile, { force: true })
  const child = spawn(process.execPath, ['--import', pathToFileURL(usage.probe).href, cliPath, ...args, '--master', cluster.masters.join(','), '--deadline-ms', String(cliDeadlineMs)], {
    stdio: ['ignore', stdout, 'pipe'],
    env: { ...process.env, GRANARY_BENCH_USAGE_FILE: usage.usageFile },
  })
  let stderr = ''
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (text: string) => { stderr += text })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, cliTimeoutMs)
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    if (code !== 0) throw new Error(`granary ${args.join(' ')} exited ${String(code)}: ${stderr.trim()}`)
    return JSON.parse(readFileSync(usage.usageFile, 'utf8')) as ChildUsage
  } finally {
    clearTimeout(timer)
  }
}

// The bytes the library put sends: the pattern over and over, in 1 MiB pieces (no copies).
async function * patternPieces (pattern: Buffer, totalBytes: number): AsyncGenerator<Buffer> {
  for (let sentBytes = 0; sentBytes < totalBytes; sentBytes += MiB) {
    const offsetBytes = sentBytes % pattern.length
    yield pattern.subarray(offsetBytes, offsetBytes + Math.min(MiB, totalBytes - sentBytes))
  }
}

// The same bytes as a local file, fsynced so its write-back does not land in a measurement.
function writeLocalFile (file: string, pattern: Buffer): void {
  const fd = openSync(file, 'w')
  try {
    for (let writtenBytes = 0; writtenBytes < GiB; writtenBytes += pattern.length) writeSync(fd, pattern)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

// Reads the file once so the CLI's put reads it from the page cache, as in the figures.
function warmLocalFile (file: string): void {
  const fd = openSync(file, 'r')
  const buffer = Buffer.allocUnsafe(4 * MiB)
  try {
    while (readSync(fd, buffer, 0, buffer.length, null) > 0) { /* reading is the point */ }
  } finally {
    closeSync(fd)
  }
}

function sink (): Writable & { bytes: number } {
  const w = new Writable({ highWaterMark: 4 * MiB, write (piece: Buffer, _enc, done) { w.bytes += piece.length; done() } }) as Writable & { bytes: number }
  w.bytes = 0
  return w
}
