// Proves that deleting a chunk is clean against reads of it: a read that opened the file before the delete
// streams every byte of it, verified (the unlink removes the name, not the data under an open file); a read
// started after the delete call is refused with GRN_CHUNK_NOT_FOUND even before the unlink has landed (the
// index entry goes first); a file gone between the index lookup and the open is GRN_CHUNK_NOT_FOUND too, never
// a raw ENOENT or part of a chunk; and deletes running concurrently each remove exactly their own file.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { quietLog, newHandle } from './fixtures/servers.js'
import { ChunkStore } from '../../../chunkserver/store.js'
import { readChunk } from '../../../chunkserver/chunk-reader.js'
import { encodeTrailer, fileBytesOf } from '../../../chunkserver/chunk-format.js'
import { BlockCrcs } from '../../../shared/checksum.js'
import { readBufferBytes } from '../../../shared/limits.js'
import type { ChunkHandle } from '../../../shared/ids.js'

// Writes a chunk file the way the writer does (beginWrite, the file with its trailer, commit).
async function put (store: ChunkStore, handle: ChunkHandle, data: Buffer): Promise<void> {
  const slot = await store.beginWrite(handle, 1, data.length)
  const sums = new BlockCrcs()
  sums.update(data)
  const { blockCrcs, chunkCrc32 } = sums.finish()
  const path = store.chunkPathOf(handle, 1)
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, Buffer.concat([data, encodeTrailer(blockCrcs, data.length, chunkCrc32)]))
  await store.commit({ chunkHandle: handle, version: 1, lengthBytes: data.length })
  slot.release()
}

const whole = { offsetBytes: 0, lengthBytes: null }

t.test('a read that opened the chunk before its delete gets every byte', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const handle = newHandle()
  const data = randomBytes(3 * readBufferBytes + 12_345)   // several read steps: most of it is read after the unlink
  await put(store, handle, data)
  const read = await readChunk(store, quietLog, handle, 1, whole)
  t.equal(await store.delete(handle, 1), true)
  t.notOk(existsSync(store.chunkPathOf(handle, 1)), 'the file is gone from the folder')
  const got = Buffer.concat(await read.body!.toArray() as Buffer[])
  t.equal(got.length, data.length)
  t.ok(got.equals(data), 'the read streamed the whole chunk, verified, after the unlink')
  await t.rejects(readChunk(store, quietLog, handle, 1, whole), { code: 'GRN_CHUNK_NOT_FOUND' }, 'a later read is refused')
})

t.test('a read after the delete call is refused before the unlink lands', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const handle = newHandle()
  await put(store, handle, randomBytes(100_000))
  const deleting = store.delete(handle, 1)   // not awaited: the unlink is still in flight
  t.equal(store.get(handle), undefined, 'the index entry went at once')
  t.throws(() => store.lookup(handle, 1), { code: 'GRN_CHUNK_NOT_FOUND' })
  await t.rejects(readChunk(store, quietLog, handle, 1, whole), { code: 'GRN_CHUNK_NOT_FOUND' })
  t.equal(await deleting, true)
  t.equal(await store.delete(handle, 1), false, 'a repeated delete command finds nothing to do')
})

t.test('a file gone between lookup and open is GRN_CHUNK_NOT_FOUND, not ENOENT', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const handle = newHandle()
  await put(store, handle, randomBytes(70_000))
  unlinkSync(store.chunkPathOf(handle, 1))   // the unlink won the race: the index still names the chunk
  await t.rejects(readChunk(store, quietLog, handle, 1, whole), { code: 'GRN_CHUNK_NOT_FOUND' })
  t.same(store.corruptChunks(), [], 'a vanished file is not mistaken for a corrupt one')
})

t.test('concurrent deletes each remove their own file and report it once', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const handles = Array.from({ length: 40 }, () => newHandle())
  for (const handle of handles) await put(store, handle, randomBytes(5000))
  const removed: string[] = []
  store.onChange((event, chunk) => { if (event === 'removed') removed.push(chunk.chunkHandle) })
  const kept = handles.slice(0, 10)
  const results = await Promise.all(handles.slice(10).map(async (handle) => await store.delete(handle, 1)))
  t.ok(results.every((r) => r), 'every delete removed a file')
  t.same(removed.sort(), handles.slice(10).sort(), 'each reported removed once')
  t.same(store.chunks().map((c) => c.chunkHandle).sort(), [...kept].sort(), 'the others stay indexed')
  for (const handle of kept) t.ok(existsSync(store.chunkPathOf(handle, 1)))
  for (const handle of handles.slice(10)) t.notOk(existsSync(store.chunkPathOf(handle, 1)))
  t.equal(store.usedBytes, kept.length * fileBytesOf(5000))
})
