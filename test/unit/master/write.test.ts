// Proves the write path through inject(): create → allocate → commit → complete → open, that a file being
// written is invisible until complete, that overwrite swaps files atomically, the lease rules (held, expired,
// renewed, abandoned, expired by the tick), chunk rules (retry gives version + 1 on the same handle, holes,
// stale versions, recommit), and that refused requests change nothing.
import t, { type Test } from 'tap'
import type * as p from '../../../shared/protocol.js'
import { verifyToken } from '../../../shared/token.js'
import { crc32Combine } from '../../../shared/checksum.js'
import { addServers, dumpTables, heartbeat, renewLease, serverIdOf, smallChunkBytes, startTestMaster, writeFile, type TestMaster } from './fixture.js'

async function refused (t: Test, m: TestMaster, url: string, payload: unknown, code: string): Promise<void> {
  const before = dumpTables(m.db)
  const res = await m.call('POST', url, payload)
  t.equal(res.body.code, code, `${url} → ${code}`)
  t.same(dumpTables(m.db), before, 'nothing changed')
}

async function create (m: TestMaster, path: string, over: Partial<p.CreateRequest> = {}): Promise<p.CreateReply> {
  const res = await m.call<p.CreateReply>('POST', '/fs/create', { path, replication: 2, chunkSizeBytes: smallChunkBytes, ...over })
  if (res.statusCode !== 200) throw new Error(JSON.stringify(res.body))
  return res.body
}

t.test('a whole write, then open returns chunks, replicas and read tokens', async (t) => {
  const m = await startTestMaster(t)
  const servers = await addServers(m, 3)
  const { inodeId, leaseId, leaseExpiresAtMs, replication, chunkSizeBytes } = await create(m, '/f')
  t.equal(leaseExpiresAtMs, m.clock.nowMs + m.config.leaseTtlMs)
  t.same([replication, chunkSizeBytes], [2, smallChunkBytes])
  t.equal((await m.call('GET', '/fs/stat', { path: '/f' })).body.code, 'GRN_NOT_FOUND', 'invisible while being written')
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/' })).body.entries, [])
  t.equal((await m.call('GET', '/fs/open', { path: '/f' })).body.code, 'GRN_NOT_FOUND')

  m.clock.nowMs += 1000
  const a0 = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body
  t.match(a0, { chunkHandle: '0000000100000000', version: 1, term: 1, leaseExpiresAtMs: m.clock.nowMs + m.config.leaseTtlMs })
  t.equal(a0.pipeline.length, 2)
  t.ok(a0.pipeline.every((s) => servers.includes(s.serverId) && s.url.startsWith('http://127.0.0.1:')))
  t.match(verifyToken(m.secret, a0.token, m.clock.nowMs), { chunkHandle: a0.chunkHandle, version: 1, mode: 'write', term: 1 })
  const a1 = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 1 })).body
  t.equal(a1.chunkHandle, '0000000100000001')
  t.notSame(a1.pipeline.map((s) => s.serverId).sort(), a0.pipeline.map((s) => s.serverId).sort(), 'recent allocations spread the load')
  for (const [chunkIndex, a, lengthBytes] of [[0, a0, smallChunkBytes], [1, a1, 100]] as const) {
    const res = await m.call('POST', '/fs/commit', {
      inodeId, leaseId, chunkIndex, chunkHandle: a.chunkHandle, version: a.version, lengthBytes, crc32: 42 + chunkIndex, serverIds: a.pipeline.map((s) => s.serverId)
    })
    t.equal(res.statusCode, 200)
  }
  m.clock.nowMs += 1000
  const done = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId, leaseId, sizeBytes: smallChunkBytes + 100, chunkCount: 2 })
  // The whole file's CRC32 is combined from the chunks' (42 over the first, 43 over the last 100 bytes).
  const crc32 = crc32Combine(crc32Combine(0, 42, smallChunkBytes), 43, 100)
  t.same(done.body, { path: '/f', inodeId, type: 'file', sizeBytes: smallChunkBytes + 100, mtimeMs: m.clock.nowMs, replication: 2, chunkSizeBytes: smallChunkBytes, chunkCount: 2, mode: 0o644, crc32 })
  t.same((await m.call('GET', '/fs/stat', { path: '/f' })).body, done.body, 'stat agrees with complete')

  await heartbeat(m, 1)   // keep server 1 alive; let the others' heartbeats age past deadAfterMs
  m.clock.nowMs += m.config.deadAfterMs - 1500
  await heartbeat(m, 1)
  m.clock.nowMs += 1000
  const opened = (await m.call<p.OpenReply>('GET', '/fs/open', { path: '/f' })).body
  t.same(opened.stat, done.body)
  t.equal(opened.chunks.length, 2)
  t.match(opened.chunks[0], { chunkIndex: 0, chunkHandle: a0.chunkHandle, version: 1, lengthBytes: smallChunkBytes, crc32: 42 })
  t.match(opened.chunks[1], { chunkIndex: 1, chunkHandle: a1.chunkHandle, lengthBytes: 100, crc32: 43 })
  for (const chunk of opened.chunks) {
    t.match(verifyToken(m.secret, chunk.token, m.clock.nowMs), { chunkHandle: chunk.chunkHandle, version: chunk.version, mode: 'read' })
    t.equal(chunk.replicas.length, 2)
    const live = chunk.replicas.findIndex((r) => r.serverId === serverIdOf(1))
    if (live !== -1) t.equal(live, 0, 'the live replica comes first')
  }
  t.equal(opened.tokenExpiresAtMs, m.clock.nowMs + m.config.tokenTtlMs)
  t.equal((await m.call('GET', '/fs/open', { path: '/' })).body.code, 'GRN_IS_DIR')
})

t.test('an empty file completes with no chunks', async (t) => {
  const m = await startTestMaster(t)
  const { inodeId, leaseId } = await create(m, '/empty')
  const done = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId, leaseId, sizeBytes: 0, chunkCount: 0 })
  t.match(done.body, { path: '/empty', sizeBytes: 0, chunkCount: 0 })
  t.same((await m.call<p.OpenReply>('GET', '/fs/open', { path: '/empty' })).body.chunks, [])
})

t.test('overwrite: the old file stays readable until complete swaps it in one transaction', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const old = await writeFile(m, '/f', [10])
  await refused(t, m, '/fs/create', { path: '/f' }, 'GRN_EXISTS')
  const { inodeId, leaseId } = await create(m, '/f', { overwrite: true })
  t.same((await m.call('GET', '/fs/stat', { path: '/f' })).body, old, 'the old file is still the one visible')
  const a = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body
  await m.call('POST', '/fs/commit', { inodeId, leaseId, chunkIndex: 0, chunkHandle: a.chunkHandle, version: 1, lengthBytes: 20, crc32: 1, serverIds: a.pipeline.map((s) => s.serverId) })
  const done = (await m.call<p.FileStat>('POST', '/fs/complete', { inodeId, leaseId, sizeBytes: 20, chunkCount: 1 })).body
  t.match(done, { path: '/f', sizeBytes: 20, inodeId })
  t.not(done.inodeId, old.inodeId)
  t.same(m.db.prepare('SELECT inodeId FROM chunks').all(), [{ inodeId }], "the old file's chunk is gone")
  t.equal(m.registry.all().reduce((n, s) => n + s.commands.size, 0), 2, 'its two replicas get delete commands')
})

// Issue 14 item 7. Proves create itself refuses a directory at the name, empty or not, with or without
// overwrite: GRN_IS_DIR before any lease is taken or op logged, so no data is streamed only for complete
// to refuse it. (complete still checks, for a directory made at the name while the file was being written.)
t.test('create over a directory is GRN_IS_DIR at create, with or without overwrite', async (t) => {
  const m = await startTestMaster(t)
  await m.call('POST', '/fs/mkdir', { path: '/full/child', parents: true })
  await m.call('POST', '/fs/mkdir', { path: '/empty' })
  const seq = m.queue.seq
  for (const path of ['/full', '/full/', '/empty']) {
    for (const overwrite of [true, false]) await refused(t, m, '/fs/create', { path, overwrite }, 'GRN_IS_DIR')
  }
  t.equal(m.queue.seq, seq, 'nothing logged')
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE state = 'writing'").pluck().get(), 0, 'no lease taken')
})

t.test('complete links into a directory that may have changed meanwhile', async (t) => {
  const m = await startTestMaster(t)
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  const first = await create(m, '/d/x')
  await m.call('POST', '/fs/delete', { path: '/d', skipTrash: true })   // to the trash, the file would follow its folder there
  await refused(t, m, '/fs/complete', { inodeId: first.inodeId, leaseId: first.leaseId, sizeBytes: 0, chunkCount: 0 }, 'GRN_NOT_FOUND')

  const second = await create(m, '/y')
  await m.call('POST', '/fs/mkdir', { path: '/y' })
  await refused(t, m, '/fs/complete', { inodeId: second.inodeId, leaseId: second.leaseId, sizeBytes: 0, chunkCount: 0 }, 'GRN_IS_DIR')

  const third = await create(m, '/z')
  const other = await create(m, '/z2')
  await m.call('POST', '/fs/complete', { inodeId: other.inodeId, leaseId: other.leaseId, sizeBytes: 0, chunkCount: 0 })
  await m.call('POST', '/fs/rename', { source: '/z2', target: '/z' })
  await refused(t, m, '/fs/complete', { inodeId: third.inodeId, leaseId: third.leaseId, sizeBytes: 0, chunkCount: 0 }, 'GRN_EXISTS')

  await m.call('POST', '/fs/mkdir', { path: '/m' })
  const moved = await create(m, '/m/f')
  await m.call('POST', '/fs/rename', { source: '/m', target: '/m2' })
  const done = await m.call<p.FileStat>('POST', '/fs/complete', { inodeId: moved.inodeId, leaseId: moved.leaseId, sizeBytes: 0, chunkCount: 0 })
  t.equal(done.body.path, '/m2/f', 'the file follows its directory (linked by id, not by path)')
})

t.test('leases: held, expired, renewed, abandoned, expired by the tick', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const first = await create(m, '/f')
  await refused(t, m, '/fs/create', { path: '/f' }, 'GRN_LEASE_HELD')
  t.equal((await m.call('POST', '/fs/create', { path: '/f' })).statusCode, 409)

  m.clock.nowMs += m.config.leaseTtlMs - 1
  const renewed = await m.call<p.RenewReply>('POST', '/fs/renew', { inodeId: first.inodeId, leaseId: first.leaseId })
  t.equal(renewed.body.leaseExpiresAtMs, m.clock.nowMs + m.config.leaseTtlMs)
  await refused(t, m, '/fs/renew', { inodeId: first.inodeId, leaseId: 'not-the-lease' }, 'GRN_LEASE_EXPIRED')
  for (const i of [1, 2]) await heartbeat(m, i)   // still alive after the clock jump
  const a = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId: first.inodeId, leaseId: first.leaseId, chunkIndex: 0 })).body
  await m.call('POST', '/fs/commit', { inodeId: first.inodeId, leaseId: first.leaseId, chunkIndex: 0, chunkHandle: a.chunkHandle, version: 1, lengthBytes: 5, crc32: 1, serverIds: a.pipeline.map((s) => s.serverId) })

  m.clock.nowMs += m.config.leaseTtlMs
  await refused(t, m, '/fs/complete', { inodeId: first.inodeId, leaseId: first.leaseId, sizeBytes: 5, chunkCount: 1 }, 'GRN_LEASE_EXPIRED')
  await refused(t, m, '/fs/allocate', { inodeId: first.inodeId, leaseId: first.leaseId, chunkIndex: 1 }, 'GRN_LEASE_EXPIRED')
  const second = await create(m, '/f')
  t.not(second.inodeId, first.inodeId, 'an expired pending file at the path is dropped and replaced')
  t.same(m.db.prepare("SELECT id FROM inodes WHERE state = 'writing'").all(), [{ id: second.inodeId }])
  t.equal(m.db.prepare('SELECT count(*) AS n FROM chunks').pluck().get(), 0, "the dropped upload's chunks are gone")
  t.equal(m.registry.all().reduce((n, s) => n + s.commands.size, 0), 2, 'its replicas get delete commands')

  t.same((await m.call('POST', '/fs/abandon', { inodeId: second.inodeId, leaseId: second.leaseId })).body, { abandoned: true })
  t.same((await m.call('POST', '/fs/abandon', { inodeId: second.inodeId, leaseId: second.leaseId })).body, { abandoned: false }, 'abandoning twice is harmless')
  const third = await create(m, '/g')
  await refused(t, m, '/fs/abandon', { inodeId: third.inodeId, leaseId: 'wrong' }, 'GRN_LEASE_EXPIRED')

  m.clock.nowMs += m.config.leaseTtlMs - 1
  await m.ticker.tick()
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE state = 'writing'").pluck().get(), 1, 'an unexpired lease survives the tick')
  m.clock.nowMs += 1
  await m.ticker.tick()
  t.equal(m.db.prepare("SELECT count(*) FROM inodes WHERE state = 'writing'").pluck().get(), 0, 'the tick drops the expired upload')
  t.equal((await m.call('GET', '/fs/stat', { path: '/g' })).body.code, 'GRN_NOT_FOUND', 'and it never became visible')
  t.match(m.db.prepare('SELECT op FROM oplog ORDER BY seq DESC LIMIT 1').pluck().get(), /"type":"expireLease"/)
})

t.test('chunk rules: retry, holes, stale versions, recommit, mismatches', async (t) => {
  const m = await startTestMaster(t)
  const servers = await addServers(m, 3)
  const { inodeId, leaseId } = await create(m, '/f')
  const allocate = async (chunkIndex: number, excludeServerIds?: string[]) =>
    (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex, excludeServerIds })).body
  const v1 = await allocate(0)
  await refused(t, m, '/fs/allocate', { inodeId, leaseId, chunkIndex: 2 }, 'GRN_CHUNK_MISMATCH')
  // The chunkserver reports the half-written v1 copy; a retry must drop that row and bump the version.
  await heartbeat(m, Number.parseInt(v1.pipeline[0]!.serverId.slice(3), 16), { added: [{ chunkHandle: v1.chunkHandle, version: 1, lengthBytes: 3 }] })
  t.equal(m.db.prepare('SELECT count(*) FROM replicas').pluck().get(), 1, 'an allocated chunk reported by its server gets a replica row')
  const excluded = v1.pipeline[0]!.serverId
  const v2 = await allocate(0, [excluded])
  t.equal(v2.chunkHandle, v1.chunkHandle, 'same handle')
  t.equal(v2.version, 2, 'next version')
  t.notOk(v2.pipeline.some((s) => s.serverId === excluded), 'the failed server is left out')
  t.equal(m.db.prepare('SELECT count(*) FROM replicas').pluck().get(), 0, 'the v1 replica row is dropped')
  t.same(m.registry.takeCommands(excluded, 10), [{ type: 'delete', chunkHandle: v1.chunkHandle, version: 1 }])

  const commit = (over: Record<string, unknown>) => ({
    inodeId, leaseId, chunkIndex: 0, chunkHandle: v2.chunkHandle, version: 2, lengthBytes: 100, crc32: 9, serverIds: v2.pipeline.map((s) => s.serverId), ...over
  })
  await refused(t, m, '/fs/commit', commit({ version: 1 }), 'GRN_STALE_VERSION')
  await refused(t, m, '/fs/commit', commit({ version: 3 }), 'GRN_CHUNK_MISMATCH')
  await refused(t, m, '/fs/commit', commit({ chunkHandle: '00000000000000ff' }), 'GRN_CHUNK_MISMATCH')
  await refused(t, m, '/fs/commit', commit({ lengthBytes: smallChunkBytes + 1 }), 'GRN_INVALID_ARGUMENT')
  await refused(t, m, '/fs/commit', commit({ serverIds: [serverIdOf(99)] }), 'GRN_INVALID_ARGUMENT')
  await refused(t, m, '/fs/commit', commit({ leaseId: 'x' }), 'GRN_LEASE_EXPIRED')
  await refused(t, m, '/fs/complete', { inodeId, leaseId, sizeBytes: 100, chunkCount: 1 }, 'GRN_CHUNK_MISMATCH')   // not committed yet
  t.equal((await m.call('POST', '/fs/commit', commit({}))).statusCode, 200)
  const before = dumpTables(m.db, ['chunks', 'replicas'])
  t.equal((await m.call('POST', '/fs/commit', commit({}))).statusCode, 200, 'identical recommit succeeds')
  t.same(dumpTables(m.db, ['chunks', 'replicas']), before, 'and changes nothing')
  await refused(t, m, '/fs/commit', commit({ crc32: 10 }), 'GRN_CHUNK_MISMATCH')
  await refused(t, m, '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 }, 'GRN_CHUNK_MISMATCH')   // committed

  const c1 = await allocate(1)
  await m.call('POST', '/fs/commit', commit({ chunkIndex: 1, chunkHandle: c1.chunkHandle, version: 1, lengthBytes: 5, serverIds: c1.pipeline.map((s) => s.serverId) }))
  await refused(t, m, '/fs/complete', { inodeId, leaseId, sizeBytes: 105, chunkCount: 2 }, 'GRN_CHUNK_MISMATCH')   // chunk 0 not full
  await refused(t, m, '/fs/complete', { inodeId, leaseId, sizeBytes: 100, chunkCount: 1 }, 'GRN_CHUNK_MISMATCH')   // chunk beyond
  await refused(t, m, '/fs/complete', { inodeId, leaseId, sizeBytes: 106, chunkCount: 2 }, 'GRN_CHUNK_MISMATCH')
  t.equal(servers.length, 3)
})

t.test('placement needs enough live servers with room', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 1)
  const { inodeId, leaseId } = await create(m, '/f')
  await refused(t, m, '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 }, 'GRN_NO_CHUNKSERVERS')
  const res = await m.call('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })
  t.match(res, { statusCode: 503, body: { message: 'need 2 live chunkservers, have 1' } })
  t.equal(await renewLease(m, [2]), true, 'server 2 registers and echoes (two registered: both must)')
  t.equal((await m.call('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body.code, 'GRN_NO_CHUNKSERVERS', 'a server is not used before its full report')
  await heartbeat(m, 2, { fullReport: [], freeBytes: smallChunkBytes - 1 })
  t.equal((await m.call('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body.code, 'GRN_NO_CHUNKSERVERS', 'nor one without room for a chunk')
  await heartbeat(m, 2, { freeBytes: smallChunkBytes })
  t.equal((await m.call('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).statusCode, 200)
  m.clock.nowMs += m.config.deadAfterMs
  await m.call('POST', '/fs/renew', { inodeId, leaseId })
  t.equal((await m.call('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body.code, 'GRN_NO_CHUNKSERVERS', 'dead servers are not used')
})
