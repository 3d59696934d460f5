// WAL checkpoints off the master's event loop. SQLite's autocheckpoint runs inside the commit that crosses its
// page count, on the thread that committed: copying the WAL's pages into master.db and fsyncing both. On this
// machine, with chunkservers fsyncing on the same disk, one such checkpoint stopped the master's event loop for
// 10-90 ms (strace of a master under the one-writer ticker: fsync WAL 4 ms, ~40 page writes, fsync db 4 ms,
// about once a second at 100 puts/s), and every request in flight waited for it: the ticker's p99.
// Here a worker thread with its own connection runs a PASSIVE checkpoint every checkpointIntervalMs, beside the
// master's commits (WAL mode lets one checkpointer run while the writer writes). The master's own connection
// keeps an autocheckpoint, at mainCheckpointPages, as the bound on the WAL should the worker fall behind or die.
// What is durable and when is unchanged: a commit is durable as synchronous=NORMAL/FULL makes it, whoever checkpoints.
import { Worker } from 'node:worker_threads'
import type { Logger } from '../shared/log.js'
import type { Db } from './db.js'
import type { CheckpointWorkerMessage } from './checkpoint-worker.js'

// How often the worker checkpoints what the WAL has gained: about the cadence SQLite's own 1,000-page autocheckpoint
// had under the one-writer ticker. Each checkpoint fsyncs the WAL and master.db on the disk the chunkservers fsync
// on: every 250 ms, the ticker's median latency went up (p50 19 → 35 ms over five interleaved runs each, noisy);
// every 2 s, fewer but larger page flushes and a tail as bad.
export const checkpointIntervalMs = 1_000
export const mainCheckpointPages = 16_384      // the master's own autocheckpoint (64 MiB of 4 KiB pages): only if the worker lags
export const checkpointerStopWaitMs = 5_000    // close() waits this long for the worker's last checkpoint, then terminates it

export class Checkpointer {
  readonly #worker: Worker
  readonly #exited: Promise<void>
  #closing: Promise<void> | null = null
  checkpoints = 0          // checkpoints that copied frames (for tests and the status of a master)
  framesCheckpointed = 0

  private constructor (file: string, log: Logger, intervalMs: number) {
    // Beside this module: .js when built, .ts when the tests load the sources (the worker inherits their loader).
    const workerFile = new URL(`./checkpoint-worker.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url)
    this.#worker = new Worker(workerFile, { workerData: { file, intervalMs }, ...(import.meta.url.endsWith('.ts') ? {} : { resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } }) })
    this.#worker.unref()   // a master that is done does not stay up for its checkpointer
    this.#worker.on('message', (message: CheckpointWorkerMessage) => {
      if (message.kind === 'checkpointed') {
        this.checkpoints++
        this.framesCheckpointed += message.frames
        log.debug({ frames: message.frames, walFrames: message.walFrames, ms: Math.round(message.ms) }, 'WAL checkpointed')
      } else {
        log.warn({ err: message.message }, 'WAL checkpoint failed; the master\'s own autocheckpoint bounds the WAL')
      }
    })
    this.#exited = new Promise((resolve) => {
      this.#worker.once('exit', (code) => {
        if (code !== 0 && this.#closing === null) log.warn({ code }, 'the WAL checkpointer stopped; the master\'s own autocheckpoint bounds the WAL')
        resolve()
      })
    })
    this.#worker.once('error', (err) => { log.warn({ err }, 'the WAL checkpointer failed') })
  }

  // Starts checkpointing `db` (an open master database in WAL mode) from a worker thread; null for an in-memory
  // database, which has no WAL.
  static start (db: Db, log: Logger, intervalMs = checkpointIntervalMs): Checkpointer | null {
    if (db.memory) return null
    db.pragma(`wal_autocheckpoint = ${mainCheckpointPages}`)
    return new Checkpointer(db.name, log, intervalMs)
  }

  // Stops the worker (before the master closes its own connection): its checkpoint in progress ends first.
  close (): Promise<void> {
    this.#closing ??= (async () => {
      this.#worker.postMessage('stop')
      const timer = setTimeout(() => { void this.#worker.terminate() }, checkpointerStopWaitMs)
      await this.#exited
      clearTimeout(timer)
    })()
    return this.#closing
  }
}
