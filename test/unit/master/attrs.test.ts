// Proves per-file attributes (the S3 gateway's Content-Type, x-amz-meta-* and ETag): set at create, replaced at
// complete (its own call, or the last chunk's commit that completes the file), returned by stat, open and
// list; over fileAttrsBytesMax or not an object is refused and changes nothing; a shadow replays them through
// the oplog to the same rows; a schema-2 database gains the column without touching a row.
import t from 'tap'
import Database from 'better-sqlite3'
import { join } from 'node:path'
import type * as p from '../../../shared/protocol.js'
import { fileAttrsBytesMax } from '../../../shared/limits.js'
import { openDb, readMeta } from '../../../master/db.js'
import { addServers, dumpTables, smallChunkBytes, startTestMaster, writeFile } from './fixture.js'
import { addServers as addPairServers, call, caughtUp, startPair, tables } from './shadow-fixture.js'

t.test('attrs set at create, replaced at complete, returned by stat, open and list', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const kept = await writeFile(m, '/kept', [100], { attrs: { etag: 'abc', headers: { 'content-type': 'text/plain' } } })
  t.same(kept.attrs, { etag: 'abc', headers: { 'content-type': 'text/plain' } }, 'complete without attrs keeps create\'s')
  t.same((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/kept' })).body.attrs, kept.attrs, 'stat returns them')
  t.same((await m.call<p.OpenReply>('GET', '/fs/open', { path: '/kept' })).body.stat.attrs, kept.attrs, 'open returns them')
  const listed = (await m.call<p.ListReply>('GET', '/fs/list', { path: '/' })).body.entries.find((e) => e.path === '/kept')
  t.same(listed?.attrs, kept.attrs, 'list returns them')

  // complete's attrs replace create's (a digest known only at the end)
  const created = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/replaced', replication: 2, chunkSizeBytes: smallChunkBytes, attrs: { a: 1 } })).body
  const done = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, attrs: { b: 2 } })
  t.same(done.body.attrs, { b: 2 })

  // the last chunk's commit completes the file with its attrs
  const c2 = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/by-commit', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  const allocated = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId: c2.inodeId, leaseId: c2.leaseId, chunkIndex: 0 })).body
  const committed = await m.call<p.CommitReply>('POST', '/fs/commit', {
    inodeId: c2.inodeId, leaseId: c2.leaseId, chunkIndex: 0, chunkHandle: allocated.chunkHandle, version: allocated.version, lengthBytes: 10, crc32: 1,
    serverIds: allocated.pipeline.map((s) => s.serverId), complete: { sizeBytes: 10, chunkCount: 1, attrs: { etag: 'md5' } }
  })
  t.same(committed.body.stat?.attrs, { etag: 'md5' })
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/plain' })).statusCode, 404)
  const plain = await writeFile(m, '/plain', [5])
  t.equal(plain.attrs, undefined, 'a file without attrs shows none')
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/' })).body.attrs, undefined, 'folders have none')
})

t.test('attrs over the limit or not an object are refused and change nothing', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const before = dumpTables(m.db)
  const big = { x: 'y'.repeat(fileAttrsBytesMax) }
  const res = await m.call<{ code: string }>('POST', '/fs/create', { path: '/big', replication: 2, chunkSizeBytes: smallChunkBytes, attrs: big })
  t.equal(res.body.code, 'GRN_LIMIT_EXCEEDED')
  for (const bad of [[1, 2], 'text', 5]) {
    const refused = await m.call<{ code: string }>('POST', '/fs/create', { path: '/bad', replication: 2, chunkSizeBytes: smallChunkBytes, attrs: bad })
    t.equal(refused.body.code, 'GRN_INVALID_ARGUMENT', `attrs ${JSON.stringify(bad)} refused`)
  }
  t.same(dumpTables(m.db), before, 'nothing changed')
  const created = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/f', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  const beforeComplete = dumpTables(m.db)
  const completed = await m.call<{ code: string }>('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, attrs: big })
  t.equal(completed.body.code, 'GRN_LIMIT_EXCEEDED')
  t.same(dumpTables(m.db), beforeComplete, 'the file is still being written, unchanged')
})

t.test('a shadow replays attrs to the same rows', async (t) => {
  const pair = await startPair(t)
  await addPairServers(pair.master)
  const created = (await call<p.CreateReply>(pair.master, 'POST', '/fs/create', { path: '/s', replication: 1, chunkSizeBytes: smallChunkBytes, attrs: { a: 'b' } })).body
  await call(pair.master, 'POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, attrs: { etag: 'e' } })
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  t.same(tables(shadow.node.db), tables(pair.master.db))
  t.same((await call<p.FileStat>(shadow.node, 'GET', '/fs/stat', { path: '/s' })).body.attrs, { etag: 'e' })
})

t.test('a schema-2 database opens as schema 3 without touching its rows', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'master.db')
  const fresh = openDb(file, 'normal')
  fresh.exec('ALTER TABLE inodes DROP COLUMN attrs')
  fresh.prepare('UPDATE meta SET schemaVersion = 2 WHERE id = 1').run()
  fresh.prepare("INSERT INTO inodes (parentId, name, type, state, sizeBytes, replication, chunkSizeBytes, mtimeMs, mode, crc32) VALUES (1, 'old', 'file', 'closed', 0, 3, 65536, 5, 420, 7)").run()
  fresh.close()
  const reader = new Database(file)
  const before = reader.prepare('SELECT * FROM inodes ORDER BY id').all()
  reader.close()
  const db = openDb(file, 'normal')
  t.teardown(() => db.close())
  t.equal(readMeta(db).schemaVersion, 3)
  const after = db.prepare('SELECT * FROM inodes ORDER BY id').all() as Array<Record<string, unknown>>
  t.same(after.map(({ attrs, ...rest }) => rest), before, 'the rows are as they were')
  t.ok(after.every((row) => row.attrs === null), 'old files have no attrs')
})
