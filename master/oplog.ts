// The operation log: one record per applied op, written in the SAME transaction as the op's effects, with
// the op's result so a replay can check itself. Also the idempotency table (requests), the tail a shadow
// reads, the shadow's replay step, and the bounded trims the master's tick runs.
import { isDeepStrictEqual } from 'node:util'
import { assert, AssertionError } from '../shared/assert.js'
import type { RequestId } from '../shared/ids.js'
import { readMeta, sql, type Db } from './db.js'
import { apply, type Applied, type Op } from './ops.js'

export interface OplogRecord {
  seq: number
  term: number
  atMs: number             // when the master committed it (epoch ms)
  op: Op
  result: unknown          // what apply() returned, as JSON
  requestId: RequestId | null
}

export interface RecordContext { seq: number, term: number, atMs: number, requestId: RequestId | null }

// Applies the op and appends its record (and its idempotency row) — the caller holds the transaction.
// The master and a replaying shadow both write through here, so their tables come out the same.
export function applyAndLog (db: Db, op: Op, context: RecordContext): Applied {
  assert(db.inTransaction, 'an op and its oplog record are written in one transaction')
  const meta = readMeta(db)
  assert(context.seq === meta.seq + 1, 'oplog seqs are consecutive')
  const applied = apply(db, op)
  const resultJson = JSON.stringify(applied.result)
  sql(db, 'INSERT INTO oplog (seq, term, atMs, op, result, requestId) VALUES (?, ?, ?, ?, ?, ?)')
    .run(context.seq, context.term, context.atMs, JSON.stringify(op), resultJson, context.requestId)
  if (context.requestId !== null) {
    // OR REPLACE: the master never logs a requestId it still holds (the queue answers those from the table), but
    // a shadow prunes on its own tick and may still hold an id the master pruned and then saw retried.
    sql(db, 'INSERT OR REPLACE INTO requests (requestId, reply, atMs) VALUES (?, ?, ?)').run(context.requestId, resultJson, context.atMs)
  }
  sql(db, 'UPDATE meta SET seq = ? WHERE id = 1').run(context.seq)
  return applied
}

// The stored reply of a mutation already applied under this requestId, or undefined.
export function storedReply (db: Db, requestId: RequestId): unknown {
  const row = sql(db, 'SELECT reply FROM requests WHERE requestId = ?').get(requestId) as { reply: string } | undefined
  return row === undefined ? undefined : JSON.parse(row.reply)
}

// Records with seq >= fromSeq, in order, at most countMax of them (a shadow tails with this).
export function readOplog (db: Db, fromSeq: number, countMax: number): OplogRecord[] {
  assert(Number.isSafeInteger(countMax) && countMax > 0, 'an oplog read is bounded')
  const rows = sql(db, 'SELECT seq, term, atMs, op, result, requestId FROM oplog WHERE seq >= ? ORDER BY seq LIMIT ?')
    .all(fromSeq, countMax) as Array<{ seq: number, term: number, atMs: number, op: string, result: string, requestId: RequestId | null }>
  return rows.map((row) => ({ ...row, op: JSON.parse(row.op) as Op, result: JSON.parse(row.result) as unknown }))
}

// The same records as readOplog, as the JSON text of an OplogEntry array, without parsing and re-serialising
// each op (the table already holds JSON). Stops at countMax records or once bytesMax is passed, but always
// carries at least one record when there is one, so a single large record cannot stall a shadow.
export function readOplogJson (db: Db, fromSeq: number, countMax: number, bytesMax: number): { json: string, count: number } {
  assert(Number.isSafeInteger(countMax) && countMax > 0 && bytesMax > 0, 'an oplog read is bounded')
  const rows = sql(db, 'SELECT seq, term, atMs, op, result, requestId FROM oplog WHERE seq >= ? ORDER BY seq LIMIT ?')
    .iterate(fromSeq, countMax) as IterableIterator<{ seq: number, term: number, atMs: number, op: string, result: string, requestId: string | null }>
  const parts: string[] = []
  let bytes = 2
  for (const row of rows) {
    const part = `{"seq":${row.seq},"term":${row.term},"atMs":${row.atMs},"op":${row.op},"result":${row.result},"requestId":${JSON.stringify(row.requestId)}}`
    if (parts.length > 0 && bytes + part.length + 1 > bytesMax) break   // for-of's return() releases the statement
    parts.push(part)
    bytes += part.length + 1
  }
  return { json: `[${parts.join(',')}]`, count: parts.length }
}

// The term of the record at seq, or undefined when it is not (or no longer) in the log.
export function termAt (db: Db, seq: number): number | undefined {
  const row = sql(db, 'SELECT term FROM oplog WHERE seq = ?').get(seq) as { term: number } | undefined
  return row?.term
}

// A shadow's step: apply one record in its own transaction and assert the result is the one the master
// recorded. A record that fails to apply, or applies differently, means the two copies diverged: a bug.
export function replayRecord (db: Db, record: OplogRecord): Applied {
  return db.transaction(() => {
    let applied: Applied
    try {
      applied = applyAndLog(db, record.op, { seq: record.seq, term: record.term, atMs: record.atMs, requestId: record.requestId })
    } catch (err) {
      if (err instanceof AssertionError) throw err
      throw new AssertionError(`oplog record ${record.seq} (${record.op.type}) failed on replay: ${(err as Error).message}`)
    }
    const replayed: unknown = JSON.parse(JSON.stringify(applied.result))
    assert(isDeepStrictEqual(replayed, record.result), `oplog record ${record.seq} (${record.op.type}) replayed to a different result`)
    return applied
  }).immediate()
}

// Keeps the last keptMax records; deletes at most batchMax per call (one call per tick).
export function trimOplog (db: Db, keptMax: number, batchMax: number): number {
  const lastSeq = readMeta(db).seq
  return sql(db, 'DELETE FROM oplog WHERE seq IN (SELECT seq FROM oplog WHERE seq <= ? ORDER BY seq LIMIT ?)')
    .run(lastSeq - keptMax, batchMax).changes
}

export interface RetentionBounds {
  recordsKeptMin: number   // always kept: a restarted shadow resumes without a snapshot
  recordsKeptMax: number   // count bound: never more, whatever a shadow needs
  recordAgeMsMax: number   // age bound: older records go even if a shadow needs them
}

// Retention with shadows: records every remembered shadow has applied may go, except the newest
// recordsKeptMin; a shadow holds back the trim from its applied seq (that record stays too, so its next poll
// can check the term there), but only within the count and age bounds. neededFromSeq = the lowest applied seq
// of the remembered shadows, or null. Deletes at most batchMax records per call (one call per tick).
export function trimOplogRetained (db: Db, bounds: RetentionBounds, neededFromSeq: number | null, nowMs: number, batchMax: number): number {
  assert(bounds.recordsKeptMin >= 1 && bounds.recordsKeptMin <= bounds.recordsKeptMax, 'the newest record is always kept')
  const lastSeq = readMeta(db).seq
  const floorCut = lastSeq - bounds.recordsKeptMin
  const countCut = lastSeq - bounds.recordsKeptMax
  const holdCut = neededFromSeq === null ? floorCut : Math.min(floorCut, neededFromSeq - 1)
  // The age bound over the oldest batch only: at most batchMax rows go per call anyway.
  const oldest = sql(db, 'SELECT seq, atMs FROM oplog WHERE seq <= ? ORDER BY seq LIMIT ?').all(floorCut, batchMax) as Array<{ seq: number, atMs: number }>
  let ageCut = 0
  for (const row of oldest) {
    if (nowMs - row.atMs <= bounds.recordAgeMsMax) break
    ageCut = row.seq
  }
  const cut = Math.max(countCut, holdCut, ageCut)
  if (cut <= 0) return 0
  return sql(db, 'DELETE FROM oplog WHERE seq IN (SELECT seq FROM oplog WHERE seq <= ? ORDER BY seq LIMIT ?)').run(cut, batchMax).changes
}

// Keeps the newest keptMax idempotency rows, oldest pruned first; deletes at most batchMax per call (one call per
// tick). A new row always gets a rowid above every row in the table, so rowid order is recording order. The rowids
// are NOT contiguous: INSERT OR REPLACE (applyAndLog) deletes the old row and appends a new one, leaving a hole,
// so max - min + 1 only bounds the count from above. Deleting by that span would drop one row too many per hole,
// and a retry of that row's mutation, still inside the window, would run a second time (after a promotion, on
// the shadow that did the replacing). So the span only rules pruning out; the cut itself is found by counting.
export function pruneRequests (db: Db, keptMax: number, batchMax: number): number {
  assert(Number.isSafeInteger(keptMax) && keptMax >= 0 && Number.isSafeInteger(batchMax) && batchMax > 0, 'a prune is bounded')
  // Two subqueries: SQLite answers a lone min() or max() from the b-tree's ends, but scans for both at once.
  const span = sql(db, 'SELECT (SELECT min(rowid) FROM requests) AS first, (SELECT max(rowid) FROM requests) AS last').get() as { first: number | null, last: number | null }
  if (span.first === null || span.last === null || span.last - span.first + 1 <= keptMax) return 0
  // The newest row beyond the newest keptMax: a walk over keptMax rowids (about 2–3 ms at 200k), only on ticks
  // where the span says there may be something to prune.
  const cut = sql(db, 'SELECT rowid FROM requests ORDER BY rowid DESC LIMIT 1 OFFSET ?').pluck().get(keptMax) as number | undefined
  if (cut === undefined) return 0   // holes: the table holds keptMax rows or fewer
  return sql(db, 'DELETE FROM requests WHERE rowid IN (SELECT rowid FROM requests WHERE rowid <= ? ORDER BY rowid LIMIT ?)').run(cut, batchMax).changes
}
