// Proves placement picks distinct, live, least-loaded servers with room (most free bytes breaking ties),
// honours exclusions, refuses with GRN_NO_CHUNKSERVERS when too few are eligible, and — with the registry's
// decaying allocation counter — spreads 50 back-to-back small puts evenly before any heartbeat reports them.
import t from 'tap'
import { GranaryError } from '../../../shared/errors.js'
import type { ServerId } from '../../../shared/ids.js'
import { choosePipeline, type PlacementCandidate } from '../../../master/placement.js'
import { Registry } from '../../../master/registry.js'
import { heartbeatBody, serverIdOf } from './fixture.js'

const candidate = (i: number, load: number, freeBytes: number): PlacementCandidate => ({ serverId: serverIdOf(i), url: `http://127.0.0.1:${7000 + i}`, load, freeBytes })
const ids = (pipeline: Array<{ serverId: ServerId }>): string[] => pipeline.map((s) => s.serverId)

t.test('least loaded first, then most free bytes, then serverId', async (t) => {
  const candidates = [candidate(1, 2, 500), candidate(2, 0, 100), candidate(3, 0, 900), candidate(4, 1, 10_000), candidate(5, 0, 900)]
  t.same(ids(choosePipeline(candidates, { replication: 3, chunkSizeBytes: 10, excludeServerIds: [] })), [serverIdOf(3), serverIdOf(5), serverIdOf(2)])
  t.same(ids(choosePipeline(candidates, { replication: 2, chunkSizeBytes: 10, excludeServerIds: [serverIdOf(3)] })), [serverIdOf(5), serverIdOf(2)], 'exclusions honoured')
  t.same(ids(choosePipeline(candidates, { replication: 2, chunkSizeBytes: 600, excludeServerIds: [] })), [serverIdOf(3), serverIdOf(5)], 'servers without room for a chunk are skipped')
  t.same(choosePipeline([candidate(1, 0, 50)], { replication: 1, chunkSizeBytes: 50, excludeServerIds: [] }), [{ serverId: serverIdOf(1), url: 'http://127.0.0.1:7001' }], 'exactly enough room is enough')
})

t.test('too few eligible servers → GRN_NO_CHUNKSERVERS [replication, eligibleCount]', async (t) => {
  const candidates = [candidate(1, 0, 100), candidate(1, 0, 100), candidate(2, 0, 5), candidate(3, 0, 100)]
  const err = t.throws(() => choosePipeline(candidates, { replication: 3, chunkSizeBytes: 10, excludeServerIds: [serverIdOf(3)] })) as GranaryError
  t.equal(err.code, 'GRN_NO_CHUNKSERVERS')
  t.equal(err.message, 'need 3 live chunkservers, have 1', 'a duplicate candidate and a full server do not count')
  t.equal(err.retryable, true)
  t.throws(() => choosePipeline([], { replication: 1, chunkSizeBytes: 1, excludeServerIds: [] }), { code: 'GRN_NO_CHUNKSERVERS' })
})

t.test('50 concurrent small puts spread across servers, and the counter decays', async (t) => {
  const registry = new Registry({ deadAfterMs: 10_000, allocationHalfLifeMs: 1000 })
  const nowMs = 1_000_000
  for (let i = 1; i <= 5; i++) {
    registry.heartbeat(heartbeatBody(i, { freeBytes: 1e12 + i * 1000 }), nowMs)
    registry.get(serverIdOf(i))!.fullReportSeen = true
  }
  const counts = new Map<string, number>()
  for (let put = 0; put < 50; put++) {
    const pipeline = choosePipeline(registry.placementCandidates(nowMs), { replication: 3, chunkSizeBytes: 1, excludeServerIds: [] })
    registry.noteAllocation(pipeline.map((s) => s.serverId), nowMs)
    for (const s of pipeline) counts.set(s.serverId, (counts.get(s.serverId) ?? 0) + 1)
  }
  t.same([...counts.values()].sort(), [30, 30, 30, 30, 30], '150 replicas over 5 servers, 30 each')
  t.ok(registry.placementCandidates(nowMs).every((c) => c.load === 30), 'right after: load 30 each')
  const later = registry.placementCandidates(nowMs + 9_999)
  t.equal(later.length, 5)
  t.ok(later.every((c) => c.load > 0 && c.load < 0.05), 'ten half-lives later the allocations have decayed away')
  t.same(registry.newlyDead(nowMs + 9_999), [])
  t.same(registry.placementCandidates(nowMs + 10_000), [], 'all dead after deadAfterMs without a heartbeat')
  t.same(registry.newlyDead(nowMs + 10_000).map((s) => s.serverId), [1, 2, 3, 4, 5].map(serverIdOf))
  t.same(registry.newlyDead(nowMs + 20_000), [], 'each death is reported once')
})
