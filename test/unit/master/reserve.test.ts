// Proves reserved files (issue 13: a small file in one master call). A reserve makes unnamed files, each with
// chunk 0 allocated and a write token, in one oplog record, invisible to every listing; the completing commit's
// bind names one with create's checks, commits and completes it in one record; a retry with the same request id
// gets the original reply; a refused bind changes nothing; an unused reservation's lease runs out like an
// abandoned upload's (its reported replicas are deleted); a shadow replays both to equal tables.
import t from 'tap'
import type * as p from '../../../shared/protocol.js'
import type { RequestId } from '../../../shared/ids.js'
import { verifyToken } from '../../../shared/token.js'
import { addServers, checkRetriedOnce, dumpTables, heartbeat, oplogCount, smallChunkBytes, startTestMaster, type TestMaster } from './fixture.js'
import { addServers as addPairServers, call, caughtUp, startPair, tables } from './shadow-fixture.js'

async function reserve (m: TestMaster, count: number, over: Record<string, unknown> = {}): Promise<p.ReserveReply> {
  const res = await m.call<p.ReserveReply>('POST', '/fs/reserve', { count, replication: 2, chunkSizeBytes: smallChunkBytes, ...over })
  if (res.statusCode !== 200) throw new Error(JSON.stringify(res.body))
  return res.body
}

function bindCommit (r: p.Reservation, lengthBytes: number, bind: p.BindArgs, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    inodeId: r.inodeId, leaseId: r.leaseId, chunkIndex: 0, chunkHandle: r.firstChunk.chunkHandle, version: r.firstChunk.version,
    lengthBytes, crc32: 99, serverIds: r.firstChunk.pipeline.map((s) => s.serverId), complete: { sizeBytes: lengthBytes, chunkCount: 1, bind }, ...over
  }
}

t.test('reserve: unnamed files with chunk 0 allocated, one record; one commit names, commits and completes each', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const before = oplogCount(m)
  const reply = await reserve(m, 3)
  t.equal(oplogCount(m) - before, 1, 'one record for the three')
  t.equal(reply.reservations.length, 3)
  t.equal(reply.usableForMs, Math.floor(Math.min(m.config.leaseTtlMs, m.config.tokenTtlMs) / 2))
  t.equal(new Set(reply.reservations.map((r) => r.firstChunk.chunkHandle)).size, 3, 'a handle each')
  t.equal(new Set(reply.reservations.map((r) => r.firstChunk.pipeline[0]?.serverId)).size, 3, 'placement spreads them: each pipeline starts elsewhere')
  for (const r of reply.reservations) {
    t.match(r, { replication: 2, chunkSizeBytes: smallChunkBytes, leaseExpiresAtMs: m.clock.nowMs + m.config.leaseTtlMs })
    t.match(verifyToken(m.secret, r.firstChunk.token, m.clock.nowMs), { chunkHandle: r.firstChunk.chunkHandle, version: 1, mode: 'write' })
  }
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/' })).body.entries, [], 'nothing is listed')
  t.equal((await m.call<p.ClusterReport>('GET', '/cluster/report')).body.fileCount, 0)

  const [a, b] = reply.reservations as [p.Reservation, p.Reservation, p.Reservation]
  const atBind = oplogCount(m)
  const done = await m.call<p.CommitReply>('POST', '/fs/commit', bindCommit(a, 4096, { path: '/small', mode: 0o600, attrs: { etag: 'x' } }))
  t.equal(done.statusCode, 200, JSON.stringify(done.body))
  t.match(done.body.stat, { path: '/small', type: 'file', sizeBytes: 4096, chunkCount: 1, mode: 0o600, attrs: { etag: 'x' }, crc32: 99 })
  t.equal(oplogCount(m) - atBind, 1, 'one record: the file in one master call')
  t.same((await m.call('GET', '/fs/stat', { path: '/small' })).body, done.body.stat)
  const opened = (await m.call<p.OpenReply>('GET', '/fs/open', { path: '/small' })).body
  t.match(opened.chunks, [{ chunkIndex: 0, chunkHandle: a.firstChunk.chunkHandle, lengthBytes: 4096 }])
  t.equal(opened.chunks[0]?.replicas.length, 2, 'the acknowledging servers are its replicas')

  // A plain complete (its commit went alone) may bind too.
  t.equal((await m.call('POST', '/fs/commit', { ...bindCommit(b, 10, { path: '/x' }), complete: undefined })).statusCode, 200)
  const completed = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId: b.inodeId, leaseId: b.leaseId, sizeBytes: 10, chunkCount: 1, bind: { path: '/two' } })
  t.match(completed.body, { path: '/two', sizeBytes: 10, mode: 0o644 })
})

t.test('a retried bind with the same request id gets the original reply: one file', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const [r] = (await reserve(m, 1)).reservations as [p.Reservation]
  await checkRetriedOnce(t, m, '/fs/commit', bindCommit(r, 100, { path: '/r' }, { requestId: 'bind-r' as RequestId }))
  const retriedReserve = await reserve(m, 2, { requestId: 'reserve-r' })
  t.same(await reserve(m, 2, { requestId: 'reserve-r' }), retriedReserve, 'a retried reserve gets the same files back')
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE state = 'writing'").pluck().get(), 2, 'not two more')
})

t.test('a bind makes create\'s checks at complete; a refused one changes nothing', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/d' })).statusCode, 200)
  const existing = await m.call<p.CommitReply>('POST', '/fs/commit', bindCommit((await reserve(m, 1)).reservations[0] as p.Reservation, 5, { path: '/d/f' }))
  t.equal(existing.statusCode, 200)
  const [r] = (await reserve(m, 1)).reservations as [p.Reservation]
  for (const [bind, code] of [
    [{ path: '/d' }, 'GRN_IS_DIR'],
    [{ path: '/d/f' }, 'GRN_EXISTS'],
    [{ path: '/no/such/f', parents: false }, 'GRN_NOT_FOUND'],
    [{ path: '/no/such/f' }, 'GRN_NOT_FOUND'],              // parents is off unless asked
    [{ path: '/d/f/g', parents: true }, 'GRN_NOT_DIR'],
    [{ path: '/' }, 'GRN_IS_DIR'],
    [{ path: 'rel' }, 'GRN_INVALID_PATH'],
    [{ path: '/d/g', mode: 0o10000 }, 'GRN_INVALID_ARGUMENT'],
    [{ path: '/d/g', extra: 1 }, 'GRN_INVALID_ARGUMENT']
  ] as const) {
    const before = dumpTables(m.db)
    const res = await m.call('POST', '/fs/commit', bindCommit(r, 7, bind as p.BindArgs))
    t.equal(res.body.code, code, JSON.stringify(bind))
    t.same(dumpTables(m.db), before, 'nothing changed')
  }
  const plain = await m.call('POST', '/fs/complete', { inodeId: r.inodeId, leaseId: r.leaseId, sizeBytes: 0, chunkCount: 0 })
  t.equal(plain.body.code, 'GRN_INVALID_ARGUMENT', 'a reserved file is completed only with a name')
  const created = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/named', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  const rebind = await m.call('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, bind: { path: '/elsewhere' } })
  t.equal(rebind.body.code, 'GRN_INVALID_ARGUMENT', 'a file created with a name keeps it')

  const madeParents = await m.call<p.CommitReply>('POST', '/fs/commit', bindCommit(r, 7, { path: '/new/deep/f', parents: true }))
  t.match(madeParents.body.stat, { path: '/new/deep/f', sizeBytes: 7 }, 'parents: the folders are made in the same op')
  t.match((await m.call('GET', '/fs/stat', { path: '/new/deep' })).body, { type: 'dir', mode: 0o755 })
  const [o] = (await reserve(m, 1)).reservations as [p.Reservation]
  const replaced = await m.call<p.CommitReply>('POST', '/fs/commit', bindCommit(o, 9, { path: '/d/f', overwrite: true }))
  t.match(replaced.body.stat, { path: '/d/f', sizeBytes: 9 }, 'overwrite replaces the file at complete')
})

t.test('a writer holding the name refuses a bind; one whose lease ran out is dropped by it', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const held = await m.call<p.CreateReply>('POST', '/fs/create', { path: '/w', replication: 2, chunkSizeBytes: smallChunkBytes })
  t.equal(held.statusCode, 200)
  const [r] = (await reserve(m, 1)).reservations as [p.Reservation]
  t.equal((await m.call('POST', '/fs/commit', bindCommit(r, 3, { path: '/w' }))).body.code, 'GRN_LEASE_HELD')
  m.clock.nowMs += m.config.leaseTtlMs   // both leases run out; the reservation's too
  t.equal((await m.call('POST', '/fs/commit', bindCommit(r, 3, { path: '/w' }))).body.code, 'GRN_LEASE_EXPIRED', 'a lapsed reservation is refused')
  for (const i of [1, 2, 3]) await heartbeat(m, i)
  const [fresh] = (await reserve(m, 1)).reservations as [p.Reservation]
  const bound = await m.call<p.CommitReply>('POST', '/fs/commit', bindCommit(fresh, 3, { path: '/w' }))
  t.match(bound.body.stat, { path: '/w', sizeBytes: 3 }, 'the expired writer gave way')
})

t.test('an unused reservation lapses: its file, chunk and reported replicas go', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const [r] = (await reserve(m, 1)).reservations as [p.Reservation]
  const [first] = r.firstChunk.pipeline as [p.ChunkserverAddress]
  const serverIndex = Number.parseInt(first.serverId.slice(3), 16)
  // The server stored the chunk (a writer that then died) and reports it: kept while reserved.
  await heartbeat(m, serverIndex, { added: [{ chunkHandle: r.firstChunk.chunkHandle, version: 1, lengthBytes: 10 }] })
  t.equal(m.db.prepare('SELECT count(*) FROM replicas').pluck().get(), 1, 'a reported copy of a reserved chunk is recorded, not deleted')
  m.clock.nowMs += m.config.leaseTtlMs
  for (const i of [1, 2, 3]) await heartbeat(m, i)
  await m.ticker.tick()
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE type = 'file'").pluck().get(), 0, 'the reserved file is gone')
  t.equal(m.db.prepare('SELECT count(*) FROM chunks').pluck().get(), 0)
  const reply = await heartbeat(m, serverIndex)
  t.match(reply.commands, [{ type: 'delete', chunkHandle: r.firstChunk.chunkHandle }], 'the stored copy is deleted')
})

t.test('bad reserve calls are refused and change nothing', async (t) => {
  const m = await startTestMaster(t)
  const before = dumpTables(m.db)
  for (const body of [{ count: 0 }, { count: 33 }, { count: 1.5 }, { count: '2' }, {}, { count: 1, replication: 9 }, { count: 1, chunkSizeBytes: 1000 }, { count: 1, path: '/x' }]) {
    const res = await m.call('POST', '/fs/reserve', body)
    t.equal(res.body.code, 'GRN_INVALID_ARGUMENT', JSON.stringify(body))
  }
  t.equal((await m.call('POST', '/fs/reserve', { count: 1 })).body.code, 'GRN_NO_CHUNKSERVERS', 'none to place on: the client writes as usual')
  t.same(dumpTables(m.db), before)
})

t.test('a shadow replays reserve and bind to equal tables', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await addPairServers(master)
  const shadow = await pair.startShadow()
  const reserved = await call<p.ReserveReply>(master, 'POST', '/fs/reserve', { count: 4, replication: 2, chunkSizeBytes: smallChunkBytes })
  t.equal(reserved.statusCode, 200)
  for (const [i, r] of reserved.body.reservations.slice(0, 3).entries()) {
    const bound = await call(master, 'POST', '/fs/commit', bindCommit(r, 10 + i, { path: `/p/s${i}`, parents: true }))
    t.equal(bound.statusCode, 200)
  }
  await caughtUp(shadow, master)
  t.same(tables(shadow.node.db), tables(master.db), 'inodes, chunks, replicas, meta equal')
  t.same(pair.fatal, [])
})
