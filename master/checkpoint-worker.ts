// The checkpointer's thread (master/checkpointer.ts): its own connection to the master's database, running a
// PASSIVE WAL checkpoint every intervalMs. PASSIVE never waits for and never blocks the master's connection: it
// copies what no reader still needs and stops. Reports each checkpoint that copied frames, and any error, to
// the master's thread, which logs them.
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

interface CheckpointWorkerData { file: string, intervalMs: number }
export type CheckpointWorkerMessage =
  | { kind: 'checkpointed', frames: number, walFrames: number, ms: number }
  | { kind: 'error', message: string }

const { file, intervalMs } = workerData as CheckpointWorkerData
const port = parentPort
if (port === null) throw new Error('checkpoint-worker.ts runs as a worker thread')
const db = new Database(file, { fileMustExist: true, timeout: 0 })
db.pragma('cache_size = -256')   // KiB: a checkpoint copies WAL frames into the file; it needs no page cache
let stopped = false
let last = { log: 0, checkpointed: 0 }

function tick (): void {
  if (stopped) return
  try {
    const startedMs = performance.now()
    const [row] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number, log: number, checkpointed: number }>
    if (row !== undefined && row.checkpointed >= 0) {
      // The counts are the WAL's since it last restarted from its start (the writer does that once everything
      // is copied): a smaller count than last time is a new WAL. Only frames copied by this call are reported.
      const restarted = row.log < last.log || row.checkpointed < last.checkpointed
      const frames = restarted ? row.checkpointed : row.checkpointed - last.checkpointed
      last = { log: row.log, checkpointed: row.checkpointed }
      if (frames > 0) port?.postMessage({ kind: 'checkpointed', frames, walFrames: row.log, ms: performance.now() - startedMs } satisfies CheckpointWorkerMessage)
    }
  } catch (err) {
    port?.postMessage({ kind: 'error', message: (err as Error).message } satisfies CheckpointWorkerMessage)
  }
  timer = setTimeout(tick, intervalMs)
}

let timer = setTimeout(tick, intervalMs)
port.on('message', (message: unknown) => {
  if (message !== 'stop') return
  stopped = true
  clearTimeout(timer)
  db.close()
  port.close()
})
