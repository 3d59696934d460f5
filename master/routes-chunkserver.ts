// chunkserver → master: the heartbeat. Updates liveness and load (registry.ts), reconciles the server's
// chunks against the database, and hands back the commands queued for it. The master never calls a
// chunkserver: commands ride on this reply. Heartbeats stay cheap: reads are point lookups by chunk handle
// or by server, and one heartbeat's replica changes go to the commit queue as one batch op (not one per chunk).
// A shadow takes heartbeats for liveness only (so it can order replicas for reads): it writes nothing, queues
// no command and asks for no full report — replica rows reach it through the oplog. A heartbeat carrying a
// newer term than this server's means a shadow was promoted: a master hearing it is deposed (onNewerTerm).
import type { FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import type { ChunkHandle, ServerId } from '../shared/ids.js'
import { commandsPerHeartbeatMax, groupCommitOpsMax } from '../shared/limits.js'
import type { HeartbeatReply, HeartbeatRequest, StoredChunk } from '../shared/protocol.js'
import { notMasterError, type CommitQueue } from './commit-queue.js'
import { classifyCorrupt } from './corrupt.js'
import { sql, type ChunkRow, type Db } from './db.js'
import type { HeartbeatOp } from './ops.js'
import type { Registry } from './registry.js'
import type { InSyncSet } from './isr.js'
import type { MasterLease } from './lease.js'
import type { SafeMode } from './safe-mode.js'

const reconcileChunksPerTurn = 10_000   // event-loop turn granularity, not a bound: the schema bounds the report

export interface ChunkserverRouteDeps {
  db: Db
  queue: CommitQueue
  registry: Registry
  heartbeatIntervalMs: number
  now: () => number
  masterUrl: () => string | null      // who a refusal names as the master (a shadow's master, a deposed one's successor)
  onNewerTerm: (term: number, masterUrl: string | undefined) => void // a chunkserver has seen a newer term than this server's
  safeMode: SafeMode                  // while on, delete commands stay queued: nothing is destroyed on stale counts
  lease: MasterLease                  // each echo of this process's reply renews it (master/lease.ts)
  isr: InSyncSet                      // echoed in-sync epochs may complete a removal
}

export function heartbeatHandler (deps: ChunkserverRouteDeps) {
  return async function heartbeat (request: FastifyRequest): Promise<HeartbeatReply> {
    const body = request.body as HeartbeatRequest
    const { db, queue, registry } = deps
    // A chunkserver that has seen a newer term has met a newer master: this one must not command it.
    if (body.term > queue.term) {
      deps.onNewerTerm(body.term, body.masterUrl)
      throw new GranaryError('GRN_STALE_TERM', [queue.term, body.term])
    }
    if (queue.mode === 'deposed') throw notMasterError(queue, deps.masterUrl())
    const nowMs = deps.now()
    const wasAlive = registry.isAlive(body.serverId, nowMs)
    const state = registry.heartbeat(body, nowMs)
    if (!wasAlive) request.log.info({ serverId: body.serverId, url: body.url }, 'chunkserver alive')
    if (queue.mode === 'shadow') {
      const row = sql(db, 'SELECT url FROM servers WHERE serverId = ?').get(body.serverId) as { url: string } | undefined
      state.registeredAsIs = row?.url === body.url
      return { term: queue.term, heartbeatIntervalMs: deps.heartbeatIntervalMs, needFullReport: false, commands: [], role: 'shadow' }
    }
    const renewed = deps.lease.onHeartbeat(body.serverId, body.lease, queue.term)
    const ops: HeartbeatOp[] = []
    const registered = sql(db, 'SELECT url FROM servers WHERE serverId = ?').get(body.serverId) as { url: string } | undefined
    if (registered?.url !== body.url) ops.push({ type: 'registerServer', serverId: body.serverId, url: body.url })
    const deletes: StoredChunk[] = []
    if (body.fullReport !== undefined) await reconcileFullReport(db, body.serverId, body.fullReport, ops, deletes)
    for (const chunk of body.added ?? []) classifyReported(db, body.serverId, chunk, ops, deletes)
    for (const chunk of body.removed ?? []) {
      if (replicaRow(db, chunk.chunkHandle, body.serverId)) ops.push({ type: 'removeReplica', serverId: body.serverId, chunkHandle: chunk.chunkHandle, version: chunk.version })
    }
    for (const chunk of body.corrupt ?? []) classifyCorrupt(db, registry, body.serverId, chunk, nowMs, ops, deletes)
    await submitInBatches(queue, ops, deletes)
    // A removed row can leave a chunk under-replicated: the replicator looks at its next tick. (Added rows do not
    // count: every heartbeat during writes reports chunks not yet committed, and a scan reads every chunk.)
    if (ops.some((op) => op.type === 'removeReplica')) registry.noteReplicaChange()
    if (ops.some((op) => op.type === 'registerServer')) deps.lease.refreshVoters()
    deps.isr.onEchoes()
    for (const chunk of deletes) registry.queueDelete(body.serverId, chunk.chunkHandle, chunk.version)
    if (body.fullReport !== undefined) {
      state.fullReportSeen = true
      request.log.info({ serverId: body.serverId, chunkCount: body.fullReport.length, deleteCount: deletes.length }, 'chunkserver full report reconciled')
    }
    const reply: HeartbeatReply = { term: queue.term, heartbeatIntervalMs: deps.heartbeatIntervalMs, needFullReport: !state.fullReportSeen, commands: [] }
    if (deps.safeMode.active(nowMs)) return leased(reply, deps, renewed)   // queued deletes wait, and no follow-up is asked for
    reply.commands = registry.takeCommands(body.serverId, commandsPerHeartbeatMax)
    // A deleted tree can queue tens of thousands of deletes per server: the server asks again as soon as it
    // has run this batch, so garbage goes at disk speed instead of commandsPerHeartbeatMax per interval.
    if (registry.queuedCommandCount(body.serverId) > 0) reply.moreCommands = true
    return leased(reply, deps, renewed)
  }
}

// The lease fields of a master's reply, read last: sentAtMs is this process's clock as late as possible before
// the reply leaves, so it is never after the chunkserver receives it (which is what makes it safe to count).
function leased (reply: HeartbeatReply, deps: ChunkserverRouteDeps, renewed: boolean): HeartbeatReply {
  const { epoch, isr } = deps.isr.announced()
  reply.role = 'master'
  reply.instanceId = deps.lease.instanceId
  reply.isrEpoch = epoch
  reply.isr = isr
  if (deps.lease.released) reply.released = true
  if (!renewed) reply.leaseWanted = true
  reply.sentAtMs = deps.lease.now()
  return reply
}

// Every chunk the server holds, against the database: each reported chunk is classified, and every replica
// row naming this server that the report lacks (at that version) is removed.
async function reconcileFullReport (db: Db, serverId: ServerId, report: StoredChunk[], ops: HeartbeatOp[], deletes: StoredChunk[]): Promise<void> {
  const reported = new Set<string>()
  for (const [i, chunk] of report.entries()) {
    // A 500k-chunk report is ~1 s of point lookups: yield now and then so other requests are not stalled.
    if (i > 0 && i % reconcileChunksPerTurn === 0) await new Promise((resolve) => setImmediate(resolve))
    reported.add(`${chunk.chunkHandle}:${chunk.version}`)
    classifyReported(db, serverId, chunk, ops, deletes)
  }
  const rows = sql(db, 'SELECT chunkHandle, version FROM replicas WHERE serverId = ?').all(serverId) as Array<{ chunkHandle: ChunkHandle, version: number }>
  for (const row of rows) {
    if (!reported.has(`${row.chunkHandle}:${row.version}`)) ops.push({ type: 'removeReplica', serverId, chunkHandle: row.chunkHandle, version: row.version })
  }
}

// Unknown handle → delete; older version → delete (stale); same version and no row → addReplica (this
// includes chunks still 'allocated', i.e. being written). A newer version than the master knows is left
// alone: it may be the only copy of data a newer master wrote, and deleting it cannot be undone.
// A committed chunk's replica must also hold the committed bytes: a length or CRC (when reported) other than
// the committed row's is someone else's data under this (handle, version) — a write replayed with a stolen
// token, a handle reissued after a rollback — so it gets no row (any it had goes) and is deleted.
function classifyReported (db: Db, serverId: ServerId, chunk: StoredChunk, ops: HeartbeatOp[], deletes: StoredChunk[]): void {
  const known = sql(db, 'SELECT version, state, lengthBytes, crc32 FROM chunks WHERE chunkHandle = ?').get(chunk.chunkHandle) as
    Pick<ChunkRow, 'version' | 'state' | 'lengthBytes' | 'crc32'> | undefined
  if (known === undefined || chunk.version < known.version) deletes.push(chunk)
  else if (chunk.version === known.version && known.state === 'committed' &&
    (chunk.lengthBytes !== known.lengthBytes || (chunk.crc32 !== undefined && chunk.crc32 !== known.crc32))) {
    if (replicaRow(db, chunk.chunkHandle, serverId)) ops.push({ type: 'removeReplica', serverId, chunkHandle: chunk.chunkHandle, version: chunk.version })
    deletes.push(chunk)
  } else if (chunk.version === known.version && !replicaRow(db, chunk.chunkHandle, serverId)) {
    ops.push({ type: 'addReplica', serverId, chunkHandle: chunk.chunkHandle, version: chunk.version })
  }
}

function replicaRow (db: Db, chunkHandle: string, serverId: string): boolean {
  return sql(db, 'SELECT 1 FROM replicas WHERE chunkHandle = ? AND serverId = ?').get(chunkHandle, serverId) !== undefined
}

// One batch op per groupCommitOpsMax changes. The database may have moved since the reads above (a file
// deleted, a chunk re-versioned): apply() decides at commit, and an add it refuses becomes a delete.
async function submitInBatches (queue: CommitQueue, ops: HeartbeatOp[], deletes: StoredChunk[]): Promise<void> {
  const pending: Array<Promise<void>> = []
  for (let start = 0; start < ops.length; start += groupCommitOpsMax) {
    const batch = ops.slice(start, start + groupCommitOpsMax)
    pending.push(queue.submit({ type: 'batch', ops: batch }).then((results) => {
      for (const [i, op] of batch.entries()) {
        const outcome = (results[i] as { outcome?: string } | undefined)?.outcome
        if (op.type === 'addReplica' && (outcome === 'unknown' || outcome === 'stale')) {
          deletes.push({ chunkHandle: op.chunkHandle, version: op.version, lengthBytes: 0 })
        }
      }
    }))
  }
  await Promise.all(pending)
}
