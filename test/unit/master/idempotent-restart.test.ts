// Proves that every mutation a client retries with its request id after a master crash gets its original
// reply: mkdir, create, allocate, commit, complete, rename, delete and abandon are applied once, the master
// is "killed" (a second master opens the same database while the first was never closed, as after kill -9),
// and each retry returns what the first attempt returned — not GRN_EXISTS, GRN_NOT_FOUND or
// GRN_LEASE_EXPIRED — without logging a second oplog record.
import t from 'tap'
import type * as p from '../../../shared/protocol.js'
import { addServers, renewLease, smallChunkBytes, startTestMaster, type TestMaster } from './fixture.js'

interface Call { route: string, body: Record<string, unknown> }

async function ok<T> (m: TestMaster, call: Call): Promise<T> {
  const res = await m.call<T>('POST', call.route, call.body)
  if (res.statusCode !== 200) throw new Error(`${call.route}: ${JSON.stringify(res.body)}`)
  return res.body
}

t.test('after a crash and restart, a retried mutation gets its original reply and is not applied twice', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 2)
  const calls: Record<string, Call> = {}
  const replies: Record<string, unknown> = {}
  const run = async (name: string, route: string, body: Record<string, unknown>): Promise<any> => {
    calls[name] = { route, body: { ...body, requestId: `req-${name}` } }
    replies[name] = await ok(m1, calls[name] as Call)
    return replies[name]
  }
  await run('mkdir', '/fs/mkdir', { path: '/d' })
  const created = await run('create', '/fs/create', { path: '/d/f', replication: 2, chunkSizeBytes: smallChunkBytes }) as p.CreateReply
  const lease = { inodeId: created.inodeId, leaseId: created.leaseId }
  const allocated = await run('allocate', '/fs/allocate', { ...lease, chunkIndex: 0 }) as p.AllocateReply
  await run('commit', '/fs/commit', {
    ...lease, chunkIndex: 0, chunkHandle: allocated.chunkHandle, version: allocated.version, lengthBytes: 5, crc32: 7,
    serverIds: allocated.pipeline.map((s) => s.serverId)
  })
  await run('complete', '/fs/complete', { ...lease, sizeBytes: 5, chunkCount: 1 })
  await run('rename', '/fs/rename', { source: '/d/f', target: '/d/g' })
  const other = await run('create2', '/fs/create', { path: '/d/h', replication: 2, chunkSizeBytes: smallChunkBytes }) as p.CreateReply
  await run('abandon', '/fs/abandon', { inodeId: other.inodeId, leaseId: other.leaseId })
  await run('mkdir2', '/fs/mkdir', { path: '/e' })
  await run('delete', '/fs/delete', { path: '/e' })
  const seq = m1.queue.seq

  // m1 is never closed before m2 opens the file: nothing is flushed or checkpointed, as after kill -9.
  const m2 = await startTestMaster(t, { dir })
  t.equal(m2.queue.seq, seq, 'every acknowledged mutation is in the reopened database')
  const early = await m2.call('POST', (calls.mkdir as Call).route, (calls.mkdir as Call).body)
  t.match(early.body, { code: 'GRN_NOT_MASTER', details: { lease: false } }, 'a restarted master holds no lease: even a retry waits for it')
  // A majority (both) of the registered chunkservers echo a reply of this process: the lease is m2's.
  t.equal(await renewLease(m2, [1, 2]), true)
  for (const [name, call] of Object.entries(calls)) {
    const res = await m2.call('POST', call.route, call.body)
    t.equal(res.statusCode, 200, `${name} retried after the restart succeeds`)
    if (name === 'allocate') {
      const again = res.body as p.AllocateReply
      t.same([again.chunkHandle, again.version, again.pipeline], [allocated.chunkHandle, allocated.version, allocated.pipeline], 'allocate: the same chunk, version and pipeline')
    } else {
      t.same(res.body, replies[name], `${name}: the original reply`)
    }
  }
  t.equal(m2.queue.seq, seq, 'no retry logged a second record')
  t.equal((await m2.call('GET', '/fs/stat', { path: '/d/g' })).statusCode, 200, 'the renamed file is where the rename put it')
  t.equal((await m2.call('GET', '/fs/stat', { path: '/e' })).body.code, 'GRN_NOT_FOUND', 'the deleted directory stays deleted')
  const fresh = await m2.call('POST', '/fs/mkdir', { path: '/d', requestId: 'req-new' })
  t.equal(fresh.body.code, 'GRN_EXISTS', 'a new request id is a new mutation')
})

t.test('the request-id table survives a restart', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  for (let i = 0; i < 5; i++) await ok(m1, { route: '/fs/mkdir', body: { path: `/r${i}`, requestId: `keep-${i}` } })
  const m2 = await startTestMaster(t, { dir })
  const rows = m2.db.prepare('SELECT requestId FROM requests ORDER BY rowid').pluck().all()
  t.same(rows, ['keep-0', 'keep-1', 'keep-2', 'keep-3', 'keep-4'], 'the ids are in the database, oldest first')
})
