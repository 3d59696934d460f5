// Proves a chunkserver's report of a committed chunk counts only when it holds the committed bytes: a length
// or CRC other than the committed row's adds no replica row (and removes one it had) and queues a delete,
// in a delta and in a full report; a report without a CRC (an older chunkserver) is judged by its length;
// and chunks still being written ('allocated') are taken as before.
import t from 'tap'
import type { ChunkHandle, ServerId } from '../../../shared/ids.js'
import type * as p from '../../../shared/protocol.js'
import { addServers, heartbeat, smallChunkBytes, startTestMaster, writeFile, type TestMaster } from './fixture.js'

const replicaServers = (m: TestMaster, chunkHandle: string): string[] =>
  m.db.prepare('SELECT serverId FROM replicas WHERE chunkHandle = ? ORDER BY serverId').pluck().all(chunkHandle) as string[]

// writeFile commits chunk i with crc32 = i + 7, on the servers of its pipeline.
async function committedChunk (m: TestMaster, path: string, lengthBytes: number): Promise<{ chunkHandle: ChunkHandle, holders: ServerId[], other: number }> {
  await writeFile(m, path, [lengthBytes])
  const row = m.db.prepare("SELECT chunkHandle FROM chunks WHERE state = 'committed' ORDER BY chunkHandle DESC LIMIT 1").get() as { chunkHandle: ChunkHandle }
  const holders = replicaServers(m, row.chunkHandle) as ServerId[]
  const other = [1, 2, 3].find((i) => !holders.includes(`cs-${i.toString(16).padStart(12, '0')}` as ServerId)) as number
  return { chunkHandle: row.chunkHandle, holders, other }
}

t.test('a report of a committed chunk with other bytes adds no replica and is deleted', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const { chunkHandle, holders, other } = await committedChunk(m, '/f', 1000)
  t.equal(holders.length, 2)

  // A fourth copy with the committed length but another CRC (a replayed write token's foreign bytes).
  let reply = await heartbeat(m, other, { added: [{ chunkHandle, version: 1, lengthBytes: 1000, crc32: 12345 }] })
  t.same(replicaServers(m, chunkHandle), holders, 'no replica row for the foreign copy')
  t.same(reply.commands, [{ type: 'delete', chunkHandle, version: 1 }], 'and it is deleted')
  // Another length, no CRC at all (a chunkserver of an older release): the same.
  reply = await heartbeat(m, other, { added: [{ chunkHandle, version: 1, lengthBytes: 999 }] })
  t.same(replicaServers(m, chunkHandle), holders)
  t.same(reply.commands, [{ type: 'delete', chunkHandle, version: 1 }])
  // In a full report too.
  reply = await heartbeat(m, other, { fullReport: [{ chunkHandle, version: 1, lengthBytes: 1000, crc32: 8 }] })
  t.same(replicaServers(m, chunkHandle), holders)
  t.same(reply.commands, [{ type: 'delete', chunkHandle, version: 1 }])

  // A holder whose copy turns out to differ loses its row and the copy.
  const holder = Number.parseInt((holders[0] as string).slice(3), 16)
  reply = await heartbeat(m, holder, { fullReport: [{ chunkHandle, version: 1, lengthBytes: 1000, crc32: 9 }] })
  t.same(replicaServers(m, chunkHandle), [holders[1]], 'its row is removed')
  t.same(reply.commands, [{ type: 'delete', chunkHandle, version: 1 }])

  // The committed bytes (crc32 7, or no CRC and the right length) count.
  reply = await heartbeat(m, other, { added: [{ chunkHandle, version: 1, lengthBytes: 1000, crc32: 7 }] })
  t.same(reply.commands, [])
  t.ok(replicaServers(m, chunkHandle).includes(`cs-${other.toString(16).padStart(12, '0')}`), 'a copy of the committed bytes is a replica')
  reply = await heartbeat(m, holder, { added: [{ chunkHandle, version: 1, lengthBytes: 1000 }] })
  t.same(reply.commands, [])
  t.equal(replicaServers(m, chunkHandle).length, 3)
})

t.test('a chunk still being written is taken whatever its CRC', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const w = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/w', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  const a = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId: w.inodeId, leaseId: w.leaseId, chunkIndex: 0 })).body
  const first = Number.parseInt((a.pipeline[0] as p.ChunkserverAddress).serverId.slice(3), 16)
  const reply = await heartbeat(m, first, { added: [{ chunkHandle: a.chunkHandle, version: 1, lengthBytes: 10, crc32: 1 }] })
  t.same(reply.commands, [])
  t.same(replicaServers(m, a.chunkHandle), [(a.pipeline[0] as p.ChunkserverAddress).serverId])
})
