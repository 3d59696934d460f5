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
  startedAtMs: number
  deadAfterMs: number       // the longest safe mode lasts
}

export class SafeMode {
  readonly #options: SafeModeOptions
  #over = false

  constructor (options: SafeModeOptions) {
    this.#options = options
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

// The start-up fence on mutations. A master restarted after its shadow was promoted (while it was down) does not
// know it has been superseded until a chunkserver tells it the newer term; mutations it acknowledged meanwhile
// would be lost. So a master whose database names chunkservers takes no mutation until one of them has sent a
// heartbeat that did not depose it (they retry an unreachable master every 100 ms, so this costs ~0.1 s after
// a restart), or deadAfterMs has passed (every chunkserver silent: none can tell it anything). A fresh cluster
// (no chunkserver registered yet) is open at once. Reads are never fenced.
export class StartupFence {
  readonly #options: Omit<SafeModeOptions, 'registry'>
  #open: boolean

  constructor (options: Omit<SafeModeOptions, 'registry'>) {
    this.#options = options
    this.#open = registeredCount(options.db) === 0
  }

  // A chunkserver's heartbeat carried no newer term than this master's.
  confirmed (): void {
    this.#open = true
  }

  open (nowMs: number): boolean {
    if (!this.#open && nowMs - this.#options.startedAtMs >= this.#options.deadAfterMs) this.#open = true
    return this.#open
  }
}
