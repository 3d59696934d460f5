// `npm run bench -- fs`: the library as a Node app's storage backend, on its own cluster in a temp folder.
//   1,000 × 64 KiB fs.writeFile then fs.readFile, 16 in flight: files/s and MB/s
//   a 1 GiB tree (4 × 128 MiB + 512 × 1 MiB) round-tripped as tar: local → Granary (packLocalDirectory →
//   unpackDirectory, what `put -r` does), Granary → local (packDirectory → unpackLocalDirectory, `get -r`),
//   MB/s each way, checked byte for byte
// and the bench process's peak RSS during each phase (sampled every 20 ms), to show memory stays bounded.
// Figures are printed, nothing is asserted. Replication 3, 64 MiB chunks.
import { mkdtempSync, rmSync, mkdirSync, createWriteStream, createReadStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes, createHash } from 'node:crypto'
import { startCluster } from '../testing/cluster.js'
import { packLocalDirectory, unpackLocalDirectory } from '../client/tar-local.js'
import type { GranaryClient } from '../client/index.js'
import { fmt, line } from './bench-format.js'

const KiB = 1024
const MiB = 1024 * KiB


// Runs fn while sampling this process's RSS; returns fn's result, the seconds it took and the peak RSS in MiB.
async function measured<T> (fn: () => Promise<T>): Promise<{ value: T, seconds: number, peakRssMiB: number }> {
  let peak = process.memoryUsage.rss()
  const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage.rss()) }, 20)
  const started = performance.now()
  try {
    const value = await fn()
    return { value, seconds: (performance.now() - started) / 1000, peakRssMiB: Math.max(peak, process.memoryUsage.rss()) / MiB }
  } finally {
    clearInterval(timer)
  }
}

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

async function benchSmallFiles (client: GranaryClient): Promise<void> {
  const count = 1000
  const sizeBytes = 64 * KiB
  const files = Array.from({ length: 16 }, () => randomBytes(sizeBytes))
  await client.fs.mkdir('/bench-fs/small', { recursive: true })
  const write = await measured(async () => { await inFlight(count, 16, async (i) => { await client.fs.writeFile(`/bench-fs/small/f${i}`, files[i % 16] as Buffer) }) })
  const read = await measured(async () => {
    await inFlight(count, 16, async (i) => {
      const got = await client.fs.readFile(`/bench-fs/small/f${i}`)
      if (!got.equals(files[i % 16] as Buffer)) throw new Error(`f${i} read back different bytes`)
    })
  })
  const totalMB = count * sizeBytes / MiB
  line('1,000 × 64 KiB fs.writeFile (16 in flight)', `${fmt(totalMB / write.seconds, 1)} MB/s`, `${fmt(count / write.seconds)} files/s, peak RSS ${fmt(write.peakRssMiB)} MiB`)
  line('1,000 × 64 KiB fs.readFile (16 in flight)', `${fmt(totalMB / read.seconds, 1)} MB/s`, `${fmt(count / read.seconds)} files/s, peak RSS ${fmt(read.peakRssMiB)} MiB`)
}

// 4 × 128 MiB + 512 × 1 MiB of random bytes, written 16 MiB at a time (the generator's memory stays small).
async function makeTree (root: string): Promise<number> {
  const piece = randomBytes(16 * MiB)
  let totalBytes = 0
  const write = async (path: string, sizeBytes: number, seed: number): Promise<void> => {
    const out = createWriteStream(path)
    for (let offset = 0; offset < sizeBytes; offset += 16 * MiB) {
      const part = piece.subarray(0, Math.min(16 * MiB, sizeBytes - offset))
      part.writeUInt32LE(seed, 0)
      part.writeUInt32LE(offset, 4)   // no two files or pieces alike
      if (!out.write(Buffer.from(part))) await new Promise<void>((resolve) => out.once('drain', () => { resolve() }))
    }
    await new Promise<void>((resolve, reject) => { out.end((err?: Error | null) => { if (err) reject(err); else resolve() }) })
    totalBytes += sizeBytes
  }
  for (let i = 0; i < 4; i++) await write(join(root, `big-${i}.bin`), 128 * MiB, i)
  for (let d = 0; d < 16; d++) {
    mkdirSync(join(root, `dir-${d}`, 'nested'), { recursive: true })
    for (let f = 0; f < 32; f++) await write(join(root, `dir-${d}`, f % 2 === 0 ? 'nested' : '', `small-${f}.bin`), MiB, 100 + d * 32 + f)
  }
  return totalBytes
}

async function treeDigest (root: string, names: string[]): Promise<string> {
  const hash = createHash('sha256')
  for (const name of names) for await (const piece of createReadStream(join(root, name))) hash.update(piece as Buffer)
  return hash.digest('hex')
}

async function benchTree (client: GranaryClient, dir: string): Promise<void> {
  const source = join(dir, 'tree')
  mkdirSync(source)
  const totalBytes = await makeTree(source)
  const put = await measured(async () => await client.unpackDirectory('/bench-fs/tree', packLocalDirectory(source)))
  const copy = join(dir, 'copy')
  const get = await measured(async () => await unpackLocalDirectory(copy, client.packDirectory('/bench-fs/tree')))
  if (put.value.sizeBytes !== totalBytes || get.value.sizeBytes !== totalBytes) throw new Error(`moved ${put.value.sizeBytes} / ${get.value.sizeBytes} bytes of ${totalBytes}`)
  const names = ['big-0.bin', 'big-3.bin', 'dir-0/nested/small-0.bin', 'dir-15/small-31.bin']
  if (await treeDigest(source, names) !== await treeDigest(copy, names)) throw new Error('the round-tripped tree differs')
  const totalMB = totalBytes / MiB
  line(`1 GiB tree → Granary (${put.value.fileCount} files, put -r)`, `${fmt(totalMB / put.seconds)} MB/s`, `${fmt(put.seconds, 1)} s, peak RSS ${fmt(put.peakRssMiB)} MiB`)
  line('1 GiB tree → local (get -r)', `${fmt(totalMB / get.seconds)} MB/s`, `${fmt(get.seconds, 1)} s, peak RSS ${fmt(get.peakRssMiB)} MiB`)
}

export async function benchFs (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-fs-'))
  const cluster = await startCluster({ chunkservers: 3, dataDir: join(dir, 'cluster'), heartbeatIntervalMs: 1000, deadAfterMs: 10_000 })
  try {
    const client = cluster.client({ deadlineMs: 120_000, chunkSizeBytes: 64 * MiB })
    process.stdout.write(`fs bench: replication 3, 64 MiB chunks, rss before ${fmt(process.memoryUsage.rss() / MiB)} MiB\n`)
    await benchSmallFiles(client)
    await benchTree(client, dir)
    line('bench process peak RSS (whole run)', `${fmt(process.resourceUsage().maxRSS / KiB)} MiB`)
  } finally {
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}
