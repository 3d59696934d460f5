// client → master: the namespace, the write path (create, allocate, commit, complete, renew, abandon), the
// read path (open), health and the cluster report. Reads go straight to the database; every mutation goes
// through the commit queue, and its reply is sent only after its transaction committed. Paths pass through
// normalizePath first (GRN_INVALID_PATH). The schemas are protocol.ts's, attached in server.ts.
import type { FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import { newLeaseId, type ChunkHandle, type RequestId, type ServerId } from '../shared/ids.js'
import * as limits from '../shared/limits.js'
import { normalizePath, splitPath } from '../shared/paths.js'
import type * as p from '../shared/protocol.js'
import { dirModeDefault, fileModeDefault } from '../shared/protocol.js'
import { signToken } from '../shared/token.js'
import { requireLease, type AllocateResult } from './chunks.js'
import type { CommitQueue } from './commit-queue.js'
import { sql, type Db } from './db.js'
import { diskUsage, listDir, resolvePath, statOf } from './namespace.js'
import { storedReply } from './oplog.js'
import { choosePipeline } from './placement.js'
import type { Registry } from './registry.js'
import type { SafeMode } from './safe-mode.js'
import type { ShadowTracker } from './shadow-tracker.js'
import { checkpointName, inTrash, newestTrashed, originalNames, trashRoot } from './trash.js'

export interface ClientRouteDeps {
  db: Db
  queue: CommitQueue
  registry: Registry
  secret: Buffer
  leaseTtlMs: number
  tokenTtlMs: number
  trashRetentionMs: number                                         // 0: deletes skip the trash
  deadAfterMs: number
  startedAtMs: number
  safeMode: SafeMode                                               // shared with the heartbeat handler
  now: () => number
  shadows?: ShadowTracker                                          // a master's followers (report)
  follower?: { report: (nowMs: number) => p.FollowReport }         // a shadow's view of its master (health, report)
}

type Handler<R> = (request: FastifyRequest) => Promise<R>

export function clientHandlers (deps: ClientRouteDeps) {
  return { ...namespaceHandlers(deps), ...writeHandlers(deps), ...readHandlers(deps) }
}

function namespaceHandlers (deps: ClientRouteDeps) {
  const { db, queue } = deps
  const mkdir: Handler<p.MkdirReply> = async (request) => {
    const body = request.body as p.MkdirRequest
    return await queue.submit({ type: 'mkdir', path: normalizePath(body.path), parents: body.parents ?? false, mtimeMs: deps.now(), mode: body.mode ?? dirModeDefault }, body.requestId)
  }
  const stat: Handler<p.StatReply> = async (request) => {
    const { row, path } = resolvePath(db, normalizePath((request.query as p.StatQuery).path))
    return statOf(db, row, path)
  }
  const list: Handler<p.ListReply> = async (request) => {
    const query = request.query as p.ListQuery
    return listDir(db, normalizePath(query.path), query.after ?? '', query.limit ?? limits.listPageSizeDefault)
  }
  const rename: Handler<p.RenameReply> = async (request) => {
    const body = request.body as p.RenameRequest
    return await queue.submit({ type: 'rename', source: normalizePath(body.source), target: normalizePath(body.target), mtimeMs: deps.now() }, body.requestId)
  }
  // The checkpoint (the trash folder's name) is this request's time, decided here so apply() stays deterministic.
  const remove: Handler<p.DeleteReply> = async (request) => {
    const body = request.body as p.DeleteRequest
    const nowMs = deps.now()
    const trash = body.skipTrash === true || deps.trashRetentionMs === 0 ? null : checkpointName(nowMs)
    return await queue.submit({ type: 'delete', path: normalizePath(body.path), recursive: body.recursive ?? false, mtimeMs: nowMs, trash }, body.requestId)
  }
  const restore: Handler<p.RestoreReply> = async (request) => {
    const body = request.body as p.RestoreRequest
    const { source, target } = restoreSource(db, normalizePath(body.path), body.target === undefined ? undefined : normalizePath(body.target))
    return await queue.submit({ type: 'restore', source, target, mtimeMs: deps.now() }, body.requestId)
  }
  const du: Handler<p.DuReply> = async (request) => diskUsage(db, normalizePath((request.query as p.DuQuery).path))
  const concat: Handler<p.ConcatReply> = async (request) => {
    const body = request.body as p.ConcatRequest
    return await queue.submit({
      type: 'concat', target: normalizePath(body.target), sources: body.sources.map(normalizePath), mtimeMs: body.mtimeMs ?? deps.now(),
      ...(body.attrs === undefined ? {} : { attrs: body.attrs })
    }, body.requestId)
  }
  return { mkdir, stat, list, rename, remove, restore, du, concat }
}

// Each handler decides the op's time, lease expiry and lease id here, before apply() (which must be deterministic).
function writeHandlers (deps: ClientRouteDeps) {
  const { db, queue } = deps
  // With allocateFirstChunk, chunk 0 is placed here and allocated in the same op (one round trip fewer for every
  // file); when no pipeline can be placed the file is still created and the client allocates as usual.
  const create: Handler<p.CreateReply> = async (request) => {
    const body = request.body as p.CreateRequest
    const nowMs = deps.now()
    const replication = body.replication ?? limits.replicationDefault
    const chunkSizeBytes = body.chunkSizeBytes ?? limits.chunkSizeBytesDefault
    const result = await queue.submit({
      type: 'create',
      path: normalizePath(body.path),
      replication,
      chunkSizeBytes,
      overwrite: body.overwrite ?? false,
      mode: body.mode ?? fileModeDefault,
      ...(body.attrs === undefined ? {} : { attrs: body.attrs }),
      leaseId: newLeaseId(),
      leaseExpiresAtMs: nowMs + deps.leaseTtlMs,
      nowMs,
      firstChunk: body.allocateFirstChunk === true ? firstChunkPlacement(deps, replication, chunkSizeBytes, nowMs) : undefined
    }, body.requestId)
    const { firstChunk, ...created } = result
    return firstChunk === undefined ? created : { ...created, firstChunk: allocationReply(deps, firstChunk, nowMs) }
  }
  const allocate: Handler<p.AllocateReply> = async (request) => {
    const body = request.body as p.AllocateRequest
    const nowMs = deps.now()
    const result = storedAllocation(db, body.requestId) ?? await allocateNew(deps, body, nowMs)
    return allocationReply(deps, result, nowMs)
  }
  // With complete, this is the file's last chunk: committed and the file completed in one op (complete's rules).
  const commit: Handler<p.CommitReply> = async (request) => {
    const b = request.body as p.CommitRequest
    const nowMs = deps.now()
    const completion = b.complete === undefined ? undefined : {
      sizeBytes: b.complete.sizeBytes, chunkCount: b.complete.chunkCount, mtimeMs: b.complete.mtimeMs ?? nowMs,
      ...(b.complete.attrs === undefined ? {} : { attrs: b.complete.attrs }),
      ...(b.complete.bind === undefined ? {} : { bind: normalizedBind(b.complete.bind) })
    }
    return await queue.submit({
      type: 'commit', inodeId: b.inodeId, leaseId: b.leaseId, chunkIndex: b.chunkIndex, chunkHandle: b.chunkHandle, version: b.version,
      lengthBytes: b.lengthBytes, crc32: b.crc32, serverIds: b.serverIds, leaseExpiresAtMs: nowMs + deps.leaseTtlMs, nowMs, complete: completion
    }, b.requestId)
  }
  const complete: Handler<p.CompleteReply> = async (request) => {
    const b = request.body as p.CompleteRequest
    const nowMs = deps.now()
    return await queue.submit({
      type: 'complete', inodeId: b.inodeId, leaseId: b.leaseId, sizeBytes: b.sizeBytes, chunkCount: b.chunkCount, mtimeMs: b.mtimeMs ?? nowMs, nowMs,
      ...(b.attrs === undefined ? {} : { attrs: b.attrs }),
      ...(b.bind === undefined ? {} : { bind: normalizedBind(b.bind) })
    }, b.requestId)
  }
  const renew: Handler<p.RenewReply> = async (request) => {
    const b = request.body as p.RenewRequest
    const nowMs = deps.now()
    return await queue.submit({ type: 'renew', inodeId: b.inodeId, leaseId: b.leaseId, leaseExpiresAtMs: nowMs + deps.leaseTtlMs, nowMs })
  }
  const abandon: Handler<p.AbandonReply> = async (request) => {
    const b = request.body as p.AbandonRequest
    return await queue.submit({ type: 'abandon', inodeId: b.inodeId, leaseId: b.leaseId }, b.requestId)
  }
  // Files made ahead, each with chunk 0 placed and allocated (placement spreads them as it does any chunk). A
  // cluster with too few live chunkservers reserves none (GRN_NO_CHUNKSERVERS): the client writes as usual.
  const reserve: Handler<p.ReserveReply> = async (request) => {
    const b = request.body as p.ReserveRequest
    const nowMs = deps.now()
    const replication = b.replication ?? limits.replicationDefault
    const chunkSizeBytes = b.chunkSizeBytes ?? limits.chunkSizeBytesDefault
    const candidates = deps.registry.placementCandidates(nowMs)
    const files = Array.from({ length: b.count }, () => {
      const serverIds = choosePipeline(candidates, { replication, chunkSizeBytes, excludeServerIds: [] }).map((server) => server.serverId)
      for (const candidate of candidates) if (serverIds.includes(candidate.serverId)) candidate.load++   // the next one spreads (allocationReply counts them in the registry)
      return { leaseId: newLeaseId(), serverIds }
    })
    const reserved = await queue.submit({ type: 'reserve', replication, chunkSizeBytes, leaseExpiresAtMs: nowMs + deps.leaseTtlMs, nowMs, files }, b.requestId)
    return {
      reservations: reserved.map(({ firstChunk, ...file }) => ({ ...file, firstChunk: allocationReply(deps, firstChunk, nowMs) })),
      usableForMs: Math.floor(Math.min(deps.leaseTtlMs, deps.tokenTtlMs) / 2)
    }
  }
  return { create, allocate, commit, complete, renew, abandon, reserve }
}

function normalizedBind (bind: p.BindArgs): p.BindArgs {
  return { ...bind, path: normalizePath(bind.path) }
}

function readHandlers (deps: ClientRouteDeps) {
  const open: Handler<p.OpenReply> = async (request) => openFile(deps, normalizePath((request.query as p.OpenQuery).path))
  const health: Handler<p.HealthReply> = async () => {
    const nowMs = deps.now()
    return { role: roleOf(deps.queue), term: deps.queue.term, seq: deps.queue.seq, safeMode: safeMode(deps, nowMs), ...roleDetails(deps, nowMs, false) }
  }
  const report: Handler<p.ClusterReport> = async () => clusterReport(deps, deps.now())
  return { open, health, report }
}

// What restore moves where: a path in the trash names the entry itself; any other path names where it was deleted
// from, and the newest trashed copy is taken. The target defaults to the path it was deleted from.
function restoreSource (db: Db, path: string, target: string | undefined): { source: string, target: string } {
  const names = splitPath(path)
  if (inTrash(names)) {
    const original = originalNames(names)
    if (original === undefined) throw new GranaryError('GRN_INVALID_PATH', [path, `name an entry inside a checkpoint (${trashRoot}/<checkpoint>/...)`])
    return { source: path, target: target ?? '/' + original.join('/') }
  }
  if (names.length === 0) throw new GranaryError('GRN_INVALID_PATH', [path, 'the root is never in the trash'])
  const source = newestTrashed(db, names)
  if (source === undefined) throw new GranaryError('GRN_NOT_FOUND', [`${path} in the trash (${trashRoot})`])
  return { source, target: target ?? path }
}

// A pipeline for a new file's chunk 0, or undefined when none can be placed now (the create goes ahead without it).
function firstChunkPlacement (deps: ClientRouteDeps, replication: number, chunkSizeBytes: number, nowMs: number): { serverIds: ServerId[] } | undefined {
  try {
    const pipeline = choosePipeline(deps.registry.placementCandidates(nowMs), { replication, chunkSizeBytes, excludeServerIds: [] })
    return { serverIds: pipeline.map((server) => server.serverId) }
  } catch (err) {
    if (err instanceof GranaryError && err.code === 'GRN_NO_CHUNKSERVERS') return undefined
    throw err
  }
}

// An allocation as the client gets it: the pipeline's URLs and a fresh write token. The token names the pipeline:
// it writes on these servers only, each forwarding to the next (a copy of it replayed to any other server is
// refused there).
function allocationReply (deps: ClientRouteDeps, result: AllocateResult, nowMs: number): p.AllocateReply {
  const { db, queue } = deps
  deps.registry.noteAllocation(result.serverIds, nowMs)
  const tokenExpiresAtMs = nowMs + deps.tokenTtlMs
  const pipeline = result.serverIds.map((serverId) => ({ serverId, url: serverUrl(db, serverId) }))
  return {
    chunkHandle: result.chunkHandle,
    version: result.version,
    term: queue.term,
    pipeline,
    token: signToken(deps.secret, { chunkHandle: result.chunkHandle, version: result.version, mode: 'write', expiresAtMs: tokenExpiresAtMs, term: queue.term, pipeline }),
    tokenExpiresAtMs,
    leaseExpiresAtMs: result.leaseExpiresAtMs
  }
}

// A retried allocate whose first attempt committed gets that allocation back (with a fresh token), even if
// placement would now fail.
function storedAllocation (db: Db, requestId: RequestId | undefined): AllocateResult | undefined {
  return requestId === undefined ? undefined : storedReply(db, requestId) as AllocateResult | undefined
}

async function allocateNew (deps: ClientRouteDeps, body: p.AllocateRequest, nowMs: number): Promise<AllocateResult> {
  // Read first to learn the file's replication and chunk size for placement; apply() checks the lease again.
  const inode = requireLease(deps.db, body.inodeId, body.leaseId, nowMs)
  const pipeline = choosePipeline(deps.registry.placementCandidates(nowMs), {
    replication: inode.replication, chunkSizeBytes: inode.chunkSizeBytes, excludeServerIds: body.excludeServerIds ?? []
  })
  return await deps.queue.submit({
    type: 'allocate', inodeId: body.inodeId, leaseId: body.leaseId, chunkIndex: body.chunkIndex,
    serverIds: pipeline.map((s) => s.serverId), leaseExpiresAtMs: nowMs + deps.leaseTtlMs, nowMs
  }, body.requestId)
}

function serverUrl (db: Db, serverId: ServerId): string {
  const row = sql(db, 'SELECT url FROM servers WHERE serverId = ?').get(serverId) as { url: string } | undefined
  if (row === undefined) throw new GranaryError('GRN_INTERNAL', [`chunkserver ${serverId} has no registered url`])
  return row.url
}

interface ChunkReplicaRow { chunkIndex: number, chunkHandle: ChunkHandle, version: number, lengthBytes: number, crc32: number, serverId: ServerId | null, url: string | null }

// Every chunk with its replicas (live ones first, then those on servers dead or not heard from since this
// master started) and a read token each.
function openFile (deps: ClientRouteDeps, path: string): p.OpenReply {
  const { db, queue } = deps
  const resolved = resolvePath(db, path)
  if (resolved.row.type === 'dir') throw new GranaryError('GRN_IS_DIR', [resolved.path])
  const rows = sql(db, `SELECT c.chunkIndex, c.chunkHandle, c.version, c.lengthBytes, c.crc32, r.serverId, s.url
    FROM chunks c LEFT JOIN replicas r ON r.chunkHandle = c.chunkHandle AND r.version = c.version
    LEFT JOIN servers s ON s.serverId = r.serverId WHERE c.inodeId = ? ORDER BY c.chunkIndex, r.serverId`).all(resolved.row.id) as ChunkReplicaRow[]
  const nowMs = deps.now()
  const tokenExpiresAtMs = nowMs + deps.tokenTtlMs
  const chunks: p.ChunkLocation[] = []
  const dead: p.ChunkserverAddress[][] = []
  for (const row of rows) {
    let chunk = chunks[chunks.length - 1]
    if (chunk === undefined || chunk.chunkIndex !== row.chunkIndex) {
      const token = signToken(deps.secret, { chunkHandle: row.chunkHandle, version: row.version, mode: 'read', expiresAtMs: tokenExpiresAtMs, term: queue.term })
      chunk = { chunkIndex: row.chunkIndex, chunkHandle: row.chunkHandle, version: row.version, lengthBytes: row.lengthBytes, crc32: row.crc32, replicas: [], token }
      chunks.push(chunk)
      dead.push([])
    }
    if (row.serverId === null || row.url === null) continue
    const address = { serverId: row.serverId, url: row.url }
    if (deps.registry.isAlive(row.serverId, nowMs)) chunk.replicas.push(address)
    else (dead[dead.length - 1] as p.ChunkserverAddress[]).push(address)
  }
  for (const [i, chunk] of chunks.entries()) {
    chunk.replicas = [...rotated(chunk.replicas, chunk.chunkHandle), ...(dead[i] as p.ChunkserverAddress[])]
  }
  return { stat: statOf(db, resolved.row, resolved.path, chunks.length), chunks, term: queue.term, tokenExpiresAtMs }
}

// The live replicas in an order that starts at a different server for different chunks (by the handle's low
// bits): clients read from the first, so listing them by server id sent every read to one chunkserver (measured:
// one server at ~400 µs of CPU per 4 KiB get, the other two idle). Per chunk the order is stable, so repeated
// reads of a chunk find it in the same server's page cache. (HDFS shuffles replicas at equal distance.)
function rotated (replicas: p.ChunkserverAddress[], chunkHandle: string): p.ChunkserverAddress[] {
  if (replicas.length < 2) return replicas
  const start = Number.parseInt(chunkHandle.slice(-6), 16) % replicas.length
  return [...replicas.slice(start), ...replicas.slice(0, start)]
}

// Safe mode (master/safe-mode.ts): reported in health and the report; it gates deletion, not requests.
function safeMode (deps: ClientRouteDeps, nowMs: number): boolean {
  return deps.safeMode.active(nowMs)
}

function clusterReport (deps: ClientRouteDeps, nowMs: number): p.ClusterReport {
  const { db, queue, registry } = deps
  const counts = sql(db, `SELECT
      (SELECT count(*) FROM inodes WHERE type = 'file' AND state = 'closed') AS fileCount,
      (SELECT count(*) FROM inodes WHERE type = 'dir') AS dirCount,
      (SELECT count(*) FROM chunks) AS chunkCount,
      (SELECT coalesce(sum(sizeBytes), 0) FROM inodes WHERE type = 'file' AND state = 'closed') AS sizeBytes`).get() as
    { fileCount: number, dirCount: number, chunkCount: number, sizeBytes: number }
  // Committed chunks with fewer live replicas than their file's replication (missing: none live at all).
  const health = sql(db, `SELECT coalesce(sum(live < replication), 0) AS under, coalesce(sum(live = 0), 0) AS missing FROM (
      SELECT i.replication, (SELECT count(*) FROM replicas r WHERE r.chunkHandle = c.chunkHandle AND r.version = c.version
        AND r.serverId IN (SELECT value FROM json_each(?))) AS live
      FROM chunks c JOIN inodes i ON i.id = c.inodeId WHERE c.state = 'committed')`).get(JSON.stringify(registry.liveServerIds(nowMs))) as
    { under: number, missing: number }
  const registered = sql(db, 'SELECT serverId, url FROM servers ORDER BY serverId').all() as Array<{ serverId: ServerId, url: string }>
  const servers = registered.map(({ serverId, url }): p.ServerReport => {
    const state = registry.get(serverId)
    return {
      serverId, url: state?.url ?? url, alive: registry.isAlive(serverId, nowMs),
      lastHeartbeatAgeMs: state === undefined ? null : nowMs - state.lastHeartbeatMs,
      capacityBytes: state?.capacityBytes ?? 0, freeBytes: state?.freeBytes ?? 0, usedBytes: state?.usedBytes ?? 0,
      chunkCount: state?.chunkCount ?? 0, activeWrites: state?.activeWrites ?? 0, corruptReplicas: state?.corruptCount ?? 0
    }
  })
  const corruptReplicas = servers.reduce((sum, s) => sum + (s.alive ? s.corruptReplicas ?? 0 : 0), 0)
  return {
    role: roleOf(queue), term: queue.term, seq: queue.seq, safeMode: safeMode(deps, nowMs), ...counts,
    underReplicatedChunks: health.under, missingChunks: health.missing, corruptReplicas, servers, ...roleDetails(deps, nowMs, true)
  }
}

// A deposed master still says 'master' (it is one, of an old term) and adds fencedByTerm.
function roleOf (queue: CommitQueue): p.Role {
  return queue.mode === 'shadow' ? 'shadow' : 'master'
}

// The shadows list is for the report only: health stays small and cheap.
function roleDetails (deps: ClientRouteDeps, nowMs: number, withShadows: boolean): Pick<p.ClusterReport, 'shadows' | 'following' | 'fencedByTerm'> {
  const { queue } = deps
  if (queue.mode === 'shadow') return deps.follower === undefined ? {} : { following: deps.follower.report(nowMs) }
  if (queue.mode === 'deposed') return { fencedByTerm: queue.fencedByTerm ?? undefined }
  return deps.shadows === undefined || !withShadows ? {} : { shadows: deps.shadows.report(deps.db, queue.seq, nowMs) }
}
