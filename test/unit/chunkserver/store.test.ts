// Proves the on-disk side: the chunk file format round-trips and rejects damage, a restarted chunkserver
// indexes its chunks again (keeping the newest of two versions), tmp/ is emptied at start, deletes remove the
// version asked for and any older one, and a newer version replaces an older one. A chunk file whose footer
// cannot be read at start-up is kept out of the index but not forgotten: it is reported corrupt (for the
// master to replace), its bytes count as used, and the master's delete removes it; a good copy written
// over it clears the mark.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startFixture, putChunk, getChunk, newHandle, chunkFiles, quietLog } from './fixtures/servers.js'
import { ChunkStore } from '../../../chunkserver/store.js'
import { blockCountOf, decodeFooter, decodeTable, encodeTrailer, fileBytesOf, footerBytes, parseChunkFileName } from '../../../chunkserver/chunk-format.js'
import { BlockCrcs, crc32 } from '../../../shared/checksum.js'
import { blockSizeBytes } from '../../../shared/limits.js'
import type { StoredChunk } from '../../../shared/protocol.js'

t.test('chunk file format', async (t) => {
  for (const lengthBytes of [0, 1, blockSizeBytes, blockSizeBytes + 1, 5 * blockSizeBytes - 3]) {
    const data = randomBytes(lengthBytes)
    const sums = new BlockCrcs()
    sums.update(data)
    const { blockCrcs, chunkCrc32 } = sums.finish()
    const trailer = encodeTrailer(blockCrcs, lengthBytes, chunkCrc32)
    t.equal(lengthBytes + trailer.length, fileBytesOf(lengthBytes), `size formula holds for ${lengthBytes}`)
    t.equal(trailer.subarray(-footerBytes, -footerBytes + 8).toString('latin1'), 'GRNCHUNK')
    const footer = decodeFooter(trailer.subarray(-footerBytes), fileBytesOf(lengthBytes))
    if (typeof footer === 'string') { t.fail(footer); continue }
    t.same(footer, { lengthBytes, blockCount: blockCountOf(lengthBytes), chunkCrc32, tableCrc32: footer.tableCrc32 })
    t.same([...(decodeTable(trailer, footer) ?? [])], blockCrcs)
    t.type(decodeFooter(trailer.subarray(-footerBytes), fileBytesOf(lengthBytes) + 1), 'string', 'wrong file size refused')
    const damaged = Buffer.from(trailer)
    ;(damaged[damaged.length - footerBytes + 20] as number) ^= 1
    t.type(decodeFooter(damaged.subarray(-footerBytes), fileBytesOf(lengthBytes)), 'string', 'damaged footer refused')
  }
  t.same(parseChunkFileName('00000000000000ab_12.chunk'), { chunkHandle: '00000000000000ab', version: 12 })
  t.equal(parseChunkFileName('00000000000000ab_0.chunk'), null)
  t.equal(parseChunkFileName('00000000000000AB_1.chunk'), null)
  t.equal(parseChunkFileName('00000000000000ab_1.chunk.tmp'), null)
})

t.test('restart re-indexes chunks; tmp is emptied; two versions keep the newest', async (t) => {
  const f = await startFixture(t, 1)
  let server = f.servers[0] as typeof f.servers[0]
  const dataDir = f.dataDirs[0] as string
  const chunks = new Map<string, Buffer>()
  for (let i = 0; i < 4; i++) {
    const handle = newHandle()
    const data = randomBytes(100_000 + i * 70_000)
    t.equal((await putChunk(server.url, handle, 3, f.token(handle, 3, 'write'), data)).statusCode, 200)
    chunks.set(handle, data)
  }
  const [first] = [...chunks.keys()]
  const handle = first as ReturnType<typeof newHandle>
  // Plant an older version of the first chunk (a copy of the file under version 2) and a leftover temp file.
  const folder = join(dataDir, 'chunks', handle.slice(-2))
  copyFileSync(join(folder, `${handle}_3.chunk`), join(folder, `${handle}_2.chunk`))
  writeFileSync(join(dataDir, 'tmp', 'leftover.tmp'), 'half a chunk')
  const serverId = server.serverId

  server = await f.restart(0)
  t.equal(server.serverId, serverId, 'the server id survives a restart')
  t.equal(readFileSync(join(dataDir, 'server-id'), 'utf8').trim(), serverId)
  t.same(readdirSync(join(dataDir, 'tmp')), [], 'tmp emptied at start')
  t.notOk(existsSync(join(folder, `${handle}_2.chunk`)), 'the older version was deleted')
  const status = await (await request(`${server.url}/status`)).body.json() as { chunkCount: number }
  t.equal(status.chunkCount, 4)
  for (const [h, data] of chunks) {
    const got = await getChunk(server.url, `/chunks/${h}?version=3`, f.token(h as typeof handle, 3, 'read'))
    t.ok(got.body.equals(data), `chunk ${h} reads back after restart`)
  }
})

t.test('store: deletes, newer versions, corrupt files at scan, capacity', async (t) => {
  const dataDir = t.testdir()
  const store = await ChunkStore.open({ dataDir, capacityBytes: 10 * 1024 * 1024, log: quietLog })
  const events: Array<[string, StoredChunk]> = []
  store.onChange((event, chunk) => events.push([event, chunk]))
  const handle = newHandle()
  // Write chunk files the way the writer does, via beginWrite/commit, with a real trailer.
  async function put (version: number, lengthBytes: number): Promise<void> {
    const slot = await store.beginWrite(handle, version, lengthBytes)
    const sums = new BlockCrcs()
    const data = randomBytes(lengthBytes)
    sums.update(data)
    const { blockCrcs, chunkCrc32 } = sums.finish()
    const path = store.chunkPathOf(handle, version)
    mkdirSync(join(path, '..'), { recursive: true })
    writeFileSync(path, Buffer.concat([data, encodeTrailer(blockCrcs, lengthBytes, chunkCrc32)]))
    await store.commit({ chunkHandle: handle, version, lengthBytes })
    slot.release()
  }
  await put(1, 1000)
  t.equal(store.usedBytes, fileBytesOf(1000))
  t.equal(await store.freeBytes() <= 10 * 1024 * 1024 - fileBytesOf(1000), true, 'free is capped by capacity − used')
  await t.rejects(store.beginWrite(handle, 1, 10), { code: 'GRN_CHUNK_MISMATCH' }, 'a stored version is not rewritten')
  await put(2, 2000)
  t.notOk(existsSync(store.chunkPathOf(handle, 1)), 'a newer version replaces the older file')
  t.same(store.get(handle), { chunkHandle: handle, version: 2, lengthBytes: 2000 })
  const scanned = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  t.same(scanned.get(handle), { chunkHandle: handle, version: 2, lengthBytes: 2000, crc32: crc32(readFileSync(store.chunkPathOf(handle, 2)).subarray(0, 2000)) },
    'the start-up scan indexes a chunk with the whole-chunk CRC of its footer (what heartbeats report)')
  await t.rejects(store.beginWrite(handle, 1, 10), { code: 'GRN_STALE_VERSION' })
  await t.rejects(store.beginWrite(newHandle(), 1, 11 * 1024 * 1024), { code: 'GRN_DISK_FULL' })
  t.equal(await store.delete(handle, 1), false, 'deleting an older version keeps the newer one')
  t.ok(existsSync(store.chunkPathOf(handle, 2)))
  t.equal(await store.delete(handle, 5), true, 'deleting a newer version removes the older one too')
  t.notOk(existsSync(store.chunkPathOf(handle, 2)))
  t.equal(store.chunkCount, 0)
  t.equal(store.usedBytes, 0)
  t.same(events.map(([event, chunk]) => `${event} ${chunk.version}`), ['added 1', 'added 2', 'removed 1', 'removed 2'])

  // A damaged file is left out of the index at the next start (and remembered as corrupt), not served.
  await put(7, 5000)
  const path = store.chunkPathOf(handle, 7)
  const bytes = readFileSync(path)
  ;(bytes[bytes.length - 3] as number) ^= 0xff
  writeFileSync(path, bytes)
  const reopened = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  t.equal(reopened.chunkCount, 0)
  t.same(reopened.corruptChunks(), [{ chunkHandle: handle, version: 7 }])
  t.ok(await reopened.capacityBytes() > 0, 'capacity 0 means the file system size')
})

t.test('delete through the store is visible over HTTP', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const handle = newHandle()
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), randomBytes(5000))).statusCode, 200)
  t.equal(chunkFiles(f.dataDirs[0] as string).length, 1)
  // The heartbeat test drives deletes from a master; here the store is reopened to prove the file is gone for good.
  await server.close()
  const store = await ChunkStore.open({ dataDir: f.dataDirs[0] as string, capacityBytes: 0, log: quietLog })
  t.equal(await store.delete(handle, 1), true)
  t.same(chunkFiles(f.dataDirs[0] as string), [])
  const again = await ChunkStore.open({ dataDir: f.dataDirs[0] as string, capacityBytes: 0, log: quietLog })
  t.equal(again.chunkCount, 0)
})

t.test('a chunk file with a bad footer at start-up: reported corrupt, deleted on the master\'s word', async (t) => {
  const dataDir = t.testdir()
  const store = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  const handle = newHandle()
  const other = newHandle()
  async function put (target: ChunkStore, chunkHandle: typeof handle, version: number, lengthBytes: number): Promise<void> {
    const slot = await target.beginWrite(chunkHandle, version, lengthBytes)
    const data = randomBytes(lengthBytes)
    const sums = new BlockCrcs()
    sums.update(data)
    const { blockCrcs, chunkCrc32 } = sums.finish()
    const path = target.chunkPathOf(chunkHandle, version)
    mkdirSync(join(path, '..'), { recursive: true })
    writeFileSync(path, Buffer.concat([data, encodeTrailer(blockCrcs, lengthBytes, chunkCrc32)]))
    await target.commit({ chunkHandle, version, lengthBytes })
    slot.release()
  }
  function damageFooter (path: string): void {
    const bytes = readFileSync(path)
    ;(bytes[bytes.length - 3] as number) ^= 0xff
    writeFileSync(path, bytes)
  }
  await put(store, handle, 7, 5000)
  await put(store, other, 4, 3000)
  damageFooter(store.chunkPathOf(handle, 7))
  damageFooter(store.chunkPathOf(other, 4))

  const reopened = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  t.equal(reopened.chunkCount, 0, 'neither is indexed (neither can be served)')
  const byHandle = (a: StoredChunk, b: StoredChunk): number => a.chunkHandle.localeCompare(b.chunkHandle)
  t.same(reopened.corruptReport().sort(byHandle), [{ chunkHandle: handle, version: 7, lengthBytes: 0 }, { chunkHandle: other, version: 4, lengthBytes: 0 }].sort(byHandle),
    'both are reported corrupt for the heartbeat (length unknown: the footer is what failed)')
  t.equal(reopened.usedBytes, fileBytesOf(5000) + fileBytesOf(3000), 'their bytes count as used until they go')
  const events: string[] = []
  reopened.onChange((event, chunk) => events.push(`${event} ${chunk.chunkHandle}`))

  // The master orders the first deleted (another good replica exists): the file goes, and so does the report.
  t.equal(await reopened.delete(handle, 7), true, 'the delete command removes the unindexed file')
  t.notOk(existsSync(reopened.chunkPathOf(handle, 7)), 'no file left on disk')
  t.same(reopened.corruptReport().map((c) => c.chunkHandle), [other])
  t.equal(reopened.usedBytes, fileBytesOf(3000))

  // The master copies a good replica of the second onto this server instead: the copy replaces the file and clears the mark.
  await put(reopened, other, 4, 3000)
  t.same(reopened.corruptReport(), [], 'a good copy written over it is not reported corrupt')
  t.same(reopened.corruptChunks(), [])
  t.same(reopened.get(other), { chunkHandle: other, version: 4, lengthBytes: 3000 })
  t.equal(reopened.usedBytes, fileBytesOf(3000), 'the replaced file is not counted twice')
  t.same(events, [`added ${other}`], 'the unindexed file\'s removal is not reported removed (the master never had it from here)')

  const again = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  t.same(again.corruptReport(), [], 'nothing corrupt is left on disk')
  t.equal(again.chunkCount, 1)
})
