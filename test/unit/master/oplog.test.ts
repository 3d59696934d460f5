// Proves the durability story: concurrent mutations are group-committed with consecutive seqs (a refused op
// leaves no gap and does not abort its neighbours), a retried requestId gets its original reply, a reopened
// database holds everything, and replaying the oplog with apply() into a fresh database reproduces every
// result and every table — what a shadow will do. Also the queue bound, the trims and a failed assertion.
import t from 'tap'
import { join } from 'node:path'
import { AssertionError } from '../../../shared/assert.js'
import type { ChunkHandle, InodeId, LeaseId, RequestId } from '../../../shared/ids.js'
import { groupCommitQueueMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { openDb } from '../../../master/db.js'
import { applyAndLog, pruneRequests, readOplog, replayRecord, storedReply, trimOplog } from '../../../master/oplog.js'
import { addServers, dumpTables, heartbeat, renewLease, serverIdOf, smallChunkBytes, startTestMaster, writeFile, type TestMaster } from './fixture.js'

t.test('concurrent submits share one transaction and get consecutive seqs', async (t) => {
  const m = await startTestMaster(t)
  await m.call('POST', '/fs/mkdir', { path: '/taken' })
  const startSeq = m.queue.seq
  const submits = []
  for (let i = 0; i < 200; i++) {
    const path = i % 10 === 0 ? '/taken' : `/d${i}`   // every tenth is refused with GRN_EXISTS
    submits.push(m.queue.submit({ type: 'mkdir', path, parents: false, mtimeMs: 1 }))
  }
  const outcomes = await Promise.allSettled(submits)
  t.equal(outcomes.filter((o) => o.status === 'rejected').length, 20)
  t.ok(outcomes.every((o, i) => o.status === 'fulfilled' ? i % 10 !== 0 : (o.reason as { code: string }).code === 'GRN_EXISTS'))
  const rows = m.db.prepare('SELECT seq, atMs FROM oplog WHERE seq > ? ORDER BY seq').all(startSeq) as Array<{ seq: number, atMs: number }>
  t.same(rows.map((r) => r.seq), Array.from({ length: 180 }, (_, i) => startSeq + 1 + i), 'consecutive seqs, no gaps for refused ops')
  t.equal(new Set(rows.map((r) => r.atMs)).size, 1, 'one flush: one commit time for all 180')
  t.equal(m.queue.seq, startSeq + 180)
  t.equal(m.db.prepare('SELECT seq FROM meta').pluck().get(), startSeq + 180)

  const viaHttp = await Promise.all(Array.from({ length: 20 }, (_, i) => m.call('POST', '/fs/mkdir', { path: `/h${i}` })))
  t.ok(viaHttp.every((r) => r.statusCode === 200))
  t.equal(m.queue.seq, startSeq + 200)
})

t.test('a retried requestId gets the original reply instead of running twice', async (t) => {
  const m = await startTestMaster(t)
  const requestId = 'req-1'
  const first = await m.call('POST', '/fs/mkdir', { path: '/a', requestId })
  const seq = m.queue.seq
  const again = await m.call('POST', '/fs/mkdir', { path: '/a', requestId })
  t.same(again, first, 'same status and body, not GRN_EXISTS')
  t.equal(m.queue.seq, seq, 'nothing applied or logged')
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/a', requestId: 'req-2' })).body.code, 'GRN_EXISTS', 'a new requestId runs')

  const twice = await Promise.all([1, 2].map(() => m.call<p.CreateReply>('POST', '/fs/create', { path: '/f', requestId: 'req-3' })))
  t.equal(twice[0]!.statusCode, 200)
  t.same(twice[1], twice[0], 'the same retry twice at once shares one result (no GRN_LEASE_HELD)')
  t.equal(m.db.prepare("SELECT count(*) FROM oplog WHERE requestId = 'req-3'").pluck().get(), 1)
  const retried = await m.call<p.CreateReply>('POST', '/fs/create', { path: '/f', requestId: 'req-3' })
  t.same(retried.body, twice[0]!.body, 'same inode and lease on a later retry')
  t.equal((await m.call('POST', '/fs/create', { path: '/f' })).body.code, 'GRN_LEASE_HELD')

  const { inodeId, leaseId } = twice[0]!.body
  await addServers(m, 3)   // the file has the default replication, 3
  const alloc = await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0, requestId: 'req-4' })
  const allocAgain = await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0, requestId: 'req-4' })
  t.same([allocAgain.body.chunkHandle, allocAgain.body.version, allocAgain.body.pipeline], [alloc.body.chunkHandle, 1, alloc.body.pipeline], 'no version bump on a retried allocate')
})

// Exercises every op kind, including refused ones (not logged) and heartbeat batches.
async function workload (m: TestMaster): Promise<void> {
  await addServers(m, 3)
  await m.call('POST', '/fs/mkdir', { path: '/a/b/c', parents: true, requestId: 'w1' })
  await writeFile(m, '/a/f1', [smallChunkBytes, 10])
  await writeFile(m, '/a/b/f2', [3], { replication: 3 })
  await writeFile(m, '/a/f1', [7], { overwrite: true })
  const pending = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/a/pending', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  const a = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId: pending.inodeId, leaseId: pending.leaseId, chunkIndex: 0 })).body
  await m.call('POST', '/fs/allocate', { inodeId: pending.inodeId, leaseId: pending.leaseId, chunkIndex: 0, excludeServerIds: [a.pipeline[0]!.serverId] })
  await m.call('POST', '/fs/renew', { inodeId: pending.inodeId, leaseId: pending.leaseId })
  const abandoned = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/gone' })).body
  await m.call('POST', '/fs/abandon', { inodeId: abandoned.inodeId, leaseId: abandoned.leaseId })
  await m.call('POST', '/fs/rename', { source: '/a/b', target: '/moved' })
  await m.call('POST', '/fs/mkdir', { path: '/moved' })   // refused: exists
  await heartbeat(m, 1, { added: [{ chunkHandle: '0000000000000001' as ChunkHandle, version: 1, lengthBytes: 1 }], removed: [{ chunkHandle: '0000000000000003' as ChunkHandle, version: 1, lengthBytes: 3 }] })
  await heartbeat(m, 4, { url: 'http://127.0.0.1:7999' })
  await m.call('POST', '/fs/delete', { path: '/moved', recursive: true })
  m.clock.nowMs += m.config.leaseTtlMs + 1
  for (const i of [1, 2, 3]) await heartbeat(m, i)
  await m.ticker.tick()   // expires /a/pending
}

t.test('replaying the oplog into a fresh database reproduces every result and table', async (t) => {
  const m = await startTestMaster(t)
  await workload(m)
  const types = new Set(m.db.prepare('SELECT op FROM oplog').pluck().all().map((op) => JSON.parse(op as string).type))
  t.same([...types].sort(), ['abandon', 'allocate', 'batch', 'commit', 'complete', 'create', 'delete', 'expireLease', 'mkdir', 'rename', 'renew'].sort(), 'the workload covers the ops')

  const shadow = openDb(join(t.testdir(), 'shadow.db'), 'normal')
  t.teardown(() => shadow.close())
  let fromSeq = 1
  for (;;) {
    const records = readOplog(m.db, fromSeq, 7)   // small pages: the tail must resume exactly
    if (records.length === 0) break
    for (const record of records) replayRecord(shadow, record)
    fromSeq = records[records.length - 1]!.seq + 1
  }
  t.same(dumpTables(shadow), dumpTables(m.db), 'same meta, inodes, chunks, replicas, servers, oplog, requests, sequences')

  const fresh = openDb(':memory:', 'normal')
  t.teardown(() => fresh.close())
  const [first, second] = readOplog(m.db, 1, 2)
  replayRecord(fresh, first!)
  t.throws(() => replayRecord(fresh, { ...second!, result: { tampered: true } }), AssertionError, 'a different result is a divergence')
  t.throws(() => replayRecord(fresh, { ...second!, seq: 5 }), AssertionError, 'a gap is refused')
  t.throws(() => replayRecord(fresh, { ...second!, op: { type: 'mkdir', path: '/', parents: false, mtimeMs: 0 } }), AssertionError, 'an op that fails on replay is a divergence')
  t.equal(fresh.prepare('SELECT seq FROM meta').pluck().get(), 1, 'failed replays leave nothing behind')
})

t.test('a reopened database has everything, and start-up reads only meta', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 2)
  await m1.call('POST', '/fs/mkdir', { path: '/d' })
  const stat = await writeFile(m1, '/d/f', [smallChunkBytes, 5])
  const pending = (await m1.call<p.CreateReply>('POST', '/fs/create', { path: '/d/p' })).body
  const seq = m1.queue.seq
  const before = dumpTables(m1.db)
  await m1.close()

  const m2 = await startTestMaster(t, { dir })
  t.same(dumpTables(m2.db), before, 'every table as it was')
  t.equal(m2.queue.seq, seq)
  t.match((await m2.call('GET', '/fs/stat', { path: '/d/f' })).body, { code: 'GRN_NOT_MASTER', details: { lease: false } }, 'no master read until a majority of chunkservers renews the lease')
  t.equal((await m2.call('POST', '/fs/create', { path: '/d/p' })).body.code, 'GRN_NOT_MASTER', 'nor a mutation')
  const reply = await heartbeat(m2, 1)
  t.equal(reply.needFullReport, true, 'a restarted master asks every chunkserver for a full report')
  t.equal(await renewLease(m2, [1, 2]), true)
  t.same((await m2.call('GET', '/fs/stat', { path: '/d/f' })).body, stat)
  const opened = (await m2.call<p.OpenReply>('GET', '/fs/open', { path: '/d/f' })).body
  t.equal(opened.chunks.length, 2)
  t.ok(opened.chunks.every((c) => c.replicas.length === 2), 'replica locations persisted (listed although not yet fully reported)')
  t.equal((await m2.call('POST', '/fs/create', { path: '/d/p' })).body.code, 'GRN_LEASE_HELD', 'leases persisted')
  t.equal((await m2.call('POST', '/fs/renew', { inodeId: pending.inodeId, leaseId: pending.leaseId })).statusCode, 200)
  t.equal(m2.queue.seq, seq + 1, 'seq continues')
  t.equal((await m2.call('POST', '/fs/mkdir', { path: '/d' })).body.code, 'GRN_EXISTS')
})

t.test('the commit queue is bounded, refuses after close, and an assertion rolls a batch back', async (t) => {
  const m = await startTestMaster(t)
  const bad = { type: 'renew', inodeId: 999 as InodeId, leaseId: 'x' as LeaseId, leaseExpiresAtMs: 0, nowMs: 0 } as const
  const queued = Array.from({ length: groupCommitQueueMax }, () => m.queue.submit(bad))
  const overflow = m.queue.submit(bad)
  await t.rejects(overflow, { code: 'GRN_UNAVAILABLE' })
  const settled = await Promise.allSettled(queued)
  t.ok(settled.every((s) => s.status === 'rejected' && (s.reason as { code: string }).code === 'GRN_LEASE_EXPIRED'))
  t.equal(m.queue.seq, 0, 'refused ops are never logged')

  const good = m.queue.submit({ type: 'mkdir', path: '/ok', parents: false, mtimeMs: 1 })
  const broken = m.queue.submit({ type: 'batch', ops: [{ type: 'mkdir', path: '/x', parents: false, mtimeMs: 1 } as never] })
  await t.rejects(broken, AssertionError)
  await t.rejects(good, AssertionError, 'the whole batch rolls back with it')
  t.equal(m.fatal.length, 1, 'onFatal was called')
  t.equal(m.db.prepare('SELECT count(*) FROM inodes').pluck().get(), 1)

  m.queue.close()
  await t.rejects(m.queue.submit({ type: 'mkdir', path: '/late', parents: false, mtimeMs: 1 }), { code: 'GRN_UNAVAILABLE' })
})

t.test('oplog trim and request prune keep the newest rows in bounded batches', async (t) => {
  const m = await startTestMaster(t)
  for (let i = 0; i < 20; i++) await m.queue.submit({ type: 'mkdir', path: `/d${i}`, parents: false, mtimeMs: 1 }, `r${i}` as RequestId)
  t.equal(trimOplog(m.db, 5, 10), 10, 'one batch')
  t.equal(trimOplog(m.db, 5, 10), 5)
  t.equal(trimOplog(m.db, 5, 10), 0)
  t.same(m.db.prepare('SELECT seq FROM oplog').pluck().all(), [16, 17, 18, 19, 20])
  t.same(readOplog(m.db, 1, 2).map((r) => r.seq), [16, 17], 'a tail from a trimmed seq starts at the oldest kept')
  t.equal(pruneRequests(m.db, 8, 5), 5)
  t.equal(pruneRequests(m.db, 8, 5), 5)
  t.equal(pruneRequests(m.db, 8, 5), 2)
  t.equal(pruneRequests(m.db, 8, 5), 0)
  t.same(m.db.prepare('SELECT requestId FROM requests ORDER BY rowid').pluck().all(), Array.from({ length: 8 }, (_, i) => `r${12 + i}`))
  t.equal(serverIdOf(1), 'cs-000000000001')
})

// Issue 14 item 5. A shadow's INSERT OR REPLACE (the master pruned an id, saw it retried and logged it again while
// the shadow still held it) leaves a hole in the requests rowids. Proves the prune still keeps the newest keptMax
// ids, the re-recorded one among them, instead of dropping one extra row per hole: the old span arithmetic
// deleted r0 here although the table held exactly keptMax rows, so r0's retry would have run twice.
t.test('a replaced request row does not make the prune drop a row still inside the window', async (t) => {
  const db = openDb(':memory:', 'normal')
  t.teardown(() => db.close())
  const record = (seq: number, path: string, requestId: string): void => {
    db.transaction(() => applyAndLog(db, { type: 'mkdir', path, parents: false, mtimeMs: 1 }, { seq, term: 1, atMs: seq, requestId: requestId as RequestId })).immediate()
  }
  for (let i = 0; i < 10; i++) record(i + 1, `/d${i}`, `r${i}`)
  record(11, '/again3', 'r3')   // replaces r3's row: a hole in the middle
  record(12, '/again6', 'r6')   // and a second one
  const ids = (): unknown[] => db.prepare('SELECT requestId FROM requests ORDER BY rowid').pluck().all()
  t.equal(ids().length, 10)
  t.equal(pruneRequests(db, 10, 100), 0, 'exactly keptMax rows: nothing pruned')
  t.equal(pruneRequests(db, 9, 100), 1, 'one over: one pruned')
  t.same(ids(), ['r1', 'r2', 'r4', 'r5', 'r7', 'r8', 'r9', 'r3', 'r6'], 'the oldest went; the re-recorded ids count as new')
  t.match(storedReply(db, 'r3' as RequestId), { path: '/again3' }, 'r3 answers with its latest reply')
  t.equal(pruneRequests(db, 4, 2), 2, 'bounded batch')
  t.equal(pruneRequests(db, 4, 100), 3)
  t.same(ids(), ['r8', 'r9', 'r3', 'r6'], 'the newest four')
  t.equal(pruneRequests(db, 0, 100), 4, 'keptMax 0 empties the table')
  t.equal(pruneRequests(db, 0, 100), 0)
})
