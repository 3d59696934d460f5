// Group commit: every mutation goes through submit(); the queue is flushed on setImmediate, running up to
// groupCommitOpsMax ops in ONE SQLite transaction (one fsync), each op inside its own savepoint so one
// refused op does not abort the others. A promise resolves only after its transaction committed, so an HTTP
// reply never acknowledges something that could still be lost.
import type Database from 'better-sqlite3'
import { AssertionError } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import type { RequestId } from '../shared/ids.js'
import { groupCommitOpsMax, groupCommitQueueMax } from '../shared/limits.js'
import { readMeta, type Db } from './db.js'
import type { Applied, Op, OpResult } from './ops.js'
import { applyAndLog, storedReply } from './oplog.js'

interface Entry {
  op: Op
  requestId: RequestId | null
  resolve: (result: unknown) => void
  reject: (err: unknown) => void
}

type Outcome = { ok: true, applied: Applied } | { ok: false, err: unknown }
type RunBatch = (batch: Entry[], atMs: number) => { outcomes: Outcome[], seq: number }

export interface CommitQueueOptions {
  onApplied?: (applied: Applied, op: Op) => void   // after the commit, before the submitter hears (delete commands)
  onFatal?: (err: AssertionError) => void          // an assertion failed inside a batch: the process must stop
}

export class CommitQueue {
  #db: Db
  #term: number
  #seq: number
  #queue: Entry[] = []
  #inFlight = new Map<RequestId, Promise<unknown>>()   // bounded by the queue: entries leave when their batch ends
  #scheduled = false
  #closed = false
  #options: CommitQueueOptions
  #runBatch: Database.Transaction<RunBatch>

  constructor (db: Db, options: CommitQueueOptions = {}) {
    this.#db = db
    this.#options = options
    const meta = readMeta(db)
    this.#term = meta.term
    this.#seq = meta.seq
    const applyOne = db.transaction((entry: Entry, seq: number, atMs: number) =>
      applyAndLog(db, entry.op, { seq, term: this.#term, atMs, requestId: entry.requestId }))
    this.#runBatch = db.transaction<RunBatch>((batch, atMs) => {
      const outcomes: Outcome[] = []
      let seq = this.#seq
      for (const entry of batch) {
        try {
          outcomes.push({ ok: true, applied: applyOne(entry, seq + 1, atMs) })
          seq += 1
        } catch (err) {
          if (err instanceof AssertionError) throw err   // our bug: roll the whole batch back
          outcomes.push({ ok: false, err })              // refused: its savepoint is already rolled back
        }
      }
      return { outcomes, seq }
    })
  }

  get term (): number { return this.#term }
  get seq (): number { return this.#seq }
  get queuedCount (): number { return this.#queue.length }

  submit<T extends Op> (op: T, requestId?: RequestId): Promise<OpResult<T>> {
    return this.#submit(op, requestId ?? null) as Promise<OpResult<T>>
  }

  #submit (op: Op, requestId: RequestId | null): Promise<unknown> {
    if (this.#closed) return Promise.reject(new GranaryError('GRN_UNAVAILABLE', ['the master', 'it is shutting down']))
    if (requestId !== null) {
      const inFlight = this.#inFlight.get(requestId)
      if (inFlight !== undefined) return inFlight            // the same retry twice at once: one result
      const stored = storedReply(this.#db, requestId)
      if (stored !== undefined) return Promise.resolve(stored)   // already applied: the original reply
    }
    if (this.#queue.length >= groupCommitQueueMax) {
      return Promise.reject(new GranaryError('GRN_UNAVAILABLE', ['the master', `its commit queue is full (${groupCommitQueueMax} mutations)`]))
    }
    const promise = new Promise<unknown>((resolve, reject) => { this.#queue.push({ op, requestId, resolve, reject }) })
    if (requestId !== null) this.#inFlight.set(requestId, promise)
    this.#schedule()
    return promise
  }

  #schedule (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    setImmediate(() => {
      this.#scheduled = false
      this.#flush()
    })
  }

  #flush (): void {
    const batch = this.#queue.splice(0, groupCommitOpsMax)
    if (this.#queue.length > 0) this.#schedule()
    if (batch.length === 0) return
    let outcomes: Outcome[]
    try {
      const done = this.#runBatch.immediate(batch, Date.now())
      outcomes = done.outcomes
      this.#seq = done.seq
    } catch (err) {
      // The transaction rolled back as a whole (an assertion, or SQLite could not commit): nobody is acknowledged.
      outcomes = batch.map(() => ({ ok: false, err }))
      if (err instanceof AssertionError) this.#options.onFatal?.(err)
    }
    for (const [i, entry] of batch.entries()) {
      const outcome = outcomes[i] as Outcome
      if (entry.requestId !== null) this.#inFlight.delete(entry.requestId)
      if (outcome.ok) {
        this.#options.onApplied?.(outcome.applied, entry.op)
        entry.resolve(outcome.applied.result)
      } else {
        entry.reject(outcome.err)
      }
    }
  }

  // Commits whatever is queued, synchronously, and refuses new submits. Call after the HTTP server closed.
  close (): void {
    this.#closed = true
    while (this.#queue.length > 0) this.#flush()
  }
}
