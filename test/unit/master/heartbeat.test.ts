// Proves heartbeat handling: first contact and a restarted master ask for a full report; the full report is
// reconciled (unknown chunk → delete command, older version → delete command, same version without a row →
// replica row, rows the report lacks → removed, newer version → left alone); deltas do the same per chunk;
// commands are bounded per reply, and a reply that leaves some queued says moreCommands (never in safe mode,
// when none go out); a newer term is refused; a moved server is re-registered. A master's reply carries its
// lease fields (role, instanceId, sentAtMs, in-sync set) and asks for an echo until one renews (lease.test.ts).
import t from 'tap'
import type { ChunkHandle } from '../../../shared/ids.js'
import { commandsPerHeartbeatMax, commandsQueuedPerServerMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { addServers, dumpTables, heartbeat, heartbeatBody, serverIdOf, smallChunkBytes, startMs, startTestMaster, writeFile, type TestMaster } from './fixture.js'

// The n-th handle a term-1 master makes (shared/ids.ts: the term in the high 32 bits).
const handle = (n: number): ChunkHandle => (2 ** 32 + n - 1).toString(16).padStart(16, '0') as ChunkHandle
const replicaRows = (m: TestMaster, serverId: string): unknown[] =>
  m.db.prepare('SELECT chunkHandle, version FROM replicas WHERE serverId = ? ORDER BY chunkHandle').all(serverId)

t.test('first contact registers the server and asks for a full report', async (t) => {
  const m = await startTestMaster(t)
  const first = await heartbeat(m, 1)
  // A master's reply carries its lease fields; nothing echoed yet, so it asks for an echo at once.
  t.strictSame(first, {
    term: 1, heartbeatIntervalMs: m.config.heartbeatIntervalMs, needFullReport: true, commands: [],
    role: 'master', instanceId: m.lease.instanceId, isrEpoch: 0, isr: [], leaseWanted: true, sentAtMs: m.clock.nowMs, operatorKeys: []
  }, 'operatorKeys: no admin key in this test master (test/unit/master/keys.test.ts has them)')
  t.same(m.db.prepare('SELECT * FROM servers').all(), [{ serverId: serverIdOf(1), url: 'http://127.0.0.1:7001' }])
  const seq = m.queue.seq
  m.clock.nowMs += 1000
  const echoed = await heartbeat(m, 1)
  t.equal(echoed.needFullReport, true, 'still asking until it arrives')
  t.equal(echoed.leaseWanted, undefined, 'the echo of its own reply renewed the lease: no echo is asked for')
  t.equal(echoed.sentAtMs, startMs + 1000, "sentAtMs is the master's clock when it replied")
  t.equal(echoed.instanceId, first.instanceId, 'the same process, the same instanceId')
  t.equal(m.queue.seq, seq, 'a plain heartbeat writes nothing')
  t.equal((await heartbeat(m, 1, { fullReport: [] })).needFullReport, false)
  t.equal((await heartbeat(m, 1)).needFullReport, false)
  await heartbeat(m, 1, { url: 'http://127.0.0.1:7100' })
  t.same(m.db.prepare('SELECT url FROM servers').pluck().all(), ['http://127.0.0.1:7100'], 'a moved server is re-registered')
  t.equal(m.queue.seq, seq + 1)
})

t.test('full report reconciliation', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const f = await writeFile(m, '/f', [smallChunkBytes, smallChunkBytes, 9])   // chunks 1, 2, 3 on servers 1 and 2
  t.equal(f.chunkCount, 3)
  // A retried pipeline moves chunk 4 (still being written) to version 2.
  const w = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/w', replication: 2, chunkSizeBytes: smallChunkBytes })).body
  await m.call('POST', '/fs/allocate', { inodeId: w.inodeId, leaseId: w.leaseId, chunkIndex: 0 })
  await m.call('POST', '/fs/allocate', { inodeId: w.inodeId, leaseId: w.leaseId, chunkIndex: 0 })
  t.same(m.db.prepare('SELECT chunkHandle, version, state FROM chunks ORDER BY chunkHandle').all().slice(3), [{ chunkHandle: handle(4), version: 2, state: 'allocated' }])
  m.registry.takeCommands(serverIdOf(1), 100)

  const before = dumpTables(m.db, ['chunks', 'inodes'])
  const reply = await heartbeat(m, 1, {
    fullReport: [
      { chunkHandle: handle(1), version: 1, lengthBytes: smallChunkBytes },   // known, has a row: nothing
      { chunkHandle: handle(2), version: 1, lengthBytes: smallChunkBytes },   // known, has a row: nothing
      // handle 3 missing: its row goes
      { chunkHandle: handle(4), version: 1, lengthBytes: 5 },                 // stale: delete
      { chunkHandle: handle(0x77), version: 3, lengthBytes: 5 }               // unknown: delete
    ]
  })
  t.same(reply.commands, [
    { type: 'delete', chunkHandle: handle(4), version: 1 },
    { type: 'delete', chunkHandle: handle(0x77), version: 3 }
  ])
  t.same(replicaRows(m, serverIdOf(1)), [{ chunkHandle: handle(1), version: 1 }, { chunkHandle: handle(2), version: 1 }], 'the row the report lacks is removed')
  t.same(dumpTables(m.db, ['chunks', 'inodes']), before, 'reconciliation never touches chunks or the namespace')

  // Same version, no row (a chunk being written counts) → replica rows; a newer version is left alone.
  const again = await heartbeat(m, 1, {
    fullReport: [
      { chunkHandle: handle(1), version: 1, lengthBytes: smallChunkBytes },
      { chunkHandle: handle(2), version: 1, lengthBytes: smallChunkBytes },
      { chunkHandle: handle(3), version: 1, lengthBytes: 9 },
      { chunkHandle: handle(4), version: 2, lengthBytes: 9 }
    ]
  })
  t.same(again.commands, [])
  t.same(replicaRows(m, serverIdOf(1)).map((r) => (r as { chunkHandle: string }).chunkHandle), [handle(1), handle(2), handle(3), handle(4)])
  const newer = await heartbeat(m, 2, { fullReport: [{ chunkHandle: handle(3), version: 5, lengthBytes: 9 }] })
  t.same(newer.commands, [], 'a newer version than the master knows is never deleted')
  t.same(replicaRows(m, serverIdOf(2)), [], 'nor recorded, and its v1 row goes; server 2 reported none of its other chunks')
  const opened = (await m.call<p.OpenReply>('GET', '/fs/open', { path: '/f' })).body
  t.same(opened.chunks.map((c) => c.replicas.map((r) => r.serverId)), [[serverIdOf(1)], [serverIdOf(1)], [serverIdOf(1)]])
  const report = (await m.call<p.ClusterReport>('GET', '/cluster/report')).body
  t.match(report, { fileCount: 1, chunkCount: 4, underReplicatedChunks: 3, missingChunks: 0 })
})

t.test('deltas: added and removed', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await writeFile(m, '/f', [9])
  await addServers(m, 1, 3)
  const seq = m.queue.seq
  const reply = await heartbeat(m, 3, {
    added: [{ chunkHandle: handle(1), version: 1, lengthBytes: 9 }, { chunkHandle: handle(9), version: 1, lengthBytes: 9 }],
    removed: [{ chunkHandle: handle(8), version: 1, lengthBytes: 9 }]
  })
  t.same(reply.commands, [{ type: 'delete', chunkHandle: handle(9), version: 1 }], 'an unknown added chunk is deleted')
  t.same(replicaRows(m, serverIdOf(3)), [{ chunkHandle: handle(1), version: 1 }])
  t.equal(m.queue.seq, seq + 1, 'one heartbeat, one batch op')
  await heartbeat(m, 3, { removed: [{ chunkHandle: handle(1), version: 1, lengthBytes: 9 }] })
  t.same(replicaRows(m, serverIdOf(3)), [])
  t.equal(m.db.prepare('SELECT count(*) FROM replicas').pluck().get(), 2, "the other servers' rows stay")
})

t.test('commands are bounded per reply; a newer term is refused', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 1)
  const fullReport = Array.from({ length: commandsPerHeartbeatMax + 5 }, (_, i) => ({ chunkHandle: handle(0x1000 + i), version: 1, lengthBytes: 1 }))
  const first = await heartbeat(m, 1, { fullReport })
  t.equal(first.commands.length, commandsPerHeartbeatMax)
  t.equal(first.moreCommands, true, 'five are left: the server is told to come back at once')
  t.equal(m.registry.queuedCommandCount(serverIdOf(1)), 5)
  const second = await heartbeat(m, 1)
  t.same(second.commands.map((c) => c.chunkHandle), fullReport.slice(commandsPerHeartbeatMax).map((c) => c.chunkHandle))
  t.equal(second.moreCommands, undefined, 'drained: nothing more to fetch')
  t.same((await heartbeat(m, 1)).commands, [])

  const res = await m.call('POST', '/chunkservers/heartbeat', heartbeatBody(1, { term: 2 }))
  t.match(res, { statusCode: 409, body: { code: 'GRN_STALE_TERM', message: 'term 1 is older than 2' } })
  const bad = await m.call('POST', '/chunkservers/heartbeat', heartbeatBody(1, { serverId: 'nope' as never }))
  t.equal(bad.body.code, 'GRN_INVALID_ARGUMENT')
})

t.test('a server whose delete queue overflows is asked for a full report instead', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 1)
  const state = m.registry.get(serverIdOf(1))!
  for (let i = 0; i < commandsQueuedPerServerMax; i++) m.registry.queueDelete(serverIdOf(1), handle(i + 1), 1)
  m.registry.queueDelete(serverIdOf(1), handle(1), 2)
  t.equal(state.commands.size, commandsQueuedPerServerMax, 'a repeat for a queued chunk replaces its command')
  t.equal(state.fullReportSeen, true)
  m.registry.queueDelete(serverIdOf(1), handle(commandsQueuedPerServerMax + 1), 1)
  t.equal(state.commands.size, 0, 'past the bound the queue is dropped')
  t.equal((await heartbeat(m, 1)).needFullReport, true, 'and reconciliation will find the same chunks again')
  m.registry.queueDelete(serverIdOf(9), handle(1), 1)
  t.equal(m.registry.get(serverIdOf(9)), undefined, 'nothing is queued for a server not heard from')
})

t.test('in safe mode no command goes out and no follow-up is asked for', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 2)
  await m1.close()
  const m2 = await startTestMaster(t, { dir })
  const fullReport = Array.from({ length: commandsPerHeartbeatMax + 5 }, (_, i) => ({ chunkHandle: handle(0x1000 + i), version: 1, lengthBytes: 1 }))
  const held = await heartbeat(m2, 1, { fullReport })
  t.same(held.commands, [], 'server 2 has not reported: deletes wait')
  t.equal(held.moreCommands, undefined, 'and the server is not asked to spin on an empty reply')
  t.equal(m2.registry.queuedCommandCount(serverIdOf(1)), commandsPerHeartbeatMax + 5)
  await heartbeat(m2, 2, { fullReport: [] })
  const sent = await heartbeat(m2, 1)
  t.equal(sent.commands.length, commandsPerHeartbeatMax)
  t.equal(sent.moreCommands, true)
})
