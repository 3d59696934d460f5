// Proves the scrubber reads every stored chunk through the verified read path: a chunk with a flipped byte
// that nobody reads ends up in the store's corrupt set (what the heartbeat reports) while a good chunk does
// not; a pass is held to its bytes-per-second bound (it cannot finish sooner than bytes / rate, each chunk counted
// as at least one block); and a rate of 0 turns the scrubber off.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import fs, { closeSync, openSync, readSync, writeSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { BlockCrcs } from '../../../shared/checksum.js'
import { encodeTrailer } from '../../../chunkserver/chunk-format.js'
import { ChunkWriter } from '../../../chunkserver/chunk-writer.js'
import { Scrubber, scrubChargeBytesMin } from '../../../chunkserver/scrubber.js'
import { ChunkStore } from '../../../chunkserver/store.js'
import type { ChunkHandle } from '../../../shared/ids.js'
import { newHandle, quietLog } from './fixtures/servers.js'

async function storeChunk (store: ChunkStore, data: Buffer): Promise<ChunkHandle> {
  const chunkHandle = newHandle()
  const slot = await store.beginWrite(chunkHandle, 1, data.length)
  const writer = await ChunkWriter.open(slot.tempPath, 1024 * 1024)
  const sums = new BlockCrcs()
  writer.push(data)
  sums.update(data)
  const { blockCrcs, chunkCrc32 } = sums.finish()
  await writer.finish(encodeTrailer(blockCrcs, data.length, chunkCrc32), data.length, store.chunkPathOf(chunkHandle, 1))
  await store.commit({ chunkHandle, version: 1, lengthBytes: data.length })
  slot.release()
  return chunkHandle
}

function flipByte (path: string, offset: number): void {
  const fd = openSync(path, 'r+')
  const byte = Buffer.alloc(1)
  readSync(fd, byte, 0, 1, offset)
  byte[0] = (byte[0] as number) ^ 0xff
  writeSync(fd, byte, 0, 1, offset)
  closeSync(fd)
}

// Runs a scrubber until its first pass ends (at most 12 s) and stops it; how long the pass took.
async function onePass (store: ChunkStore, bytesPerSecond: number): Promise<{ scrubber: Scrubber, elapsedMs: number }> {
  const scrubber = new Scrubber({ store, log: quietLog, bytesPerSecond, passGapMs: 60_000 })
  const startedMs = Date.now()
  scrubber.start()
  for (let i = 0; i < 600 && scrubber.stats.passes === 0; i++) await sleep(20)
  const elapsedMs = Date.now() - startedMs
  await scrubber.stop()
  return { scrubber, elapsedMs }
}

t.test('finds rot nobody reads, within its rate', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const good = await storeChunk(store, randomBytes(512 * 1024))
  const bad = await storeChunk(store, randomBytes(512 * 1024))
  flipByte(store.chunkPathOf(bad, 1), 200_000)
  const bytesPerSecond = 2 * 1024 * 1024
  const { scrubber, elapsedMs } = await onePass(store, bytesPerSecond)
  t.equal(scrubber.stats.passes, 1, 'one pass finished')
  t.same(store.corruptChunks(), [{ chunkHandle: bad, version: 1 }], 'only the rotten chunk is marked corrupt')
  t.equal(scrubber.stats.corruptFound, 1)
  t.ok(scrubber.stats.scrubbedBytes >= 512 * 1024, 'the good chunk was read whole')
  t.ok(elapsedMs >= (512 * 1024 / bytesPerSecond) * 1000 * 0.9, `rate bound held (${elapsedMs} ms for at least 512 KiB at 2 MiB/s)`)
  t.ok(store.get(good) !== undefined && store.get(bad) !== undefined, 'the scrubber deletes nothing itself')
})

// A store of tiny chunks, half of them empty: each costs at least scrubChargeBytesMin of the budget, so 8 chunks
// at 1 MiB/s take at least 8 × 64 KiB / 1 MiB = 0.5 s, not the ~1 ms their 400 bytes would.
t.test('every chunk costs at least one block of the rate, an empty one too', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const count = 8
  for (let i = 0; i < count; i++) await storeChunk(store, randomBytes(i % 2 === 0 ? 100 : 0))
  const bytesPerSecond = 1024 * 1024
  // The scrubber's reads are cold by design: even a one-block chunk is read on the thread pool, never with the
  // event-loop calls a client's read of it makes (chunk-reader.ts, syncReadChunkBytesMax).
  const openSync = fs.openSync
  let loopOpens = 0
  fs.openSync = ((...args: Parameters<typeof fs.openSync>) => { loopOpens++; return openSync(...args) }) as typeof fs.openSync
  t.teardown(() => { fs.openSync = openSync })
  const { scrubber, elapsedMs } = await onePass(store, bytesPerSecond)
  fs.openSync = openSync
  t.equal(loopOpens, 0, 'no chunk was opened on the event loop')
  t.equal(scrubber.stats.passes, 1, 'one pass finished')
  t.equal(scrubber.stats.scrubbedBytes, (count / 2) * 100, 'every chunk was read')
  const boundMs = (count * scrubChargeBytesMin / bytesPerSecond) * 1000
  t.ok(elapsedMs >= boundMs * 0.9, `${elapsedMs} ms for ${count} chunks, at least ${boundMs} ms`)
})

t.test('a rate of 0 is off', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  await storeChunk(store, randomBytes(100 * 1024))
  const scrubber = new Scrubber({ store, log: quietLog, bytesPerSecond: 0, passGapMs: 10 })
  scrubber.start()
  await sleep(100)
  await scrubber.stop()
  t.same(scrubber.stats, { passes: 0, scrubbedBytes: 0, corruptFound: 0 })
})
