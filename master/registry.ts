// The chunkservers as this master has seen them since it started: in memory only (liveness, space, load,
// pending commands). A restarted master starts empty and asks every server for a full report, so nothing
// here needs persisting; the durable part (serverId → url, replica rows) is in the database.
import { GranaryError } from '../shared/errors.js'
import type { ChunkHandle, ServerId } from '../shared/ids.js'
import { chunkserversMax, commandsQueuedPerServerMax } from '../shared/limits.js'
import type { ChunkserverCommand, HeartbeatRequest } from '../shared/protocol.js'
import type { PlacementCandidate } from './placement.js'

export interface ServerState {
  serverId: ServerId
  url: string
  capacityBytes: number
  freeBytes: number
  usedBytes: number
  chunkCount: number
  activeWrites: number
  corruptCount: number             // replicas the last heartbeat reported corrupt (master/corrupt.ts)
  lastHeartbeatMs: number
  fullReportSeen: boolean          // a full report reconciled since this master started
  registeredAsIs: boolean          // a shadow saw it heartbeat from the URL its database has: placeable at once if promoted
  deadLogged: boolean              // the alive → dead change was reported once
  recentAllocations: number        // decays by half every allocationHalfLifeMs
  recentAtMs: number
  commands: Map<ChunkHandle, ChunkserverCommand>   // one per chunk: a repeat replaces, so reports cannot pile up
}

export interface RegistryOptions { deadAfterMs: number, allocationHalfLifeMs: number }

export class Registry {
  #servers = new Map<ServerId, ServerState>()   // bounded by chunkserversMax
  #options: RegistryOptions
  #replicaChanges = 0                             // heartbeats whose report removed replica rows (replicator)

  constructor (options: RegistryOptions) {
    this.#options = options
  }

  // Updates (or creates) the server's entry from a heartbeat's numbers.
  heartbeat (request: HeartbeatRequest, nowMs: number): ServerState {
    let state = this.#servers.get(request.serverId)
    if (state === undefined) {
      if (this.#servers.size >= chunkserversMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['chunkservers', chunkserversMax])
      state = {
        serverId: request.serverId, url: request.url, capacityBytes: 0, freeBytes: 0, usedBytes: 0, chunkCount: 0, activeWrites: 0, corruptCount: 0,
        lastHeartbeatMs: nowMs, fullReportSeen: false, registeredAsIs: false, deadLogged: false, recentAllocations: 0, recentAtMs: nowMs, commands: new Map()
      }
      this.#servers.set(request.serverId, state)
    }
    if (state.url !== request.url) { state.fullReportSeen = false; state.registeredAsIs = false }   // moved: reconcile again from scratch
    state.url = request.url
    state.capacityBytes = request.capacityBytes
    state.freeBytes = request.freeBytes
    state.usedBytes = request.usedBytes
    state.chunkCount = request.chunkCount
    state.activeWrites = request.activeWrites
    state.corruptCount = request.corrupt?.length ?? 0
    state.lastHeartbeatMs = nowMs
    state.deadLogged = false
    return state
  }

  // A heartbeat's report removed replica rows, now committed: the replicator scans at its next tick. A count, not
  // a state, so two changes between ticks (a copy reported corrupt, then deleted) are never missed.
  noteReplicaChange (): void { this.#replicaChanges++ }
  get replicaChanges (): number { return this.#replicaChanges }

  get (serverId: ServerId): ServerState | undefined { return this.#servers.get(serverId) }
  all (): ServerState[] { return [...this.#servers.values()] }

  isAlive (serverId: ServerId, nowMs: number): boolean {
    const state = this.#servers.get(serverId)
    return state !== undefined && nowMs - state.lastHeartbeatMs < this.#options.deadAfterMs
  }

  liveServerIds (nowMs: number): ServerId[] {
    return this.all().filter((s) => this.isAlive(s.serverId, nowMs)).map((s) => s.serverId)
  }

  // When the next live server turns dead if it stays silent (null: none alive). Death is a moment the master
  // can compute, so the replicator runs right then instead of up to a tick later.
  nextDeathAtMs (nowMs: number): number | null {
    let earliestMs: number | null = null
    for (const state of this.#servers.values()) {
      if (!this.isAlive(state.serverId, nowMs)) continue
      const deathAtMs = state.lastHeartbeatMs + this.#options.deadAfterMs
      if (earliestMs === null || deathAtMs < earliestMs) earliestMs = deathAtMs
    }
    return earliestMs
  }

  // Live servers whose chunks the master has reconciled (so they are registered in the database too), or —
  // right after a shadow's promotion, before their full reports — that it saw registered as they are. New
  // chunks can go there at once; replica counts still wait for the reports (safe mode).
  placementCandidates (nowMs: number): PlacementCandidate[] {
    return this.all()
      .filter((s) => (s.fullReportSeen || s.registeredAsIs) && this.isAlive(s.serverId, nowMs))
      .map((s) => ({ serverId: s.serverId, url: s.url, freeBytes: s.freeBytes, load: s.activeWrites + decayed(s, nowMs, this.#options.allocationHalfLifeMs) }))
  }

  // Counts a pipeline against its servers until their heartbeats report the writes (so 50 concurrent small
  // puts spread out instead of all landing on the emptiest server).
  noteAllocation (serverIds: readonly ServerId[], nowMs: number): void {
    for (const serverId of serverIds) {
      const state = this.#servers.get(serverId)
      if (state === undefined) continue
      state.recentAllocations = decayed(state, nowMs, this.#options.allocationHalfLifeMs) + 1
      state.recentAtMs = nowMs
    }
  }

  // A server this master has not heard from gets nothing queued: its first contact brings a full report,
  // and reconciliation finds the same chunks. A full queue is dropped for the same reason.
  queueDelete (serverId: ServerId, chunkHandle: ChunkHandle, version: number): void {
    const state = this.#servers.get(serverId)
    if (state === undefined) return
    if (state.commands.size >= commandsQueuedPerServerMax && !state.commands.has(chunkHandle)) {
      state.commands.clear()
      state.fullReportSeen = false
      return
    }
    // A queued replicate of the same chunk replaces the server's copy anyway (a corrupt one is deleted first).
    if (state.commands.get(chunkHandle)?.type === 'replicate') return
    state.commands.set(chunkHandle, { type: 'delete', chunkHandle, version })
  }

  // A replicate command for the target (master/replication.ts). Dropped when the queue is full: the
  // replicator gives the copy up after replicationInFlightMsMax and plans it again.
  queueCommand (serverId: ServerId, command: ChunkserverCommand): boolean {
    const state = this.#servers.get(serverId)
    if (state === undefined || (state.commands.size >= commandsQueuedPerServerMax && !state.commands.has(command.chunkHandle))) return false
    state.commands.set(command.chunkHandle, command)
    return true
  }

  takeCommands (serverId: ServerId, countMax: number): ChunkserverCommand[] {
    const state = this.#servers.get(serverId)
    if (state === undefined) return []
    const taken: ChunkserverCommand[] = []
    for (const [chunkHandle, command] of state.commands) {
      if (taken.length >= countMax) break
      taken.push(command)
      state.commands.delete(chunkHandle)
    }
    return taken
  }

  // Commands still queued for the server (the heartbeat reply says so, and the server comes back at once).
  queuedCommandCount (serverId: ServerId): number {
    return this.#servers.get(serverId)?.commands.size ?? 0
  }

  // Servers that went from alive to dead since the last call (each reported once), for the tick to log.
  newlyDead (nowMs: number): ServerState[] {
    const dead: ServerState[] = []
    for (const state of this.#servers.values()) {
      if (state.deadLogged || this.isAlive(state.serverId, nowMs)) continue
      state.deadLogged = true
      dead.push(state)
    }
    return dead
  }
}

function decayed (state: ServerState, nowMs: number, halfLifeMs: number): number {
  const ageMs = Math.max(0, nowMs - state.recentAtMs)
  return state.recentAllocations * Math.pow(0.5, ageMs / halfLifeMs)
}
