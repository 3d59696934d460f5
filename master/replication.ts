// Re-replication: the pure planner. Given the chunks whose live replica count differs from their file's
// replication, the live placement candidates and the copies already in flight, it decides this tick's
// actions: a `replicate` command for a target (the target copies from a live source) or a `trim` of an
// extra replica (a dead server came back). Chunks with the fewest live replicas go first, so a chunk with one
// copy left is saved before one with two. Work is bounded per tick (actionsMax) and per server (copies a
// server takes part in at once, as source or target). master/replicator.ts runs it on the master's clock.
import type { ChunkHandle, ServerId } from '../shared/ids.js'
import type { ChunkserverAddress } from '../shared/protocol.js'

export interface ChunkNeed {
  chunkHandle: ChunkHandle
  version: number
  lengthBytes: number
  crc32: number
  replication: number          // wanted, from the file
  live: ChunkserverAddress[]   // live servers holding this version, in a stable order
  holders: ServerId[]          // every server with a replica row for the handle (live or not, any version)
}

export interface TargetCandidate { serverId: ServerId, url: string, freeBytes: number, load: number }

export interface CopyInFlight { chunkHandle: ChunkHandle, targetId: ServerId, sourceId: ServerId, startedAtMs: number }

export type ReplicationAction =
  | { type: 'replicate', chunk: ChunkNeed, target: ChunkserverAddress, sources: ChunkserverAddress[] }
  | { type: 'trim', chunk: ChunkNeed, serverId: ServerId }

export interface PlanBounds { actionsMax: number, perServerMax: number }

// Under-replicated first, by live count ascending (missing chunks — none live — cannot be copied and are
// left out); then over-replicated ones. Ties by handle so a plan is reproducible.
export function orderNeeds (needs: readonly ChunkNeed[]): ChunkNeed[] {
  return needs
    .filter((n) => n.live.length > 0 && n.live.length !== n.replication)
    .sort((a, b) => {
      const overA = a.live.length > a.replication ? 1 : 0
      const overB = b.live.length > b.replication ? 1 : 0
      if (overA !== overB) return overA - overB
      if (a.live.length !== b.live.length) return a.live.length - b.live.length
      return a.chunkHandle < b.chunkHandle ? -1 : a.chunkHandle > b.chunkHandle ? 1 : 0
    })
}

export function planReplication (needs: readonly ChunkNeed[], candidates: readonly TargetCandidate[], inFlight: readonly CopyInFlight[], bounds: PlanBounds): ReplicationAction[] {
  const busy = new Map<ServerId, number>()        // copies each server takes part in
  const copying = new Map<ChunkHandle, Set<ServerId>>()
  for (const copy of inFlight) {
    busy.set(copy.targetId, (busy.get(copy.targetId) ?? 0) + 1)
    busy.set(copy.sourceId, (busy.get(copy.sourceId) ?? 0) + 1)
    const targets = copying.get(copy.chunkHandle) ?? new Set<ServerId>()
    targets.add(copy.targetId)
    copying.set(copy.chunkHandle, targets)
  }
  const free = new Map(candidates.map((c) => [c.serverId, c.freeBytes]))
  const actions: ReplicationAction[] = []
  for (const chunk of orderNeeds(needs)) {
    if (actions.length >= bounds.actionsMax) break
    if (chunk.live.length > chunk.replication) {
      actions.push(...trims(chunk, free, bounds.actionsMax - actions.length))
      continue
    }
    const pending = copying.get(chunk.chunkHandle) ?? new Set<ServerId>()
    let missing = chunk.replication - chunk.live.length - pending.size
    while (missing > 0 && actions.length < bounds.actionsMax) {
      const source = pickSource(chunk.live, busy, bounds.perServerMax)
      const target = pickTarget(chunk, candidates, pending, busy, free, bounds.perServerMax)
      if (source === undefined || target === undefined) break
      busy.set(source.serverId, (busy.get(source.serverId) ?? 0) + 1)
      busy.set(target.serverId, (busy.get(target.serverId) ?? 0) + 1)
      free.set(target.serverId, (free.get(target.serverId) ?? 0) - chunk.lengthBytes)
      pending.add(target.serverId)
      const sources = [source, ...chunk.live.filter((s) => s.serverId !== source.serverId)]
      actions.push({ type: 'replicate', chunk, target: { serverId: target.serverId, url: target.url }, sources })
      missing--
    }
  }
  return actions
}

// The extra replicas go from the fullest servers (least free), so space evens out.
function trims (chunk: ChunkNeed, free: Map<ServerId, number>, countMax: number): ReplicationAction[] {
  const extra = Math.min(chunk.live.length - chunk.replication, countMax)
  const byFullest = [...chunk.live].sort((a, b) => {
    const fa = free.get(a.serverId) ?? 0
    const fb = free.get(b.serverId) ?? 0
    if (fa !== fb) return fa - fb
    return a.serverId < b.serverId ? -1 : 1
  })
  return byFullest.slice(0, extra).map((s) => ({ type: 'trim', chunk, serverId: s.serverId }))
}

function pickSource (live: readonly ChunkserverAddress[], busy: Map<ServerId, number>, perServerMax: number): ChunkserverAddress | undefined {
  let best: ChunkserverAddress | undefined
  for (const server of live) {
    const load = busy.get(server.serverId) ?? 0
    if (load >= perServerMax) continue
    if (best === undefined || load < (busy.get(best.serverId) ?? 0)) best = server
  }
  return best
}

// A live server without any replica of the handle, not already receiving it, under its copy bound and with
// room for the chunk: the least busy, then least loaded, then most free.
function pickTarget (chunk: ChunkNeed, candidates: readonly TargetCandidate[], pending: Set<ServerId>, busy: Map<ServerId, number>,
  free: Map<ServerId, number>, perServerMax: number): TargetCandidate | undefined {
  const holders = new Set(chunk.holders)
  const eligible = candidates.filter((c) => !holders.has(c.serverId) && !pending.has(c.serverId) &&
    (busy.get(c.serverId) ?? 0) < perServerMax && (free.get(c.serverId) ?? 0) >= chunk.lengthBytes)
  eligible.sort((a, b) => {
    const busyA = busy.get(a.serverId) ?? 0
    const busyB = busy.get(b.serverId) ?? 0
    if (busyA !== busyB) return busyA - busyB
    if (a.load !== b.load) return a.load - b.load
    const freeA = free.get(a.serverId) ?? 0
    const freeB = free.get(b.serverId) ?? 0
    if (freeA !== freeB) return freeB - freeA
    return a.serverId < b.serverId ? -1 : 1
  })
  return eligible[0]
}
