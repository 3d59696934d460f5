// Safe mode (HDFS's word): right after start-up the master's replica rows are as old as its last run, and the
// in-memory registry is empty. Until every chunkserver registered in the database has sent this master its
// full report — or deadAfterMs has passed, after which a silent one counts as dead anyway — replica counts
// are not trustworthy, so the master destroys nothing: delete commands stay queued (the heartbeat reply
// carries none) and background re-replication must wait (ask active()). Reads and writes are served
// throughout: a restart does not wait for reports. Once over, safe mode never comes back in this process.
import type { Db } from './db.js'
import { sql } from './db.js'
import type { Registry } from './registry.js'

export interface SafeModeOptions {
  db: Db
  registry: Registry
  startedAtMs: number       // restart() moves it (a shadow promoted: its registry has never asked for full reports)
  deadAfterMs: number       // the longest safe mode lasts
}

export class SafeMode {
  readonly #options: SafeModeOptions
  #over = false

  constructor (options: SafeModeOptions) {
    this.#options = { ...options }
  }

  // A promoted shadow's replica rows are as old as its copy, and no chunkserver has sent it a full report:
  // safe mode starts again from the promotion.
  restart (nowMs: number): void {
    this.#options.startedAtMs = nowMs
    this.#over = false
  }

  // Two small reads (the servers table and the registry, both bounded by chunkserversMax) until it is over.
  active (nowMs: number): boolean {
    if (this.#over) return false
    const { db, registry, startedAtMs, deadAfterMs } = this.#options
    if (nowMs - startedAtMs >= deadAfterMs || reportedCount(registry) >= registeredCount(db)) this.#over = true
    return !this.#over
  }
}

function registeredCount (db: Db): number {
  return (sql(db, 'SELECT count(*) AS n FROM servers').get() as { n: number }).n
}

function reportedCount (registry: Registry): number {
  return registry.all().filter((s) => s.fullReportSeen).length
}
