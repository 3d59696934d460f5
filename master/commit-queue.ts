// Group commit: every mutation goes through submit(); the queue is flushed on setImmediate, running up to
// groupCommitOpsMax ops in ONE SQLite transaction (one fsync), each op inside its own savepoint so one
// refused op does not abort the others. A promise resolves only after its transaction committed, so an HTTP
// reply never acknowledges something that could still be lost.
//
// The queue is the only writer of the database, in every role: a master commits submitted ops; a shadow's
// queue refuses submits and takes replayed oplog records instead (replay), until promote() logs a newTerm op
// and makes it a master; a master that hears of a newer term is deposed and refuses everything after.
import type Database from 'better-sqlite3'
import { performance } from 'node:perf_hooks'
import { assert, AssertionError } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import type { RequestId } from '../shared/ids.js'
import { groupCommitOpsMax, groupCommitQueueMax } from '../shared/limits.js'
import { readMeta, type Db } from './db.js'
import type { Applied, Op, OpResult } from './ops.js'
import { applyAndLog, replayRecord, storedReply, type OplogRecord } from './oplog.js'

interface Entry {
  op: Op
  requestId: RequestId | null
  resolve: (result: unknown) => void
  reject: (err: unknown) => void
}

type Outcome = { ok: true, applied: Applied } | { ok: false, err: unknown }
type RunBatch = (batch: Entry[], atMs: number) => { outcomes: Outcome[], seq: number }

export type QueueMode = 'master' | 'shadow' | 'deposed'

export interface CommitQueueOptions {
  onApplied?: (applied: Applied, op: Op) => void   // after the commit, before the submitter hears (delete commands)
  onFatal?: (err: AssertionError) => void          // an assertion failed inside a batch: the process must stop
  mode?: 'master' | 'shadow'                       // default master
  onCommitted?: (seq: number) => void              // after every committed or replayed batch (wakes oplog long polls)
  refusal?: () => GranaryError                     // what a submit gets when this is not (or no longer) the master
  // After every committed batch (metrics): its ops, the whole transaction, and its COMMIT alone (the WAL write
  // and fsync: the body's end is marked inside the transaction), in seconds.
  onBatch?: (opCount: number, transactionSeconds: number, commitSeconds: number) => void
}

// The refusal a shadow or a deposed master gives a client: retryable, naming the master when it knows it.
export function notMasterError (queue: Pick<CommitQueue, 'mode' | 'term' | 'fencedByTerm'>, masterUrl: string | null): GranaryError {
  const what = queue.mode === 'deposed' ? `deposed master (term ${queue.term}; term ${String(queue.fencedByTerm)} exists)` : queue.mode
  return new GranaryError('GRN_NOT_MASTER', [what, masterUrl ?? 'unknown to it'],
    { role: queue.mode, masterUrl, term: queue.term, fencedByTerm: queue.fencedByTerm })
}

export class CommitQueue {
  #db: Db
  #term: number
  #seq: number
  #queue: Entry[] = []
  #inFlight = new Map<RequestId, Promise<unknown>>()   // bounded by the queue: entries leave when their batch ends
  #scheduled = false
  #closed = false
  #mode: QueueMode
  #fencedByTerm: number | null = null
  #options: CommitQueueOptions
  #runBatch: Database.Transaction<RunBatch>
  #replayBatch: Database.Transaction<(records: readonly OplogRecord[]) => void>
  #bodyEndedMs = 0                                      // performance.now() when a batch's last op was applied

  constructor (db: Db, options: CommitQueueOptions = {}) {
    this.#db = db
    this.#options = options
    const meta = readMeta(db)
    this.#term = meta.term
    this.#seq = meta.seq
    this.#mode = options.mode ?? 'master'
    // One transaction (one fsync) per polled batch; replayRecord's own transaction nests as a savepoint.
    this.#replayBatch = db.transaction((records: readonly OplogRecord[]) => { for (const record of records) replayRecord(db, record) })
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
      this.#bodyEndedMs = performance.now()
      return { outcomes, seq }
    })
  }

  get term (): number { return this.#term }
  get seq (): number { return this.#seq }
  get queuedCount (): number { return this.#queue.length }
  get mode (): QueueMode { return this.#mode }
  get fencedByTerm (): number | null { return this.#fencedByTerm }

  submit<T extends Op> (op: T, requestId?: RequestId): Promise<OpResult<T>> {
    return this.#submit(op, requestId ?? null) as Promise<OpResult<T>>
  }

  #submit (op: Op, requestId: RequestId | null): Promise<unknown> {
    if (this.#closed) return Promise.reject(new GranaryError('GRN_UNAVAILABLE', ['the master', 'it is shutting down']))
    if (this.#mode !== 'master') return Promise.reject(this.#refusal())
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
    if (this.#mode !== 'master') {
      // Queued before this master was deposed: nothing more is written under the old term.
      for (const entry of batch) this.#settleRefused(entry)
      return
    }
    let outcomes: Outcome[]
    try {
      const startedMs = performance.now()
      const done = this.#runBatch.immediate(batch, Date.now())
      const endedMs = performance.now()
      this.#options.onBatch?.(batch.length, (endedMs - startedMs) / 1000, (endedMs - this.#bodyEndedMs) / 1000)
      outcomes = done.outcomes
      this.#seq = done.seq
      this.#options.onCommitted?.(this.#seq)
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

  // A shadow's step: applies polled oplog records in one transaction, each checked to reproduce its recorded
  // result (replayRecord). Throws AssertionError on a mismatch or a gap: the batch is rolled back and the two
  // copies have diverged — a bug the caller must not survive.
  replay (records: readonly OplogRecord[]): void {
    assert(this.#mode === 'shadow', 'only a shadow replays the oplog')
    if (records.length === 0) return
    try {
      this.#replayBatch.immediate(records)
    } finally {
      const meta = readMeta(this.#db)
      this.#term = meta.term
      this.#seq = meta.seq
    }
    this.#options.onCommitted?.(this.#seq)
  }

  // Shadow → master: logs a newTerm op (the term it won, by default term + 1) as the next record and starts
  // taking submits.
  promote (atMs: number, wonTerm?: number): { term: number, seq: number } {
    assert(this.#mode === 'shadow', 'only a shadow is promoted')
    assert(this.#queue.length === 0, 'a shadow has nothing queued')
    const term = wonTerm ?? this.#term + 1
    assert(term > this.#term, 'a promotion starts a newer term')
    const seq = this.#seq + 1
    this.#db.transaction(() => applyAndLog(this.#db, { type: 'newTerm', term }, { seq, term, atMs, requestId: null })).immediate()
    this.#term = term
    this.#seq = seq
    this.#mode = 'master'
    this.#options.onCommitted?.(seq)
    return { term, seq }
  }

  // Master → deposed: a chunkserver has seen a newer term, so a shadow was promoted. Returns true the first time.
  depose (newerTerm: number): boolean {
    assert(newerTerm > this.#term, 'only a newer term deposes a master')
    this.#fencedByTerm = Math.max(this.#fencedByTerm ?? 0, newerTerm)
    if (this.#mode !== 'master') return false
    this.#mode = 'deposed'
    return true
  }

  #refusal (): GranaryError {
    return this.#options.refusal?.() ?? new GranaryError('GRN_NOT_MASTER', [this.#mode, 'elsewhere'])
  }

  #settleRefused (entry: Entry): void {
    if (entry.requestId !== null) this.#inFlight.delete(entry.requestId)
    entry.reject(this.#refusal())
  }

  // Commits whatever is queued, synchronously, and refuses new submits. Call after the HTTP server closed.
  close (): void {
    this.#closed = true
    while (this.#queue.length > 0) this.#flush()
  }
}
