// Proves a small file's two round trips (issue 13): create with allocateFirstChunk allocates chunk 0 in the same
// op, and the last chunk's commit with `complete` completes the file in the same op. Each is one oplog record;
// a retry with the same request id gets the original reply (never a second file or chunk); a refused half rolls
// the other back; an empty file completes although chunk 0 was allocated ahead; a shadow replays both to equal
// tables.
import t from 'tap'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import { openDb, readMeta } from '../../../master/db.js'
import type * as p from '../../../shared/protocol.js'
import type { RequestId } from '../../../shared/ids.js'
import { verifyToken } from '../../../shared/token.js'
import { addServers, checkRetriedOnce, dumpTables, oplogCount, smallChunkBytes, startTestMaster, type TestMaster } from './fixture.js'
import { addServers as addPairServers, call, caughtUp, startPair, tables } from './shadow-fixture.js'

async function createWithChunk (m: TestMaster, path: string, over: Partial<p.CreateRequest> = {}): Promise<p.CreateReply> {
  const res = await m.call<p.CreateReply>('POST', '/fs/create', { path, replication: 2, chunkSizeBytes: smallChunkBytes, allocateFirstChunk: true, ...over })
  if (res.statusCode !== 200) throw new Error(JSON.stringify(res.body))
  return res.body
}

function commitBody (created: p.CreateReply, lengthBytes: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  const first = created.firstChunk
  if (first === undefined) throw new Error('no first chunk')
  return {
    inodeId: created.inodeId, leaseId: created.leaseId, chunkIndex: 0, chunkHandle: first.chunkHandle, version: first.version,
    lengthBytes, crc32: 1234, serverIds: first.pipeline.map((s) => s.serverId), ...over
  }
}

t.test('create + chunk 0, then commit + complete: two calls, two oplog records, a readable file', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const before = oplogCount(m)
  const created = await createWithChunk(m, '/small')
  const first = created.firstChunk
  t.ok(first !== undefined, 'chunk 0 came with the create')
  t.match(first, { chunkHandle: '0000000100000000', version: 1, term: 1 })
  t.equal(first?.pipeline.length, 2, 'one server per replica')
  t.match(verifyToken(m.secret, first?.token, m.clock.nowMs), { chunkHandle: first?.chunkHandle, version: 1, mode: 'write' })
  t.equal((await m.call('GET', '/fs/stat', { path: '/small' })).body.code, 'GRN_NOT_FOUND', 'invisible until complete')

  const committed = await m.call<p.CommitReply>('POST', '/fs/commit', commitBody(created, 4096, { complete: { sizeBytes: 4096, chunkCount: 1, mtimeMs: 5 } }))
  t.equal(committed.statusCode, 200)
  t.match(committed.body.stat, { path: '/small', type: 'file', sizeBytes: 4096, chunkCount: 1, mtimeMs: 5 })
  t.same((await m.call('GET', '/fs/stat', { path: '/small' })).body, committed.body.stat, 'stat agrees')
  const opened = (await m.call<p.OpenReply>('GET', '/fs/open', { path: '/small' })).body
  t.match(opened.chunks, [{ chunkIndex: 0, chunkHandle: first?.chunkHandle, lengthBytes: 4096, crc32: 1234 }])
  t.equal(oplogCount(m) - before, 2, 'one record per call')
})

t.test('retries with the same request id get the original replies: one file, one chunk', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const created = await createWithChunk(m, '/r', { requestId: 'create-r' as RequestId })
  const again = await createWithChunk(m, '/r', { requestId: 'create-r' as RequestId })
  t.equal(again.inodeId, created.inodeId)
  t.equal(again.firstChunk?.chunkHandle, created.firstChunk?.chunkHandle, 'the same allocation, not a second chunk')
  t.equal(m.db.prepare('SELECT count(*) FROM chunks').pluck().get(), 1)
  await checkRetriedOnce(t, m, '/fs/commit', commitBody(created, 100, { complete: { sizeBytes: 100, chunkCount: 1 }, requestId: 'commit-r' }))
})

t.test('a refused complete rolls its commit back; bad completions are refused and change nothing', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const created = await createWithChunk(m, '/x')
  for (const [complete, code] of [
    [{ sizeBytes: 99, chunkCount: 1 }, 'GRN_CHUNK_MISMATCH'],         // sizes do not add up
    [{ sizeBytes: 100, chunkCount: 2 }, 'GRN_CHUNK_MISMATCH'],        // a chunk that does not exist
    [{ sizeBytes: '100', chunkCount: 1 }, 'GRN_INVALID_ARGUMENT'],    // no coerced types
    [{ sizeBytes: 100 }, 'GRN_INVALID_ARGUMENT']
  ] as const) {
    const tablesBefore = dumpTables(m.db)
    const res = await m.call('POST', '/fs/commit', commitBody(created, 100, { complete }))
    t.equal(res.body.code, code, JSON.stringify(complete))
    t.same(dumpTables(m.db), tablesBefore, 'nothing changed: the commit went with the refused complete')
  }
  // A folder made under the name meanwhile: complete's refusal takes the commit with it, and the chunk can
  // still be committed on its own afterwards.
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/x' })).statusCode, 200)
  const clash = await m.call('POST', '/fs/commit', commitBody(created, 100, { complete: { sizeBytes: 100, chunkCount: 1 } }))
  t.equal(clash.body.code, 'GRN_IS_DIR')
  t.equal(m.db.prepare('SELECT state FROM chunks').pluck().get(), 'allocated', 'the commit was rolled back with it')
  t.equal((await m.call('POST', '/fs/commit', commitBody(created, 100))).statusCode, 200, 'a plain commit still works')
})

t.test('an empty file completes although create allocated chunk 0 ahead', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const created = await createWithChunk(m, '/empty')
  t.ok(created.firstChunk !== undefined)
  const done = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0 })
  t.match(done.body, { path: '/empty', sizeBytes: 0, chunkCount: 0 })
  t.equal(m.db.prepare('SELECT count(*) FROM chunks').pluck().get(), 0, 'the unused allocation is gone')
})

t.test('no chunkservers: create still succeeds, without chunk 0', async (t) => {
  const m = await startTestMaster(t)
  const res = await m.call<p.CreateReply>('POST', '/fs/create', { path: '/lonely', allocateFirstChunk: true })
  t.equal(res.statusCode, 200)
  t.equal(res.body.firstChunk, undefined)
  t.equal(m.db.prepare('SELECT count(*) FROM chunks').pluck().get(), 0)
})

t.test('a shadow replays the merged ops to equal tables', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await addPairServers(master)
  const shadow = await pair.startShadow()
  for (let i = 0; i < 5; i++) {
    const created = await call<p.CreateReply>(master, 'POST', '/fs/create', { path: `/s${i}`, allocateFirstChunk: true, replication: 2, chunkSizeBytes: smallChunkBytes })
    const first = created.body.firstChunk
    if (first === undefined) throw new Error(JSON.stringify(created.body))
    const committed = await call(master, 'POST', '/fs/commit', {
      inodeId: created.body.inodeId, leaseId: created.body.leaseId, chunkIndex: 0, chunkHandle: first.chunkHandle, version: first.version,
      lengthBytes: 10 + i, crc32: i, serverIds: first.pipeline.map((s) => s.serverId), complete: { sizeBytes: 10 + i, chunkCount: 1 }
    })
    t.equal(committed.statusCode, 200)
  }
  await caughtUp(shadow, master)
  t.same(tables(shadow.node.db), tables(master.db), 'inodes, chunks, replicas, meta equal')
  t.same(pair.fatal, [])
})

t.test('whole-file CRC32: combined from the chunks at complete, shown by stat; a schema-1 database gains the column', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const created = await createWithChunk(m, '/crc')
  const done = await m.call<p.CommitReply>('POST', '/fs/commit', commitBody(created, 4096, { crc32: 0xdeadbeef, complete: { sizeBytes: 4096, chunkCount: 1 } }))
  t.equal(done.body.stat?.crc32, 0xdeadbeef, 'one chunk: its CRC32 is the file\'s')
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/crc' })).body.crc32, 0xdeadbeef)
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/' })).body.crc32, undefined, 'folders have none')
})

t.test('a schema-1 database opens as schema 3: files completed before show no checksum, never a wrong one', async (t) => {
  const dir = t.testdir()
  const v1 = new Database(join(dir, 'master.db'))
  v1.exec(`CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), schemaVersion INTEGER NOT NULL, term INTEGER NOT NULL, seq INTEGER NOT NULL, nextChunkNumber INTEGER NOT NULL);
    CREATE TABLE inodes (id INTEGER PRIMARY KEY AUTOINCREMENT, parentId INTEGER REFERENCES inodes(id), name TEXT, type TEXT NOT NULL, state TEXT NOT NULL,
      sizeBytes INTEGER NOT NULL DEFAULT 0, replication INTEGER NOT NULL DEFAULT 0, chunkSizeBytes INTEGER NOT NULL DEFAULT 0, mtimeMs INTEGER NOT NULL,
      leaseId TEXT, leaseExpiresAtMs INTEGER, pendingParentId INTEGER, pendingName TEXT, overwrite INTEGER NOT NULL DEFAULT 0, mode INTEGER NOT NULL DEFAULT 0, UNIQUE (parentId, name));
    INSERT INTO meta VALUES (1, 1, 1, 0, 1);
    INSERT INTO inodes (id, parentId, name, type, state, mtimeMs, mode) VALUES (1, NULL, '', 'dir', 'closed', 0, 493);
    INSERT INTO inodes (id, parentId, name, type, state, sizeBytes, replication, chunkSizeBytes, mtimeMs, mode) VALUES (2, 1, 'old', 'file', 'closed', 0, 3, 65536, 5, 420);`)
  v1.close()
  const db = openDb(join(dir, 'master.db'), 'normal')
  t.teardown(() => db.close())
  t.equal(readMeta(db).schemaVersion, 3, 'migrated through 2 to 3')
  t.equal((db.prepare('SELECT crc32 FROM inodes WHERE id = 2').get() as { crc32: number | null }).crc32, null, 'the old file has none')
})
