// shadow → master: the oplog tail (a long poll) and the bootstrap snapshot (a tar stream); operator → shadow:
// promotion. Only a master serves its oplog and snapshots: a shadow or a deposed master answers GRN_NOT_MASTER,
// so no shadow ever follows a copy that is not the master's. Each poll tells the master which shadow asked
// and what it has applied (shadow-tracker.ts), which is what holds oplog records back for it.
import { rmSync } from 'node:fs'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import { oplogPollBytesMax, oplogRecordsPerPollMax, snapshotsInFlightMax } from '../shared/limits.js'
import type * as p from '../shared/protocol.js'
import { notMasterError, type CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import type { OplogFeed } from './oplog-feed.js'
import { readOplogJson, termAt } from './oplog.js'
import type { InSyncSet } from './isr.js'
import type { ShadowTracker } from './shadow-tracker.js'
import { makeSnapshot, packSnapshot } from './snapshot.js'

export interface ShadowRouteDeps {
  db: Db
  queue: CommitQueue
  shadows: ShadowTracker
  feed: OplogFeed
  snapshotDir: string          // temporary backups, removed once streamed
  masterUrl: () => string | null   // who GRN_NOT_MASTER names: a shadow's master, a deposed master's successor
  promote: ((force: boolean) => Promise<p.PromoteReply>) | null   // a shadow's Follower; null on a master
  now: () => number
  isr: InSyncSet               // every poll confirms what the shadow applied
  handOver: (request: p.HandOverRequest) => Promise<p.HandOverReply>
}

export function shadowHandlers (deps: ShadowRouteDeps) {
  const { db, queue } = deps
  let snapshotsInFlight = 0
  const requireMaster = (): void => { if (queue.mode !== 'master') throw notMasterError(queue, deps.masterUrl()) }

  const oplog = async (request: FastifyRequest, reply: FastifyReply): Promise<string> => {
    const query = request.query as p.OplogQuery
    requireMaster()
    deps.shadows.seen(query.shadowId, query.url, query.after, deps.now())
    checkHistory(db, queue.seq, query)
    // A shadow that has just joined the in-sync set hears so at once (not a long poll later): from that moment
    // it may stand for election.
    const joined = deps.isr.onPoll(query.shadowId, query.after, queue.seq)
    if (queue.seq <= query.after && !joined) await deps.feed.wait(query.after, query.waitMs ?? 0, reply.raw)
    requireMaster()   // deposed while the poll was parked: nothing more from here
    const first = query.after + 1
    // Everything after `after` must still be here: a gap would be a silent divergence.
    if (queue.seq >= first && termAt(db, first) === undefined) {
      throw new GranaryError('GRN_SNAPSHOT_REQUIRED', [query.after, `seq ${first} has been trimmed from this master's oplog`])
    }
    const { json } = readOplogJson(db, first, query.limit ?? oplogRecordsPerPollMax, oplogPollBytesMax)
    void reply.type('application/json')
    return `{"term":${queue.term},"seq":${queue.seq},"isr":${JSON.stringify(deps.isr.members)},"records":${json}}`
  }

  const snapshot = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const query = request.query as p.SnapshotQuery
    requireMaster()
    if (snapshotsInFlight >= snapshotsInFlightMax) throw new GranaryError('GRN_UNAVAILABLE', ['the master', `${snapshotsInFlightMax} snapshots are streaming already`])
    snapshotsInFlight += 1
    let released = false
    const release = (file?: string): void => {
      if (released) return
      released = true
      snapshotsInFlight -= 1
      if (file !== undefined) rmSync(file, { force: true })
    }
    let made
    const startedMs = Date.now()
    try {
      made = await makeSnapshot(db, deps.snapshotDir, deps.now())
    } catch (err) {
      release()
      throw err
    }
    const file = made.file
    const backupMs = Date.now() - startedMs
    reply.raw.once('close', () => {
      release(file)
      request.log.info({ shadowId: query.shadowId, seq: made.manifest.seq, sent: reply.raw.writableFinished, durationMs: Date.now() - startedMs }, 'snapshot stream ended')
    })
    // Registered at the snapshot's seq: the records after it are held for this shadow from now on.
    deps.shadows.seen(query.shadowId, query.url, made.manifest.seq, deps.now())
    request.log.info({ shadowId: query.shadowId, seq: made.manifest.seq, sizeBytes: made.manifest.sizeBytes, backupMs }, 'snapshot streaming to a shadow')
    return reply.type('application/x-tar').header('x-granary-snapshot-seq', String(made.manifest.seq)).send(packSnapshot(made))
  }

  const promote = async (request: FastifyRequest): Promise<p.PromoteReply> => {
    if (deps.promote === null) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`this server is a master (term ${queue.term}), not a shadow; only a shadow is promoted`])
    }
    return await deps.promote((request.body as p.PromoteRequest | undefined)?.force === true)
  }

  const handOver = async (request: FastifyRequest): Promise<p.HandOverReply> => {
    requireMaster()
    return await deps.handOver(request.body as p.HandOverRequest)
  }

  return { oplog, snapshot, promote, handOver }
}

// The shadow's history must be a prefix of this master's: its last seq exists here (not past the end, not
// trimmed) with the same term. Otherwise it was a master of its own (a deposed one rejoining) or fell behind
// the retention bound, and only a snapshot can make it a copy of this master again.
function checkHistory (db: Db, lastSeq: number, query: p.OplogQuery): void {
  if (query.after > lastSeq) {
    throw new GranaryError('GRN_SNAPSHOT_REQUIRED', [query.after, `this master's log ends at seq ${lastSeq}; the shadow's history is not this master's`])
  }
  if (query.after === 0) return
  const term = termAt(db, query.after)
  if (term === undefined) throw new GranaryError('GRN_SNAPSHOT_REQUIRED', [query.after, `seq ${query.after} has been trimmed from this master's oplog`])
  if (query.afterTerm !== undefined && query.afterTerm !== term) {
    throw new GranaryError('GRN_SNAPSHOT_REQUIRED', [query.after, `seq ${query.after} has term ${term} here, ${query.afterTerm} on the shadow: the histories diverged`])
  }
}

