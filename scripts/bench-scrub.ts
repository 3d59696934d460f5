// npm run bench -- scrub: what the background scrubber (chunkserver/scrubber.ts) can do and what its cap means.
// Runs in this process (no cluster, no HTTP): in a temp folder, removed at the end, it writes 16 × 64 MiB chunks
// (1 GiB) through the real ChunkWriter with real CRC tables into a ChunkStore, then prints
//   - the uncapped verify rate of one Scrubber pass (median of 3): cold when the page cache can be dropped
//     (root and a writable /proc/sys/vm/drop_caches), and warm; fincore says how much was cached before each pass;
//   - a pass over 4 × 16 MiB at the default cap (chunkserverDefaults.scrubBytesPerSecond): achieved rate vs cap;
//   - one flipped byte in one chunk file, and the corruptFound of the next pass (anything but 1 fails the bench);
//   - derived: hours for one pass over 1 TiB at the default cap.
// MB/s means MiB per second here, as in bench.ts, so the figures compare with its dd line.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { pino } from 'pino'
import { encodeTrailer } from '../chunkserver/chunk-format.js'
import { ChunkWriter } from '../chunkserver/chunk-writer.js'
import { Scrubber, type ScrubberStats } from '../chunkserver/scrubber.js'
import { ChunkStore } from '../chunkserver/store.js'
import { BlockCrcs } from '../shared/checksum.js'
import { chunkserverDefaults } from '../shared/config.js'
import { chunkHandleFromNumber, type ChunkHandle } from '../shared/ids.js'
import { dropPageCache, fmt, line, median } from './bench-format.js'

const MiB = 1024 * 1024
const TiB = 1024 * 1024 * MiB
const runs = 3
const bigChunkCount = 16
const bigChunkBytes = 64 * MiB
const cappedChunkCount = 4              // several chunks: the cap is paced per chunk, so cross chunk boundaries
const cappedChunkBytes = 16 * MiB
const uncappedBytesPerSecond = 1e12     // far above any disk or CRC rate: the scrubber's pacing never sleeps
const passGapMs = 3_600_000             // each timed scrubber is stopped after its first pass, long before this
const pollMs = 5                        // pass-finished polling: adds at most this to a pass of seconds
const passTimeoutMs = 5 * 60_000
const flipOffsetBytes = 40 * MiB + 12_345
const log = pino({ level: 'silent' })

interface Pass { seconds: number, cpuSeconds: number, stats: ScrubberStats }

export async function benchScrub (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'granary-bench-scrub-'))
  try {
    // One random pattern, each chunk a different window of it: distinct data without 1 GiB of randomBytes.
    const pattern = randomBytes(bigChunkBytes + bigChunkCount * 4096)
    const big = await ChunkStore.open({ dataDir: join(dir, 'big'), capacityBytes: 0, log })
    const buildSeconds = await fillStore(big, bigChunkCount, bigChunkBytes, pattern)
    line('scrub: 16 × 64 MiB written (ChunkWriter)', `${fmt(bigChunkCount * bigChunkBytes / MiB / buildSeconds)} MB/s`, `${fmt(buildSeconds, 1)} s written + fsynced, ${fmt(big.usedBytes / MiB)} MiB of chunk files`)
    const warmMBps = await benchUncapped(big)
    await benchCapped(join(dir, 'capped'), pattern, warmMBps)
    await benchCorrupt(big)
    const capBytesPerSecond = chunkserverDefaults.scrubBytesPerSecond
    line('scrub: one pass over 1 TiB at the default cap', `${fmt(TiB / capBytesPerSecond / 3600, 1)} h`, `derived: 1 TiB / ${fmt(capBytesPerSecond / MiB)} MiB/s; uncapped at the warm rate: ${fmt(TiB / MiB / warmMBps / 3600, 1)} h`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// Three uncapped passes cold (if the page cache can be dropped), then three warm. Returns the warm median.
async function benchUncapped (store: ChunkStore): Promise<number> {
  const cold: Pass[] = []
  const coldCached: number[] = []
  for (let i = 0; i < runs && dropPageCache(); i++) {
    coldCached.push(cachedFraction(store))
    cold.push(await timedPass(store, uncappedBytesPerSecond))
  }
  if (cold.length === runs) printUncapped(`scrub: uncapped verify 1 GiB, cold`, cold, coldCached)
  else line('scrub: uncapped verify 1 GiB, cold', 'n/a', 'could not drop the page cache (needs root and a writable /proc/sys/vm/drop_caches)')
  const warm: Pass[] = []
  const warmCached: number[] = []
  for (let i = 0; i < runs; i++) {
    warmCached.push(cachedFraction(store))
    warm.push(await timedPass(store, uncappedBytesPerSecond))
  }
  return printUncapped('scrub: uncapped verify 1 GiB, warm', warm, warmCached)
}

function printUncapped (name: string, passes: Pass[], cached: number[]): number {
  const rates = passes.map(rateMBps)
  const cpuPerGiB = median(passes.map((p) => p.cpuSeconds / (p.stats.scrubbedBytes / (1024 * MiB))))
  const cachedText = cached.every(Number.isNaN) ? 'fincore unavailable' : `${cached.map((c) => fmt(c * 100)).join(' / ')} % in page cache before`
  line(name, `${fmt(median(rates))} MB/s`, `runs ${rates.map((r) => fmt(r)).join(' / ')}, ${fmt(cpuPerGiB, 2)} CPU-s/GiB, ${cachedText}`)
  return median(rates)
}

async function benchCapped (dataDir: string, pattern: Buffer, warmMBps: number): Promise<void> {
  const store = await ChunkStore.open({ dataDir, capacityBytes: 0, log })
  await fillStore(store, cappedChunkCount, cappedChunkBytes, pattern)
  const capBytesPerSecond = chunkserverDefaults.scrubBytesPerSecond
  const pass = await timedPass(store, capBytesPerSecond)
  const achieved = pass.stats.scrubbedBytes / MiB / pass.seconds
  const cap = capBytesPerSecond / MiB
  const floorSeconds = pass.stats.scrubbedBytes / capBytesPerSecond
  line('scrub: capped pass, 4 × 16 MiB, default cap', `${fmt(achieved, 2)} MiB/s`, `cap ${fmt(cap, 2)} MiB/s (${fmt(achieved / cap * 100, 1)} % of it), ${fmt(pass.seconds, 2)} s, at least ${fmt(floorSeconds, 2)} s by the cap`)
  line('scrub: default cap / uncapped warm rate', `${fmt(cap / warmMBps * 100, 1)} %`, 'share of one verify stream the scrubber may take')
}

async function benchCorrupt (store: ChunkStore): Promise<void> {
  const victim = store.chunks()[Math.floor(bigChunkCount / 2)]
  if (victim === undefined) throw new Error('the store holds no chunks')
  flipByte(store.chunkPathOf(victim.chunkHandle, victim.version), flipOffsetBytes)
  const pass = await timedPass(store, uncappedBytesPerSecond)
  const marked = store.corruptChunks()
  line('scrub: one flipped byte → pass corruptFound', fmt(pass.stats.corruptFound), `expected 1; store marks ${marked.map((c) => c.chunkHandle).join(', ')} (flipped ${victim.chunkHandle}), ${fmt(pass.stats.scrubbedBytes / MiB)} MiB read in ${fmt(pass.seconds, 2)} s`)
  if (pass.stats.corruptFound !== 1 || marked.length !== 1 || marked[0]?.chunkHandle !== victim.chunkHandle) {
    throw new Error(`the scrubber reported ${pass.stats.corruptFound} corrupt chunks and the store marks ${marked.length}; expected exactly ${victim.chunkHandle}`)
  }
}

// One Scrubber pass over the whole store, timed from start() to the pass counter moving.
async function timedPass (store: ChunkStore, bytesPerSecond: number): Promise<Pass> {
  const scrubber = new Scrubber({ store, log, bytesPerSecond, passGapMs })
  const cpuBefore = process.cpuUsage()
  const startedMs = performance.now()
  scrubber.start()
  try {
    while (scrubber.stats.passes === 0) {
      if (performance.now() - startedMs > passTimeoutMs) throw new Error(`no scrub pass finished within ${passTimeoutMs} ms`)
      await sleep(pollMs)
    }
  } finally {
    await scrubber.stop()
  }
  const seconds = (performance.now() - startedMs) / 1000
  const cpu = process.cpuUsage(cpuBefore)
  return { seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, stats: scrubber.stats }
}

function rateMBps (pass: Pass): number {
  return pass.stats.scrubbedBytes / MiB / pass.seconds
}

// Writes chunkCount chunks the way the unit tests do (tests/unit/chunkserver/scrubber.test.ts): ChunkWriter,
// BlockCrcs, encodeTrailer, commit. Returns the seconds taken.
async function fillStore (store: ChunkStore, chunkCount: number, chunkBytes: number, pattern: Buffer): Promise<number> {
  const startedMs = performance.now()
  const firstNumber = store.chunkCount + 1
  for (let i = 0; i < chunkCount; i++) {
    const data = pattern.subarray(i * 4096, i * 4096 + chunkBytes)
    if (data.length !== chunkBytes) throw new Error('the pattern is too short for this chunk')
    await storeChunk(store, chunkHandleFromNumber(firstNumber + i), data)
  }
  return (performance.now() - startedMs) / 1000
}

async function storeChunk (store: ChunkStore, chunkHandle: ChunkHandle, data: Buffer): Promise<void> {
  const slot = await store.beginWrite(chunkHandle, 1, data.length)
  try {
    const writer = await ChunkWriter.open(slot.tempPath, chunkserverDefaults.syncEveryBytes)
    const sums = new BlockCrcs()
    for (let offset = 0; offset < data.length; offset += MiB) {
      const piece = data.subarray(offset, offset + MiB)   // socket-sized pieces, as the write path sees them
      writer.push(piece)
      sums.update(piece)
    }
    const { blockCrcs, chunkCrc32 } = sums.finish()
    await writer.finish(encodeTrailer(blockCrcs, data.length, chunkCrc32), data.length, store.chunkPathOf(chunkHandle, 1))
    await store.commit({ chunkHandle, version: 1, lengthBytes: data.length })
  } finally {
    slot.release()
  }
}

function flipByte (path: string, offsetBytes: number): void {
  const fd = openSync(path, 'r+')
  try {
    const byte = Buffer.alloc(1)
    readSync(fd, byte, 0, 1, offsetBytes)
    byte[0] = (byte[0] as number) ^ 0xff
    writeSync(fd, byte, 0, 1, offsetBytes)
  } finally {
    closeSync(fd)
  }
}


// Share of the store's chunk file bytes in the page cache (util-linux fincore), NaN when fincore is missing.
function cachedFraction (store: ChunkStore): number {
  const paths = store.chunks().map((c) => store.chunkPathOf(c.chunkHandle, c.version))
  try {
    const out = execFileSync('fincore', ['--bytes', '--noheadings', '--raw', '--output', 'RES,SIZE', ...paths], { encoding: 'utf8' })
    let residentBytes = 0
    let sizeBytes = 0
    for (const row of out.trim().split('\n')) {
      const [res, size] = row.trim().split(/\s+/).map(Number)
      residentBytes += res ?? 0
      sizeBytes += size ?? 0
    }
    return sizeBytes === 0 ? Number.NaN : residentBytes / sizeBytes
  } catch {
    return Number.NaN
  }
}
