// `npm run bench -- s3`: the S3 gateway beside the library it is built on (issue 15), on its own cluster
// (3 chunkservers, replication 3, 64 MiB chunks) with a real `granary s3` process:
//   put  1 GiB through the gateway with @aws-sdk/lib-storage (64 MiB parts, 4 in flight; Complete joins the
//        parts by concat) against the library's createWriteStream, same bytes from memory
//   get  1 GiB (page cache dropped before each) with the SDK's GetObject against the library's createReadStream
//   small 4 KiB PutObject per second (16 at once, 1000 objects) against the library's writeFile
// MB/s (MiB per second) and PUT/s as medians of 3 runs, with the gateway/library ratios (the aim: ≥ 0.8
// for large objects, ≥ 0.7 for small ones). Within a run the two sides alternate which goes first. Nothing is asserted.
// Also the CPU seconds each step cost per process kind (this bench process = the SDK or the library, the gateway,
// the chunkservers, the master), medians: on a shared 2-core box the total is what bounds the rate. Beside them,
// this machine's own figures from the same run (the CPU-s per GiB of one loopback hop and of MD5, SHA-256 and
// CRC32) and what they leave the gateway at most: the library's CPU / (its CPU + what S3 adds); for 4 KiB puts,
// what the SDK's own CPU leaves. Each path first does every step once, uncounted (warmUp).
// Knobs: GRANARY_BENCH_S3_RUNS (default 3); GRANARY_BENCH_S3_PARTS, which of put,get,small to run (default all;
// get needs put); GRANARY_BENCH_S3_GATEWAY_NODE_OPTIONS, NODE_OPTIONS for the gateway process only (Node refuses
// --cpu-prof there: profile with an --import of a module that starts node:inspector's profiler).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomBytes } from 'node:crypto'
import { S3Client, CreateBucketCommand, GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { startCluster } from '../testing/cluster.js'
import type { GranaryClient } from '../client/index.js'
import { spawnRole } from '../shared/process.js'
import { digestCpuSPerGiB, dropPageCache, fmt, hopCpuSPerGiB, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const runs = Number(process.env.GRANARY_BENCH_S3_RUNS ?? 3)
const parts = new Set((process.env.GRANARY_BENCH_S3_PARTS ?? 'put,get,small').split(',').map((part) => part.trim()))
if (parts.has('get')) parts.add('put')
const partsInFlight = Number(process.env.GRANARY_BENCH_S3_PARTS_IN_FLIGHT ?? 4)
const smallCount = 1000
const smallInFlight = 16
const keys = { accessKeyId: 'BENCHKEY', secretAccessKey: 'bench-secret-key' }

type Step = 'libraryPut' | 's3Put' | 'libraryGet' | 's3Get' | 'librarySmall' | 's3Small'
const steps: readonly Step[] = ['libraryPut', 's3Put', 'libraryGet', 's3Get', 'librarySmall', 's3Small']
type Rates = Record<Step, number[]>
// CPU seconds of one step, per process kind.
type ProcessKind = 'bench' | 'gateway' | 'chunkservers' | 'master'
const processKinds: readonly ProcessKind[] = ['bench', 'gateway', 'chunkservers', 'master']
interface Usage { cpuS: number, syscalls: number }
type Cpu = Record<Step, Array<Record<ProcessKind, Usage>>>
interface Pids { gateway: number, chunkservers: number[], master: number }

export async function benchS3 (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-s3-'))
  try {
    // This machine's own figures, taken before the cluster starts (a process busy with it measured a hop at 2-3×),
    // after one uncounted hop (the first GiB through a fresh process pays for compiling its path).
    await hopCpuSPerGiB()
    const physical: Physical = { hopCpuS: median([await hopCpuSPerGiB(), await hopCpuSPerGiB(), await hopCpuSPerGiB()]), digestCpuS: digestCpuSPerGiB(randomBytes(64 * MiB)) }
    const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster'), chunkSizeBytes: 64 * MiB })
    try {
      const nodeOptions = process.env.GRANARY_BENCH_S3_GATEWAY_NODE_OPTIONS
      const gateway = await spawnRole({
        role: 's3', args: ['--port', '0', '--masters', cluster.masters.join(',')],
        logPath: join(dir, 's3.log'), readyTimeoutMs: 30_000,
        env: { GRANARY_S3_ACCESS_KEY_ID: keys.accessKeyId, GRANARY_S3_SECRET_ACCESS_KEY: keys.secretAccessKey, ...(nodeOptions === undefined ? {} : { NODE_OPTIONS: nodeOptions }) }
      })
      const s3 = new S3Client({ endpoint: gateway.ready.url, region: 'us-east-1', forcePathStyle: true, credentials: { ...keys } })
      try {
        const fs = cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB })
        await s3.send(new CreateBucketCommand({ Bucket: 'bench' }))
        await fs.mkdir('/native')
        const pattern = randomBytes(64 * MiB)
        const rates = Object.fromEntries(steps.map((step) => [step, []])) as unknown as Rates
        const cpu = Object.fromEntries(steps.map((step) => [step, []])) as unknown as Cpu
        const pids: Pids = { gateway: gateway.pid, chunkservers: cluster.chunkservers.map((cs) => cs.pid), master: cluster.master.pid }
        await warmUp(fs, s3, pattern)
        let cold = true
        for (let run = 0; run < runs; run++) cold = await benchRun(fs, s3, pattern, run, rates, cpu, pids) && cold
        printRates(rates, cpu, cold, physical)
      } finally {
        s3.destroy()
        gateway.child.kill('SIGTERM')
        await gateway.exited
      }
    } finally {
      await cluster.stop()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// Before anything is counted, each path does a little of every step: a fresh process's first requests of a kind pay
// for compiling their path (at 21:21 on 2026-12-07 the library's first round of 4 KiB puts ran at 304/s, the next
// two at 479 and 443), and the first runs would measure that instead of the gateway. smallCount 4 KiB puts and a
// 64 MiB put and get each way, not counted.
async function warmUp (fs: GranaryClient, s3: S3Client, pattern: Buffer): Promise<void> {
  const small = pattern.subarray(0, 4096)
  await fs.mkdir('/native/warm')
  if (parts.has('small')) {
    await timedPerSecond(async (i) => { await fs.writeFile(`/native/warm/${i}`, small) })
    await timedPerSecond(async (i) => { await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `warm/${i}`, Body: small })) })
  }
  if (parts.has('put')) {
    const bytes = 64 * MiB
    await pipeline(Readable.from(pieces(pattern, bytes)), fs.createWriteStream('/native/warm/big', { overwrite: true }))
    await new Upload({ client: s3, queueSize: partsInFlight, partSize: 16 * MiB, params: { Bucket: 'bench', Key: 'warm/big', Body: Readable.from(pieces(pattern, bytes)) } }).done()
    await pipeline(fs.createReadStream('/native/warm/big'), sink(bytes))
    const got = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: 'warm/big' }))
    await pipeline(got.Body as Readable, sink(bytes))
  }
  await fs.rm('/native/warm', { recursive: true, skipTrash: true })
  await fs.rm('/bench/warm', { recursive: true, skipTrash: true })
}

async function benchRun (fs: GranaryClient, s3: S3Client, pattern: Buffer, run: number, rates: Rates, cpu: Cpu, pids: Pids): Promise<boolean> {
  const s3First = run % 2 === 1
  let cold = true
  const small = pattern.subarray(0, 4096)
  const work: Record<Step, () => Promise<number>> = {
    libraryPut: async () => await timedMBps(GiB, async () => { await pipeline(Readable.from(pieces(pattern, GiB)), fs.createWriteStream(`/native/big-${run}`, { overwrite: true })) }),
    s3Put: async () => await timedMBps(GiB, async () => {
      await new Upload({ client: s3, queueSize: partsInFlight, partSize: 64 * MiB, params: { Bucket: 'bench', Key: `big-${run}`, Body: Readable.from(pieces(pattern, GiB)) } }).done()
    }),
    libraryGet: async () => {
      cold = dropPageCache() && cold
      return await timedMBps(GiB, async () => { await pipeline(fs.createReadStream(`/native/big-${run}`), sink(GiB)) })
    },
    s3Get: async () => {
      cold = dropPageCache() && cold
      return await timedMBps(GiB, async () => {
        const got = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: `big-${run}` }))
        await pipeline(got.Body as Readable, sink(GiB))
      })
    },
    librarySmall: async () => await timedPerSecond(async (i) => { await fs.writeFile(`/native/small-${run}/${i}`, small) }),
    s3Small: async () => await timedPerSecond(async (i) => { await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `small-${run}/${i}`, Body: small })) })
  }
  const order = (s3First ? ['s3Put', 'libraryPut', 's3Get', 'libraryGet', 's3Small', 'librarySmall'] as Step[] : [...steps])
    .filter((step) => parts.has(step.replace(/^(library|s3)/, '').toLowerCase()))
  for (const step of order) {
    const before = cpuSeconds(pids)
    rates[step].push(await work[step]())
    const after = cpuSeconds(pids)
    cpu[step].push(Object.fromEntries(processKinds.map((kind) => [kind, { cpuS: after[kind].cpuS - before[kind].cpuS, syscalls: after[kind].syscalls - before[kind].syscalls }])) as Record<ProcessKind, Usage>)
  }
  if (parts.has('put')) {
    await fs.rm(`/native/big-${run}`, { skipTrash: true })
    await fs.rm(`/bench/big-${run}`, { skipTrash: true })
  }
  if (parts.has('small')) {
    await fs.rm(`/native/small-${run}`, { recursive: true, skipTrash: true })
    await fs.rm(`/bench/small-${run}`, { recursive: true, skipTrash: true })
  }
  return cold
}

// user + system CPU seconds and read + write system calls so far, per process kind (Linux /proc; clock ticks of
// 10 ms). The syscall count does not move with the box's load as CPU time does: it shows how finely bytes travel.
function cpuSeconds (pids: Pids): Record<ProcessKind, Usage> {
  const of = (pid: number): Usage => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    const io = readFileSync(`/proc/${pid}/io`, 'utf8')
    const count = (name: string): number => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? 0)
    return { cpuS: (Number(fields[11]) + Number(fields[12])) / 100, syscalls: count('syscr') + count('syscw') }
  }
  const sum = (usages: Usage[]): Usage => ({ cpuS: usages.reduce((total, u) => total + u.cpuS, 0), syscalls: usages.reduce((total, u) => total + u.syscalls, 0) })
  return { bench: of(process.pid), gateway: of(pids.gateway), chunkservers: sum(pids.chunkservers.map(of)), master: of(pids.master) }
}

// This machine's own figures, from the same run: the CPU-s per GiB of one loopback hop (both ends) and of each
// digest S3 makes somebody compute over every byte.
interface Physical { hopCpuS: number, digestCpuS: Record<'md5' | 'sha256' | 'crc32', number> }

function printRates (rates: Rates, cpu: Cpu, cold: boolean, physical: Physical): void {
  const runsOf = (values: number[]): string => `runs ${values.map((r) => fmt(r)).join(' / ')}`
  const temperature = cold ? 'cold' : 'WARM: could not drop the page cache'
  const cpuOf = (step: Step): string => {
    const parts = processKinds.map((kind) => `${kind} ${fmt(median(cpu[step].map((c) => c[kind].cpuS)), 2)}`)
    const total = median(cpu[step].map((c) => processKinds.reduce((sum, kind) => sum + c[kind].cpuS, 0)))
    const calls = processKinds.map((kind) => `${kind} ${fmt(median(cpu[step].map((c) => c[kind].syscalls)) / 1000)}k`)
    return `CPU s: ${parts.join(', ')}; total ${fmt(total, 2)}. read/write calls: ${calls.join(', ')}`
  }
  const pairs: Array<[string, Step, Step, string]> = [
    ['1 GiB put, r3', 'libraryPut', 's3Put', 'MB/s'],
    [`1 GiB get (${temperature})`, 'libraryGet', 's3Get', 'MB/s'],
    [`4 KiB puts, ${smallInFlight} at once`, 'librarySmall', 's3Small', '/s']
  ]
  for (const [what, library, s3, unit] of pairs) {
    if (rates[library].length === 0) continue
    line(`${what}: library`, `${fmt(median(rates[library]))} ${unit}`, runsOf(rates[library]))
    line(`${what}: S3 gateway (SDK)`, `${fmt(median(rates[s3]))} ${unit}`, `gateway/library ${fmt(median(rates[s3]) / median(rates[library]), 2)}  ${runsOf(rates[s3])}`)
    line('  library', '', cpuOf(library))
    line('  S3 gateway (bench = the SDK)', '', cpuOf(s3))
  }
  // Every process shares two cores, so a large transfer's rate is bounded by its CPU per GiB: the gateway's path
  // can keep at most the library's CPU / (the library's CPU + what S3 adds that the library does not do).
  const { hopCpuS, digestCpuS } = physical
  line('physical: one loopback hop, digests', `${fmt(hopCpuS, 2)} CPU-s/GiB`, `MD5 ${fmt(digestCpuS.md5, 2)}, SHA-256 ${fmt(digestCpuS.sha256, 2)}, CRC32 ${fmt(digestCpuS.crc32, 2)} CPU-s/GiB (this run)`)
  const ceiling = (step: Step, what: string, unit: string, added: Array<[string, number]>): void => {
    if (cpu[step].length === 0) return
    const libraryCpuS = median(cpu[step].map((c) => processKinds.reduce((sum, kind) => sum + c[kind].cpuS, 0)))
    const addedCpuS = added.reduce((sum, [, cpuS]) => sum + cpuS, 0)
    line(`  ${what}: the most S3 can keep here`, `${fmt(libraryCpuS / (libraryCpuS + addedCpuS), 2)}`,
      `of the library's rate: its ${fmt(libraryCpuS, 2)} CPU-s${unit} + ${fmt(addedCpuS, 2)} that S3 adds (${added.map(([name]) => name).join(' + ')})`)
  }
  const hop: [string, number] = ['a hop', hopCpuS]
  ceiling('libraryPut', '1 GiB put', '/GiB', [hop, ['SDK SHA-256', digestCpuS.sha256], ['SDK CRC32', digestCpuS.crc32],
    ['gateway MD5', digestCpuS.md5], ['gateway SHA-256', digestCpuS.sha256], ['gateway CRC32', digestCpuS.crc32]])
  ceiling('libraryGet', '1 GiB get', '/GiB', [hop])
  // A 4 KiB PutObject: the gateway runs the library's own writeFile, so the S3 path costs at least the library's path
  // plus what the SDK spends in this process (its signing, checksums and HTTP client; measured, the same run),
  // even if the gateway's S3 side (its HTTP server, SigV4 check, MD5) cost nothing.
  if (cpu.s3Small.length > 0) ceiling('librarySmall', `${smallCount} 4 KiB puts`, '', [['the SDK (this process)', median(cpu.s3Small.map((c) => c.bench.cpuS))]])
}

function * pieces (pattern: Buffer, totalBytes: number): Generator<Buffer> {
  for (let sent = 0; sent < totalBytes; sent += MiB) {
    const offset = sent % pattern.length
    yield pattern.subarray(offset, offset + Math.min(MiB, totalBytes - sent))
  }
}

function sink (expectedBytes: number): Writable {
  let bytes = 0
  return new Writable({
    highWaterMark: 4 * MiB,
    write (piece: Buffer, _encoding, done) { bytes += piece.length; done() },
    final (done) { done(bytes === expectedBytes ? null : new Error(`read ${bytes} bytes, expected ${expectedBytes}`)) }
  })
}

async function timedMBps (bytes: number, fn: () => Promise<void>): Promise<number> {
  const started = performance.now()
  await fn()
  return bytes / MiB / ((performance.now() - started) / 1000)
}

// smallCount operations, smallInFlight at a time: operations per second.
async function timedPerSecond (op: (i: number) => Promise<void>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: smallInFlight }, async () => {
    for (let i = next++; i < smallCount; i = next++) await op(i)
  }))
  return smallCount / ((performance.now() - started) / 1000)
}
