// Re-replication on the master's clock: each tick finds the committed chunks whose live replica count is not
// their file's replication (a bounded scan, fewest live first), plans with replication.ts, and acts: a
// `replicate` command queued for the target (it rides on the target's next heartbeat reply), or an extra
// replica's row removed and a delete queued for its server. Besides the periodic tick, a round runs at the
// moment a silent server turns dead (registry.nextDeathAtMs), so its chunks are planned when it is declared
// dead, not up to a tick later. A server is handed up to replicationsAssignedPerServerMax copies, more than a
// target runs at once (replicationsInFlightPerServerMax), so its next copy is already queued when one ends.
// A copy is "in flight" until the target's heartbeat reports it (its replica row appears), the target dies, or
// replicationInFlightMsMax passes; then it is planned again if still needed. Nothing runs while the master is
// in safe mode (replica counts are not trustworthy yet) or is not the master (a shadow, a deposed master).
import type { Logger } from 'pino'
import { AssertionError } from '../shared/assert.js'
import type { ChunkHandle, ServerId } from '../shared/ids.js'
import {
  replicationInFlightMsMax, replicationScanChunksMax, replicationsAssignedPerServerMax, replicationsPerTickMax
} from '../shared/limits.js'
import type { ChunkserverAddress } from '../shared/protocol.js'
import { signToken } from '../shared/token.js'
import type { CommitQueue } from './commit-queue.js'
import { sql, type Db } from './db.js'
import type { Registry } from './registry.js'
import { planReplication, type ChunkNeed, type CopyInFlight, type ReplicationAction } from './replication.js'
import type { SafeMode } from './safe-mode.js'

export interface ReplicatorDeps {
  db: Db
  queue: CommitQueue
  registry: Registry
  safeMode: Pick<SafeMode, 'active'>
  secret: Buffer
  tokenTtlMs: number
  log: Logger
  now: () => number
  onFatal: (err: AssertionError) => void
  inFlightMsMax?: number                 // tests shrink it
  rescanMs?: number                      // a scan with nothing changed at least this often (default rescanMsDefault)
}

// The scan reads every committed chunk, so it runs only when something that changes replica counts has
// happened — the set of live servers changed, a server's corrupt count changed, a heartbeat's report removed
// replica rows (Registry.replicaChanges), copies are in flight, or the last scan found work — and otherwise every
// rescanMsDefault as a safety net (a write committed with fewer servers than its replication, rows added by a
// report that leave a chunk over-replicated).
const rescanMsDefault = 30_000

export interface ReplicatorStats { inFlight: number, replicated: number, trimmed: number }

interface NeedRow { chunkHandle: ChunkHandle, version: number, lengthBytes: number, crc32: number, replication: number }

export class Replicator {
  readonly #deps: ReplicatorDeps
  readonly #inFlight = new Map<string, CopyInFlight>()   // `${handle}:${target}`; bounded by servers × perServerMax
  #timer: NodeJS.Timeout | null = null
  #deathTimer: NodeJS.Timeout | undefined
  #tickIntervalMs = 0
  #running: Promise<void> | null = null
  #replicated = 0
  #trimmed = 0
  #lastScanMs = Number.NEGATIVE_INFINITY
  #lastSignature = ''
  #lastFoundWork = false
  #lastNeedCount = 0

  constructor (deps: ReplicatorDeps) {
    this.#deps = deps
  }

  start (tickIntervalMs: number): void {
    this.#tickIntervalMs = tickIntervalMs
    this.#timer = setInterval(() => { this.#round() }, tickIntervalMs)
    this.#timer.unref()
    this.#armDeathTimer()
  }

  async stop (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    clearTimeout(this.#deathTimer)
    this.#timer = null
    await this.#running
  }

  #round (): void {
    if (this.#running !== null || this.#timer === null) return   // a slow round is not stacked
    this.#running = this.tick().finally(() => {
      this.#running = null
      this.#armDeathTimer()
    })
  }

  // A server silent since its last heartbeat turns dead at lastHeartbeatMs + deadAfterMs; if that comes before
  // the next periodic tick, a round is also run then (+1 ms so timer rounding cannot land it just before).
  // Re-armed after every round; at most one is pending.
  #armDeathTimer (): void {
    if (this.#timer === null) return
    const nowMs = this.#deps.now()
    const deathAtMs = this.#deps.registry.nextDeathAtMs(nowMs)
    if (deathAtMs === null || deathAtMs - nowMs >= this.#tickIntervalMs) return
    clearTimeout(this.#deathTimer)
    this.#deathTimer = setTimeout(() => { this.#round() }, deathAtMs - nowMs + 1)
    this.#deathTimer.unref()
  }

  stats (): ReplicatorStats {
    return { inFlight: this.#inFlight.size, replicated: this.#replicated, trimmed: this.#trimmed }
  }

  // Chunks the last scan found with a live count other than their replication (at most replicationScanChunksMax).
  get neededCount (): number { return this.#lastNeedCount }

  // One round; tests call it directly.
  async tick (): Promise<void> {
    const { queue, safeMode, registry, log, now } = this.#deps
    const nowMs = now()
    try {
      if (queue.mode !== 'master' || safeMode.active(nowMs)) return
      this.#settle(nowMs)
      const liveServerIds = registry.liveServerIds(nowMs)
      if (!this.#scanDue(liveServerIds, nowMs)) return
      const needs = this.#scan(liveServerIds)
      this.#lastScanMs = nowMs
      this.#lastFoundWork = needs.length > 0
      this.#lastNeedCount = needs.length
      if (needs.length === 0) return
      const actions = planReplication(needs, registry.placementCandidates(nowMs), [...this.#inFlight.values()],
        { actionsMax: replicationsPerTickMax, perServerMax: replicationsAssignedPerServerMax })
      for (const action of actions) await this.#act(action, nowMs)
    } catch (err) {
      if (err instanceof AssertionError) this.#deps.onFatal(err)
      else log.error({ err }, 'replication round failed')
    }
  }

  #scanDue (liveServerIds: ServerId[], nowMs: number): boolean {
    const { registry } = this.#deps
    const signature = [...liveServerIds].sort().map((id) => `${id}:${registry.get(id)?.corruptCount ?? 0}`).join(',') + `;${registry.replicaChanges}`
    const changed = signature !== this.#lastSignature
    this.#lastSignature = signature
    return changed || this.#lastFoundWork || this.#inFlight.size > 0 || nowMs - this.#lastScanMs >= (this.#deps.rescanMs ?? rescanMsDefault)
  }

  // Copies that finished (the target's row is there), died with their target, or took too long leave the
  // in-flight set.
  #settle (nowMs: number): void {
    const { db, registry, log } = this.#deps
    const inFlightMsMax = this.#deps.inFlightMsMax ?? replicationInFlightMsMax
    const has = sql(db, 'SELECT 1 FROM replicas r JOIN chunks c ON c.chunkHandle = r.chunkHandle AND c.version = r.version WHERE r.chunkHandle = ? AND r.serverId = ?')
    for (const [key, copy] of this.#inFlight) {
      if (has.get(copy.chunkHandle, copy.targetId) !== undefined) {
        this.#inFlight.delete(key)
        this.#replicated++
        log.info({ chunkHandle: copy.chunkHandle, targetId: copy.targetId, durationMs: nowMs - copy.startedAtMs }, 'chunk re-replicated')
      } else if (!registry.isAlive(copy.targetId, nowMs) || nowMs - copy.startedAtMs >= inFlightMsMax) {
        this.#inFlight.delete(key)
        log.warn({ chunkHandle: copy.chunkHandle, targetId: copy.targetId, ageMs: nowMs - copy.startedAtMs }, 're-replication gave up; will plan again')
      }
    }
  }

  // Committed chunks whose live count differs from their replication, fewest live first, bounded.
  #scan (liveServerIds: ServerId[]): ChunkNeed[] {
    const { db } = this.#deps
    const rows = sql(db, `SELECT chunkHandle, version, lengthBytes, crc32, replication FROM (
        SELECT c.chunkHandle, c.version, c.lengthBytes, c.crc32, i.replication,
          (SELECT count(*) FROM replicas r WHERE r.chunkHandle = c.chunkHandle AND r.version = c.version
            AND r.serverId IN (SELECT value FROM json_each(?))) AS live
        FROM chunks c JOIN inodes i ON i.id = c.inodeId WHERE c.state = 'committed')
      WHERE live > 0 AND live <> replication ORDER BY live > replication, live, chunkHandle LIMIT ?`)
      .all(JSON.stringify(liveServerIds), replicationScanChunksMax) as NeedRow[]
    const live = new Set(liveServerIds)
    const replicas = sql(db, 'SELECT r.serverId, r.version, s.url FROM replicas r JOIN servers s ON s.serverId = r.serverId WHERE r.chunkHandle = ? ORDER BY r.serverId')
    return rows.map((row) => {
      const all = replicas.all(row.chunkHandle) as Array<{ serverId: ServerId, version: number, url: string }>
      const liveHere: ChunkserverAddress[] = all.filter((r) => r.version === row.version && live.has(r.serverId)).map((r) => ({ serverId: r.serverId, url: this.#deps.registry.get(r.serverId)?.url ?? r.url }))
      return { ...row, live: liveHere, holders: all.map((r) => r.serverId) }
    })
  }

  async #act (action: ReplicationAction, nowMs: number): Promise<void> {
    const { queue, registry, secret, tokenTtlMs, log } = this.#deps
    const { chunk } = action
    if (action.type === 'trim') {
      // The row goes first (clients stop being sent there), then the delete rides on the next heartbeat.
      await queue.submit({ type: 'removeReplica', chunkHandle: chunk.chunkHandle, serverId: action.serverId, version: chunk.version })
      registry.queueDelete(action.serverId, chunk.chunkHandle, chunk.version)
      this.#trimmed++
      log.info({ chunkHandle: chunk.chunkHandle, serverId: action.serverId, live: chunk.live.length, replication: chunk.replication }, 'extra replica deleted')
      return
    }
    const token = signToken(secret, { chunkHandle: chunk.chunkHandle, version: chunk.version, mode: 'read', expiresAtMs: nowMs + tokenTtlMs, term: queue.term })
    const queued = registry.queueCommand(action.target.serverId, {
      type: 'replicate', chunkHandle: chunk.chunkHandle, version: chunk.version, lengthBytes: chunk.lengthBytes, crc32: chunk.crc32,
      sources: action.sources, token
    })
    if (!queued) return
    const source = action.sources[0] as ChunkserverAddress
    this.#inFlight.set(`${chunk.chunkHandle}:${action.target.serverId}`, { chunkHandle: chunk.chunkHandle, targetId: action.target.serverId, sourceId: source.serverId, startedAtMs: nowMs })
    log.info({ chunkHandle: chunk.chunkHandle, version: chunk.version, live: chunk.live.length, replication: chunk.replication, targetId: action.target.serverId, sourceId: source.serverId }, 're-replication queued')
  }
}
