// Proves the re-replication planner's rules on plain data: chunks with fewer live replicas go first, missing
// chunks (none live) are skipped, a target never already holds the handle, work stops at the per-tick and
// per-server bounds, copies in flight count toward both, and an over-replicated chunk loses its extra
// replica from the fullest server.
import t from 'tap'
import type { ChunkHandle, ServerId } from '../../../shared/ids.js'
import { orderNeeds, planReplication, type ChunkNeed, type TargetCandidate } from '../../../master/replication.js'

const sid = (n: number): ServerId => `cs-${String(n).padStart(12, '0')}` as ServerId
const handle = (n: number): ChunkHandle => n.toString(16).padStart(16, '0') as ChunkHandle
const addr = (n: number) => ({ serverId: sid(n), url: `http://127.0.0.1:${9100 + n}` })
const MiB = 1024 * 1024

function need (n: number, live: number[], replication = 3, holders: number[] = live): ChunkNeed {
  return { chunkHandle: handle(n), version: 1, lengthBytes: MiB, crc32: 7, replication, live: live.map(addr), holders: holders.map(sid) }
}
function candidates (...ns: number[]): TargetCandidate[] {
  return ns.map((n) => ({ ...addr(n), freeBytes: 100 * MiB, load: 0 }))
}

t.test('fewest live replicas first; missing and healthy chunks are left out', async (t) => {
  const ordered = orderNeeds([need(1, [1, 2]), need(2, [1]), need(3, []), need(4, [1, 2, 3]), need(5, [1, 2, 3, 4]), need(6, [3])])
  t.same(ordered.map((n) => n.chunkHandle), [handle(2), handle(6), handle(1), handle(5)])
})

t.test('a chunk with one live replica gets two copies before a chunk with two gets one', async (t) => {
  const actions = planReplication([need(1, [1, 2]), need(2, [1])], candidates(1, 2, 3, 4, 5), [], { actionsMax: 2, perServerMax: 10 })
  t.equal(actions.length, 2)
  t.ok(actions.every((a) => a.type === 'replicate' && a.chunk.chunkHandle === handle(2)))
  const targets = actions.map((a) => a.type === 'replicate' ? a.target.serverId : null)
  t.equal(new Set(targets).size, 2, 'two distinct targets')
  t.notOk(targets.includes(sid(1)), 'never the server that holds it')
})

t.test('targets exclude every holder, even dead ones and old versions', async (t) => {
  const actions = planReplication([need(1, [1], 2, [1, 2, 3])], candidates(1, 2, 3, 4), [], { actionsMax: 10, perServerMax: 10 })
  t.equal(actions.length, 1)
  const action = actions[0]
  t.equal(action?.type === 'replicate' ? action.target.serverId : null, sid(4))
  t.same(action?.type === 'replicate' ? action.sources.map((s) => s.serverId) : null, [sid(1)])
})

t.test('per-server bound: a source or target busy with copies takes no more', async (t) => {
  const needs = [need(1, [1]), need(2, [1]), need(3, [1])]
  const actions = planReplication(needs, candidates(1, 2, 3, 4, 5, 6, 7), [], { actionsMax: 100, perServerMax: 2 })
  t.equal(actions.length, 2, 'server 1 is the only source and takes part in two copies at most')
  const inFlight = [{ chunkHandle: handle(9), targetId: sid(2), sourceId: sid(1), startedAtMs: 0 }]
  const more = planReplication(needs, candidates(1, 2, 3), inFlight, { actionsMax: 100, perServerMax: 2 })
  t.equal(more.length, 1, 'one copy already in flight through server 1 leaves room for one')
  t.equal(more[0]?.type === 'replicate' ? more[0].target.serverId : null, sid(3), 'server 2 is busy as a target')
})

t.test('copies in flight count toward the replication wanted', async (t) => {
  const inFlight = [{ chunkHandle: handle(1), targetId: sid(3), sourceId: sid(1), startedAtMs: 0 }]
  t.same(planReplication([need(1, [1, 2])], candidates(1, 2, 3, 4), inFlight, { actionsMax: 10, perServerMax: 10 }), [])
})

t.test('per-tick bound and room for the chunk', async (t) => {
  const needs = Array.from({ length: 50 }, (_, i) => need(i + 1, [1, 2]))
  t.equal(planReplication(needs, candidates(1, 2, 3, 4, 5, 6), [], { actionsMax: 7, perServerMax: 1000 }).length, 7)
  const tight = [{ ...addr(3), freeBytes: MiB - 1, load: 0 }]
  t.same(planReplication([need(1, [1, 2])], tight, [], { actionsMax: 10, perServerMax: 10 }), [], 'a server without room is no target')
})

t.test('an over-replicated chunk loses its extra replica from the fullest server', async (t) => {
  const cands = [{ ...addr(1), freeBytes: 50 * MiB, load: 0 }, { ...addr(2), freeBytes: 5 * MiB, load: 0 }, { ...addr(3), freeBytes: 90 * MiB, load: 0 }, { ...addr(4), freeBytes: 70 * MiB, load: 0 }]
  const actions = planReplication([need(1, [1, 2, 3, 4])], cands, [], { actionsMax: 10, perServerMax: 10 })
  t.same(actions.map((a) => a.type === 'trim' ? a.serverId : null), [sid(2)])
})
