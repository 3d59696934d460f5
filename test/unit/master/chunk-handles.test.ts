// Proves chunk handles are unique across terms and rollbacks: a master of term 2 that starts from a copy that
// missed the term-1 master's last allocations (a lagging shadow promoted, or a database a power loss rolled
// back) never hands out a handle term 1 already used; the term sits in the handle's high 32 bits; and replaying
// the oplog into a fresh database gives the same handles and identical tables (what a shadow does).
import t from 'tap'
import { openDb, type Db } from '../../../master/db.js'
import { applyAndLog, readOplog, replayRecord } from '../../../master/oplog.js'
import type { AllocateResult } from '../../../master/chunks.js'
import type { Op } from '../../../master/ops.js'
import { chunkHandlePattern, termOfChunkHandle, type ChunkHandle, type InodeId, type LeaseId, type ServerId } from '../../../shared/ids.js'
import type { CreateResult } from '../../../master/namespace.js'
import { dumpTables } from './fixture.js'

const nowMs = 1_700_000_000_000
const leaseExpiresAtMs = nowMs + 60_000
const serverIds = ['cs-000000000001', 'cs-000000000002', 'cs-000000000003'] as ServerId[]

function run<R> (db: Db, op: Op): R {
  return db.transaction(() => {
    const seq = (db.prepare('SELECT seq FROM meta').get() as { seq: number }).seq + 1
    const term = (db.prepare('SELECT term FROM meta').get() as { term: number }).term
    return applyAndLog(db, op, { seq, term, atMs: nowMs, requestId: null }).result as R
  }).immediate()
}

function setUp (db: Db): void {
  for (const serverId of serverIds) run(db, { type: 'registerServer', serverId, url: `http://127.0.0.1:1/${serverId}` })
}

// Creates a file and allocates `chunkCount` chunks of it; returns their handles.
function allocateFile (db: Db, name: string, chunkCount: number): ChunkHandle[] {
  const leaseId = `${name.padEnd(32, '0')}`.slice(0, 32) as LeaseId
  const created = run<CreateResult>(db, { type: 'create', path: `/${name}`, replication: 3, chunkSizeBytes: 1024, overwrite: false, leaseId, leaseExpiresAtMs, nowMs })
  const handles: ChunkHandle[] = []
  for (let chunkIndex = 0; chunkIndex < chunkCount; chunkIndex++) {
    const allocated = run<AllocateResult>(db, { type: 'allocate', inodeId: created.inodeId as InodeId, leaseId, chunkIndex, serverIds, leaseExpiresAtMs, nowMs })
    handles.push(allocated.chunkHandle)
  }
  return handles
}

t.test('a newer term never hands out a handle an older term used, even from a rolled-back copy', async (t) => {
  const old = openDb(':memory:', 'normal')
  const stale = openDb(':memory:', 'normal')
  t.teardown(() => { old.close(); stale.close() })
  setUp(old)
  setUp(stale)
  t.same(allocateFile(old, 'a', 2), allocateFile(stale, 'a', 2), 'the same history gives the same handles')
  // The term-1 master goes on allocating; the copy does not see it (lagging shadow, or power-loss rollback).
  const term1 = [...allocateFile(old, 'b', 3), ...allocateFile(old, 'a2', 2)]
  run(stale, { type: 'newTerm', term: 2 })
  const term2 = [...allocateFile(stale, 'c', 3), ...allocateFile(stale, 'd', 2)]

  for (const handle of [...term1, ...term2]) t.match(handle, chunkHandlePattern, `${handle} keeps the handle format`)
  t.same(term1.map(termOfChunkHandle), [1, 1, 1, 1, 1], 'term 1 in the high bits')
  t.same(term2.map(termOfChunkHandle), [2, 2, 2, 2, 2], 'term 2 in the high bits')
  t.same(term2.filter((h) => term1.includes(h)), [], 'no term-2 handle equals a term-1 handle')
  t.equal(term2[0], '0000000200000000', 'a new term starts its counter at term × 2^32')
  t.equal(new Set(term2).size, term2.length)

  // A reallocation (new version) keeps its handle, whatever the term.
  const leaseId = 'e'.padEnd(32, '0') as LeaseId
  const created = run<CreateResult>(stale, { type: 'create', path: '/e', replication: 3, chunkSizeBytes: 1024, overwrite: false, leaseId, leaseExpiresAtMs, nowMs })
  const first = run<AllocateResult>(stale, { type: 'allocate', inodeId: created.inodeId, leaseId, chunkIndex: 0, serverIds, leaseExpiresAtMs, nowMs })
  run(stale, { type: 'newTerm', term: 5 })
  const again = run<AllocateResult>(stale, { type: 'allocate', inodeId: created.inodeId, leaseId, chunkIndex: 0, serverIds, leaseExpiresAtMs, nowMs })
  t.same([again.chunkHandle, again.version], [first.chunkHandle, 2])
  t.equal(allocateFile(stale, 'f', 1)[0], '0000000500000000', 'term 5 skips the terms it never held')
})

t.test('a replay of the oplog gives the same handles and identical tables', async (t) => {
  const master = openDb(':memory:', 'normal')
  const shadow = openDb(':memory:', 'normal')
  t.teardown(() => { master.close(); shadow.close() })
  setUp(master)
  allocateFile(master, 'a', 3)
  run(master, { type: 'newTerm', term: 2 })
  allocateFile(master, 'b', 2)
  run(master, { type: 'newTerm', term: 3 })
  allocateFile(master, 'c', 1)
  for (const record of readOplog(master, 1, 1000)) replayRecord(shadow, record)
  t.same(dumpTables(shadow, ['meta', 'inodes', 'chunks', 'replicas', 'servers']), dumpTables(master, ['meta', 'inodes', 'chunks', 'replicas', 'servers']))
  const handles = (shadow.prepare('SELECT chunkHandle FROM chunks ORDER BY chunkHandle').all() as Array<{ chunkHandle: ChunkHandle }>).map((r) => r.chunkHandle)
  t.same(handles.map(termOfChunkHandle), [1, 1, 1, 2, 2, 3])
})
