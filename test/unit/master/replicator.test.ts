// Proves the master's re-replication loop end to end through its routes, with fake chunkservers and a
// hand-moved clock: a holder that stops heartbeating is dead, fsck reports its chunks under-replicated, a
// tick queues a `replicate` command for a live non-holder (sources: the live holder, a read token, the
// committed CRC) that rides on the target's heartbeat reply, the target's `added` report makes the chunk
// healthy again; a returning holder makes it over-replicated and a tick trims one replica; a corrupt report
// drops the replica row and queues a delete only while another live replica exists; nothing happens
// while the master is in safe mode; and a silent server's chunks are planned the moment it turns dead.
import t from 'tap'
import type * as p from '../../../shared/protocol.js'
import { verifyToken } from '../../../shared/token.js'
import { addServers, heartbeat, renewLease, serverIdOf, startTestMaster, writeFile, type TestMaster } from './fixture.js'

async function fsck (m: TestMaster, path = '/'): Promise<p.FsckReply> {
  const res = await m.call<p.FsckReply>('GET', '/fs/fsck', { path })
  if (res.statusCode !== 200) throw new Error(`fsck: ${JSON.stringify(res.body)}`)
  return res.body
}

async function replicaServers (m: TestMaster, path: string): Promise<string[]> {
  const open = await m.call<p.OpenReply>('GET', '/fs/open', { path })
  return (open.body.chunks[0]?.replicas ?? []).map((r) => r.serverId).sort()
}

// Moves time past deadAfterMs while the servers in `alive` keep heartbeating.
async function passDeadTimeout (m: TestMaster, alive: number[]): Promise<void> {
  for (let step = 0; step < 11; step++) {
    m.clock.nowMs += 1000
    for (const i of alive) await heartbeat(m, i)
  }
}

t.test('a dead holder: under-replicated, a replicate command for a live target, healthy after its report', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 4)
  await writeFile(m, '/df', [1000], { replication: 2 })
  const holders = await replicaServers(m, '/df')
  t.equal(holders.length, 2)
  t.equal((await fsck(m)).underReplicatedChunks, 0)
  const holderIndex = [1, 2, 3, 4].map((i) => ({ i, id: serverIdOf(i) }))
  const dead = holderIndex.find((s) => s.id === holders[0]) as { i: number }
  const alive = [1, 2, 3, 4].filter((i) => i !== dead.i)
  await passDeadTimeout(m, alive)
  const report = await fsck(m)
  t.equal(report.underReplicatedChunks, 1, 'the chunk is under-replicated once its holder is dead')
  t.equal(report.files[0]?.path, '/df')
  t.equal(report.files[0]?.underReplicated[0]?.liveReplicas, 1)

  await m.replicator.tick()
  t.equal(m.replicator.stats().inFlight, 1, 'one copy in flight')
  let command: p.ChunkserverCommand | undefined
  let targetIndex = -1
  for (const i of alive) {
    const reply = await heartbeat(m, i)
    const found = reply.commands.find((c) => c.type === 'replicate')
    if (found !== undefined) { command = found; targetIndex = i }
  }
  if (command?.type !== 'replicate') { t.fail('no replicate command'); return }
  t.notOk(holders.includes(serverIdOf(targetIndex)), 'the target holds no replica')
  t.same(command.sources.map((s) => s.serverId), [holders[1]], 'copied from the live holder')
  t.equal(command.crc32, 7, 'the committed CRC')
  t.equal(command.lengthBytes, 1000)
  const claims = verifyToken(m.secret, command.token, m.clock.nowMs)
  t.equal(claims.mode, 'read')
  t.equal(claims.chunkHandle, command.chunkHandle)

  await m.replicator.tick()
  t.equal(m.replicator.stats().inFlight, 1, 'not planned twice while in flight')
  await heartbeat(m, targetIndex, { added: [{ chunkHandle: command.chunkHandle, version: command.version, lengthBytes: 1000 }] })
  t.equal((await fsck(m)).underReplicatedChunks, 0, 'healthy again')
  await m.replicator.tick()
  t.same(m.replicator.stats(), { inFlight: 0, replicated: 1, trimmed: 0 })

  // The dead holder returns: three live replicas for replication 2 → one trimmed.
  await heartbeat(m, dead.i)
  await m.replicator.tick()
  t.equal(m.replicator.stats().trimmed, 1)
  t.equal((await replicaServers(m, '/df')).length, 2, 'one replica row removed')
  let deletes = 0
  for (const i of [1, 2, 3, 4]) deletes += (await heartbeat(m, i)).commands.filter((c) => c.type === 'delete').length
  t.equal(deletes, 1, 'its holder is told to delete it')
})

t.test('a corrupt replica: its row goes; the file is deleted only while another live copy exists', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  await writeFile(m, '/cf', [500], { replication: 2 })
  const open = await m.call<p.OpenReply>('GET', '/fs/open', { path: '/cf' })
  const chunk = open.body.chunks[0] as p.ChunkLocation
  const [a, b] = chunk.replicas.map((r) => Number.parseInt(r.serverId.slice(3), 16))
  const stored = { chunkHandle: chunk.chunkHandle, version: chunk.version, lengthBytes: 500 }
  const first = await heartbeat(m, a as number, { corrupt: [stored] })
  t.same(first.commands, [{ type: 'delete', chunkHandle: chunk.chunkHandle, version: chunk.version }], 'told to delete its bad copy')
  t.same(await replicaServers(m, '/cf'), [serverIdOf(b as number)], 'the corrupt replica is no longer handed out')
  const report = await m.call<p.ClusterReport>('GET', '/cluster/report')
  t.equal(report.body.corruptReplicas, 1, 'the report counts the corrupt replica')
  t.equal(report.body.servers.find((s) => s.serverId === serverIdOf(a as number))?.corruptReplicas, 1)
  // The last live copy is corrupt too: its row goes, its file stays.
  t.same((await heartbeat(m, b as number, { corrupt: [stored] })).commands, [], 'the last copy is not deleted')
  t.equal((await fsck(m)).missingChunks, 1)
})

// A corrupt replica reported and deleted between two ticks: its server's corrupt count is back to 0 by the next
// tick, so a signature of counts looks unchanged, but the replica row is gone. The next tick must plan the copy,
// not the 30 s rescan (a bit-rot repair took ~30 s instead of ~1 s whenever the report fell between ticks).
t.test('a replica row removed between two ticks is planned at the next tick, not at the rescan', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  await writeFile(m, '/rf', [500], { replication: 3 })
  await m.replicator.tick()
  t.equal(m.replicator.neededCount, 0, 'healthy: nothing to plan')
  const open = await m.call<p.OpenReply>('GET', '/fs/open', { path: '/rf' })
  const chunk = open.body.chunks[0] as p.ChunkLocation
  const rotten = Number.parseInt((chunk.replicas[0] as p.ChunkserverAddress).serverId.slice(3), 16)
  const stored = { chunkHandle: chunk.chunkHandle, version: chunk.version, lengthBytes: 500 }
  t.same((await heartbeat(m, rotten, { corrupt: [stored] })).commands, [{ type: 'delete', chunkHandle: chunk.chunkHandle, version: chunk.version }], 'the bad copy is to be deleted')
  await heartbeat(m, rotten, { corrupt: [] })   // deleted: nothing corrupt any more, before the replicator ticked
  t.equal((await replicaServers(m, '/rf')).length, 2, 'two replicas left')
  m.clock.nowMs += 1000
  await m.replicator.tick()
  t.equal(m.replicator.stats().inFlight, 1, 'the copy is planned at once')
  const reply = await heartbeat(m, rotten)
  t.match(reply.commands, [{ type: 'replicate', chunkHandle: chunk.chunkHandle }], 'onto the server whose copy was bad, the only one without it')
})

t.test('safe mode: no copy is planned until every registered server has reported', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 4)
  await writeFile(m1, '/sf', [100], { replication: 2 })
  const open = await m1.call<p.OpenReply>('GET', '/fs/open', { path: '/sf' })
  const chunk = open.body.chunks[0] as p.ChunkLocation
  const holders = chunk.replicas.map((r) => Number.parseInt(r.serverId.slice(3), 16))
  await m1.close()
  const m2 = await startTestMaster(t, { dir })
  // One holder and both non-holders report; the other holder stays silent.
  const reporting = [1, 2, 3, 4].filter((i) => i !== holders[0])
  for (const i of reporting) {
    await heartbeat(m2, i, { fullReport: holders.includes(i) ? [{ chunkHandle: chunk.chunkHandle, version: chunk.version, lengthBytes: 100 }] : [] })
  }
  t.equal(await renewLease(m2, reporting), true, 'three of four echo: the restarted master holds its lease')
  t.equal((await fsck(m2)).underReplicatedChunks, 1, 'one live replica of two')
  await m2.replicator.tick()
  t.equal(m2.replicator.stats().inFlight, 0, 'nothing planned in safe mode')
  await passDeadTimeout(m2, reporting)
  await m2.replicator.tick()
  t.equal(m2.replicator.stats().inFlight, 1, 'planned once safe mode is over')
})

t.test('a silent server is planned for the moment it turns dead, not at the next tick', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 4)
  await writeFile(m, '/dt', [100], { replication: 2 })
  const holders = await replicaServers(m, '/dt')
  const dead = [1, 2, 3, 4].find((i) => serverIdOf(i) === holders[0]) as number
  const alive = [1, 2, 3, 4].filter((i) => i !== dead)
  const deathAtMs = m.clock.nowMs + m.config.deadAfterMs   // its last heartbeat was at nowMs
  t.equal(m.registry.nextDeathAtMs(m.clock.nowMs), deathAtMs, 'the earliest death among the live servers')
  while (m.clock.nowMs < deathAtMs - 1000) {
    m.clock.nowMs += 1000
    for (const i of alive) await heartbeat(m, i)
  }
  t.equal(m.registry.nextDeathAtMs(m.clock.nowMs), deathAtMs, 'still the silent one')
  m.clock.nowMs = deathAtMs - 150
  // From here the master's clock runs in real time; the periodic tick is a minute away.
  const realStartMs = Date.now()
  const fakeStartMs = m.clock.nowMs
  Object.defineProperty(m.clock, 'nowMs', { get: () => fakeStartMs + (Date.now() - realStartMs), configurable: true })
  m.replicator.start(60_000)
  t.teardown(async () => { await m.replicator.stop() })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(m.replicator.stats().inFlight, 0, 'nothing before the death')
  const deadline = Date.now() + 3000
  while (m.replicator.stats().inFlight === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.equal(m.replicator.stats().inFlight, 1, 'planned once dead')
  t.ok(Date.now() - realStartMs < 1000, `planned ${Date.now() - realStartMs} ms after start, at the death (150 ms), not at the tick (60 s)`)
  t.equal(m.registry.nextDeathAtMs(deathAtMs + 10_000), null, 'nobody left alive to die')
})
