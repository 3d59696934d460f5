// Proves complete's optional mtimeMs (used by tar unpack to keep a file's modification time): the file gets
// the given mtime while its folder's mtime is the time of the change; without it the file gets the master's
// clock; a negative or fractional mtime is refused with GRN_INVALID_ARGUMENT and changes nothing.
import t from 'tap'
import type * as p from '../../../shared/protocol.js'
import { addServers, dumpTables, smallChunkBytes, startTestMaster } from './fixture.js'

t.test('complete keeps a given mtime for the file, not for its folder', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  const complete = async (path: string, mtimeMs?: number): Promise<{ statusCode: number, body: p.FileStat & { code?: string } }> => {
    const created = (await m.call<p.CreateReply>('POST', '/fs/create', { path, replication: 2, chunkSizeBytes: smallChunkBytes })).body
    m.clock.nowMs += 1000
    return await m.call('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, mtimeMs })
  }
  const kept = await complete('/d/old.txt', 1_234_567_890_123)
  t.equal(kept.statusCode, 200)
  t.equal(kept.body.mtimeMs, 1_234_567_890_123, 'the file has the given mtime')
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/d/old.txt' })).body.mtimeMs, 1_234_567_890_123, 'stat agrees')
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/d' })).body.mtimeMs, m.clock.nowMs, 'the folder changed now')
  const now = await complete('/d/new.txt')
  t.equal(now.body.mtimeMs, m.clock.nowMs, "without mtimeMs: the master's clock")
  for (const bad of [-1, 1.5]) {
    const created = (await m.call<p.CreateReply>('POST', '/fs/create', { path: `/d/bad${bad}`, replication: 2, chunkSizeBytes: smallChunkBytes })).body
    const before = dumpTables(m.db)
    const res = await m.call('POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0, mtimeMs: bad })
    t.equal(res.body.code, 'GRN_INVALID_ARGUMENT', `mtimeMs ${bad} refused`)
    t.same(dumpTables(m.db), before, 'nothing changed')
  }
})
