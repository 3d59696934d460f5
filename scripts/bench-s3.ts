// `npm run bench -- s3`: the S3 gateway beside the library it is built on (issue 15), on its own cluster
// (3 chunkservers, replication 3, 64 MiB chunks) with a real `granary s3` process:
//   put  1 GiB through the gateway with @aws-sdk/lib-storage (64 MiB parts, 4 in flight; Complete joins the
//        parts by concat) against the library's createWriteStream, same bytes from memory
//   get  1 GiB (page cache dropped before each) with the SDK's GetObject against the library's createReadStream
//   small 4 KiB PutObject per second (16 at once, 1000 objects) against the library's writeFile
// MB/s (MiB per second) and PUT/s as medians of 3 runs, with the gateway/library ratios (the aim: ≥ 0.8
// for large objects, ≥ 0.7 for small ones). Within a run the two sides alternate which goes first. Nothing is asserted.
import { mkdtempSync, rmSync } from 'node:fs'
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
import { dropPageCache, fmt, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const runs = 3
const smallCount = 1000
const smallInFlight = 16
const keys = { accessKeyId: 'BENCHKEY', secretAccessKey: 'bench-secret-key' }

interface Rates { libraryPut: number[], s3Put: number[], libraryGet: number[], s3Get: number[], librarySmall: number[], s3Small: number[] }

export async function benchS3 (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-s3-'))
  try {
    const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster'), chunkSizeBytes: 64 * MiB })
    try {
      const gateway = await spawnRole({
        role: 's3', args: ['--port', '0', '--masters', cluster.masters.join(',')],
        logPath: join(dir, 's3.log'), readyTimeoutMs: 30_000, env: { GRANARY_S3_ACCESS_KEY_ID: keys.accessKeyId, GRANARY_S3_SECRET_ACCESS_KEY: keys.secretAccessKey }
      })
      const s3 = new S3Client({ endpoint: gateway.ready.url, region: 'us-east-1', forcePathStyle: true, credentials: { ...keys } })
      try {
        const fs = cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB })
        await s3.send(new CreateBucketCommand({ Bucket: 'bench' }))
        await fs.mkdir('/native')
        const pattern = randomBytes(64 * MiB)
        const rates: Rates = { libraryPut: [], s3Put: [], libraryGet: [], s3Get: [], librarySmall: [], s3Small: [] }
        let cold = true
        for (let run = 0; run < runs; run++) cold = await benchRun(fs, s3, pattern, run, rates) && cold
        printRates(rates, cold)
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

async function benchRun (fs: GranaryClient, s3: S3Client, pattern: Buffer, run: number, rates: Rates): Promise<boolean> {
  const s3First = run % 2 === 1
  let cold = true
  const libraryPut = async (): Promise<void> => {
    rates.libraryPut.push(await timedMBps(GiB, async () => { await pipeline(Readable.from(pieces(pattern, GiB)), fs.createWriteStream(`/native/big-${run}`, { overwrite: true })) }))
  }
  const s3Put = async (): Promise<void> => {
    rates.s3Put.push(await timedMBps(GiB, async () => {
      await new Upload({ client: s3, queueSize: 4, partSize: 64 * MiB, params: { Bucket: 'bench', Key: `big-${run}`, Body: Readable.from(pieces(pattern, GiB)) } }).done()
    }))
  }
  const libraryGet = async (): Promise<void> => {
    cold = dropPageCache() && cold
    rates.libraryGet.push(await timedMBps(GiB, async () => { await pipeline(fs.createReadStream(`/native/big-${run}`), sink(GiB)) }))
  }
  const s3Get = async (): Promise<void> => {
    cold = dropPageCache() && cold
    rates.s3Get.push(await timedMBps(GiB, async () => {
      const got = await s3.send(new GetObjectCommand({ Bucket: 'bench', Key: `big-${run}` }))
      await pipeline(got.Body as Readable, sink(GiB))
    }))
  }
  const small = pattern.subarray(0, 4096)
  const librarySmall = async (): Promise<void> => {
    rates.librarySmall.push(await timedPerSecond(async (i) => { await fs.writeFile(`/native/small-${run}/${i}`, small) }))
  }
  const s3Small = async (): Promise<void> => {
    rates.s3Small.push(await timedPerSecond(async (i) => { await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `small-${run}/${i}`, Body: small })) }))
  }
  const steps = s3First ? [s3Put, libraryPut, s3Get, libraryGet, s3Small, librarySmall] : [libraryPut, s3Put, libraryGet, s3Get, librarySmall, s3Small]
  for (const step of steps) await step()
  await fs.rm(`/native/big-${run}`, { skipTrash: true })
  await fs.rm(`/bench/big-${run}`, { skipTrash: true })
  await fs.rm(`/native/small-${run}`, { recursive: true, skipTrash: true })
  await fs.rm(`/bench/small-${run}`, { recursive: true, skipTrash: true })
  return cold
}

function printRates (rates: Rates, cold: boolean): void {
  const runsOf = (values: number[]): string => `runs ${values.map((r) => fmt(r)).join(' / ')}`
  const temperature = cold ? 'cold' : 'WARM: could not drop the page cache'
  const pairs: Array<[string, number[], number[], string]> = [
    ['1 GiB put, r3', rates.libraryPut, rates.s3Put, 'MB/s'],
    [`1 GiB get (${temperature})`, rates.libraryGet, rates.s3Get, 'MB/s'],
    [`4 KiB puts, ${smallInFlight} at once`, rates.librarySmall, rates.s3Small, '/s']
  ]
  for (const [what, library, s3, unit] of pairs) {
    line(`${what}: library`, `${fmt(median(library))} ${unit}`, runsOf(library))
    line(`${what}: S3 gateway (SDK)`, `${fmt(median(s3))} ${unit}`, `gateway/library ${fmt(median(s3) / median(library), 2)}  ${runsOf(s3)}`)
  }
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
