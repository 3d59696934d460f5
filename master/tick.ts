// The master's background work, on its own tick (tickIntervalMs) in bounded batches, never inside a request:
// lease expiry, trash purge, oplog trim, idempotency-table prune, and logging chunkservers that went dead. The oplog keeps
// what the shadows still need, within the retention bounds (oplog.ts trimOplogRetained). A shadow's tick trims
// its own copy the same way but expires no lease: that is its master's decision, and it arrives as a record.
import type { Logger } from 'pino'
import { AssertionError } from '../shared/assert.js'
import { trashPurgeEntriesPerOpMax, trashPurgeOpsPerTickMax, expiredLeasesPerTickMax, oplogRecordAgeMsMax, oplogRecordsKeptMax, oplogRecordsKeptMin, oplogTrimBatchMax, requestIdsKeptMax } from '../shared/limits.js'
import type { CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import { expireLeases } from './leases.js'
import { pruneRequests, trimOplogRetained, type RetentionBounds } from './oplog.js'
import type { Registry } from './registry.js'
import type { ShadowTracker } from './shadow-tracker.js'
import { expiredCheckpoints } from './trash.js'

export const defaultRetention: RetentionBounds = {
  recordsKeptMin: oplogRecordsKeptMin, recordsKeptMax: oplogRecordsKeptMax, recordAgeMsMax: oplogRecordAgeMsMax
}

export interface TickDeps {
  db: Db
  queue: CommitQueue
  registry: Registry
  log: Logger
  now: () => number
  onFatal: (err: AssertionError) => void
  shadows: ShadowTracker
  retention: RetentionBounds
  trashRetentionMs: number
}

export class Ticker {
  #deps: TickDeps
  #timer: NodeJS.Timeout | null = null
  #expiring: Promise<number> | null = null   // one expiry round at a time: a slow one is not stacked
  #purging: Promise<void> | null = null       // likewise for the trash purge

  constructor (deps: TickDeps) {
    this.#deps = deps
  }

  start (tickIntervalMs: number): void {
    this.#timer = setInterval(() => { void this.tick() }, tickIntervalMs)
    this.#timer.unref()
  }

  // One round of background work; tests call it directly with a chosen clock.
  async tick (): Promise<void> {
    const { db, queue, registry, log, now, shadows, retention } = this.#deps
    const nowMs = now()
    try {
      for (const server of registry.newlyDead(nowMs)) log.info({ serverId: server.serverId, url: server.url }, 'chunkserver dead')
      // Same batch bound for both trims: each is one DELETE by an index range.
      const trimmed = trimOplogRetained(db, retention, shadows.neededFromSeq(nowMs), nowMs, oplogTrimBatchMax)
      const pruned = pruneRequests(db, requestIdsKeptMax, oplogTrimBatchMax)
      if (trimmed + pruned > 0) log.debug({ trimmed, pruned }, 'oplog trimmed')
      if (this.#expiring === null && queue.mode === 'master') {
        this.#expiring = expireLeases(db, queue, nowMs, expiredLeasesPerTickMax, log)
        await this.#expiring.finally(() => { this.#expiring = null })
      }
      if (this.#purging === null && queue.mode === 'master') {
        this.#purging = this.#purgeTrash(nowMs).finally(() => { this.#purging = null })
        await this.#purging
      }
    } catch (err) {
      if (err instanceof AssertionError) this.#deps.onFatal(err)
      else log.error({ err }, 'master tick failed')
    }
  }

  // Checkpoints older than the retention (all of them when the trash is off), oldest first, each in bounded ops.
  async #purgeTrash (nowMs: number): Promise<void> {
    const { db, queue, log } = this.#deps
    let ops = 0
    for (const checkpoint of expiredCheckpoints(db, nowMs - this.#deps.trashRetentionMs, trashPurgeOpsPerTickMax)) {
      for (let done = false; !done && ops < trashPurgeOpsPerTickMax; ops++) {
        const result = await queue.submit({ type: 'purgeTrash', checkpoint, entriesMax: trashPurgeEntriesPerOpMax })
        done = result.done
        log.debug({ checkpoint, ...result }, done ? 'trash checkpoint purged' : 'trash checkpoint partly purged')
      }
    }
  }

  async stop (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    this.#timer = null
    await this.#expiring
    await this.#purging
  }
}
