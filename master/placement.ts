// Where a new chunk's replicas go: a pure function of the candidates, so it is tested without a cluster.
// Least loaded first (writes in progress plus the master's own recent allocations, which cover the gap
// until the next heartbeat reports them), then most free bytes, then serverId so ties are stable.
import { GranaryError } from '../shared/errors.js'
import type { ServerId } from '../shared/ids.js'
import type { ChunkserverAddress } from '../shared/protocol.js'

export interface PlacementCandidate {
  serverId: ServerId
  url: string
  freeBytes: number
  load: number          // activeWrites + decayed recent allocations (registry.ts)
}

export interface PlacementRequest {
  replication: number
  chunkSizeBytes: number
  excludeServerIds: readonly ServerId[]   // servers a failed pipeline went through
}

// Candidates must already be live; a server without room for a whole chunk is skipped.
export function choosePipeline (candidates: readonly PlacementCandidate[], request: PlacementRequest): ChunkserverAddress[] {
  const excluded = new Set(request.excludeServerIds)
  const seen = new Set<ServerId>()
  const eligible: PlacementCandidate[] = []
  for (const candidate of candidates) {
    if (excluded.has(candidate.serverId) || seen.has(candidate.serverId)) continue
    if (candidate.freeBytes < request.chunkSizeBytes) continue
    seen.add(candidate.serverId)
    eligible.push(candidate)
  }
  if (eligible.length < request.replication) throw new GranaryError('GRN_NO_CHUNKSERVERS', [request.replication, eligible.length])
  eligible.sort(byLoadThenFree)
  return eligible.slice(0, request.replication).map(({ serverId, url }) => ({ serverId, url }))
}

function byLoadThenFree (a: PlacementCandidate, b: PlacementCandidate): number {
  if (a.load !== b.load) return a.load - b.load
  if (a.freeBytes !== b.freeBytes) return b.freeBytes - a.freeBytes
  return a.serverId < b.serverId ? -1 : a.serverId > b.serverId ? 1 : 0
}
