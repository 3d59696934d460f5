// File contents on the master: chunk rows (handle, version, length, CRC, state), replica rows, writer leases,
// and dropping an unfinished or deleted file's chunks. Every function here runs inside apply()'s transaction
// and is deterministic given the db and its arguments (time comes in as nowMs, never from the clock).
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { chunkHandleFromNumber, chunkHandlesPerTermMax, chunkHandleTermMax, firstChunkNumberOfTerm, type ChunkHandle, type InodeId, type LeaseId, type ServerId } from '../shared/ids.js'
import { readMeta, sql, type ChunkRow, type Db, type InodeRow } from './db.js'

// A replica the master stopped wanting (file deleted, upload dropped, version superseded): its holder gets a
// delete command on its next heartbeat. Not part of an op's logged result; the master alone acts on it.
export interface DroppedReplica { chunkHandle: ChunkHandle, serverId: ServerId, version: number }
export interface Applied<R = unknown> { result: R, dropped: DroppedReplica[] }

export function getInode (db: Db, inodeId: number): InodeRow | undefined {
  return sql(db, 'SELECT * FROM inodes WHERE id = ?').get(inodeId) as InodeRow | undefined
}

export function chunkCountOf (db: Db, inodeId: number): number {
  return (sql(db, 'SELECT count(*) AS n FROM chunks WHERE inodeId = ?').get(inodeId) as { n: number }).n
}

// The inode a writer names, checked to be an unfinished file whose lease is this writer's and, when nowMs is
// given, not yet expired.
export function requireLease (db: Db, inodeId: number, leaseId: string, nowMs: number | null): InodeRow {
  const inode = getInode(db, inodeId)
  if (inode === undefined || inode.state !== 'writing' || inode.leaseId !== leaseId) {
    throw new GranaryError('GRN_LEASE_EXPIRED', [`inode ${inodeId}`])
  }
  assert(inode.leaseExpiresAtMs !== null, 'a file being written has a lease expiry')
  if (nowMs !== null && inode.leaseExpiresAtMs <= nowMs) throw new GranaryError('GRN_LEASE_EXPIRED', [`inode ${inodeId}`])
  return inode
}

function extendLease (db: Db, inodeId: number, leaseExpiresAtMs: number): void {
  sql(db, 'UPDATE inodes SET leaseExpiresAtMs = max(leaseExpiresAtMs, ?) WHERE id = ?').run(leaseExpiresAtMs, inodeId)
}

function leaseExpiry (db: Db, inodeId: number): number {
  const row = sql(db, 'SELECT leaseExpiresAtMs FROM inodes WHERE id = ?').get(inodeId) as { leaseExpiresAtMs: number }
  return row.leaseExpiresAtMs
}

export interface AllocateArgs { inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, serverIds: ServerId[], leaseExpiresAtMs: number, nowMs: number }
export interface AllocateResult { chunkHandle: ChunkHandle, version: number, serverIds: ServerId[], leaseExpiresAtMs: number }

// A new index gets a new handle at version 1. An index allocated but never committed keeps its handle and
// gets version + 1 (a failed pipeline retried elsewhere): replicas of the old version are dropped, so a
// chunkserver that kept a half-written copy is told to delete it.
export function allocateChunk (db: Db, args: AllocateArgs): Applied<AllocateResult> {
  const inode = requireLease(db, args.inodeId, args.leaseId, args.nowMs)
  assert(args.serverIds.length === inode.replication, 'the pipeline has one server per replica')
  assert(new Set(args.serverIds).size === args.serverIds.length, 'the pipeline servers are distinct')
  const chunkCount = chunkCountOf(db, inode.id)
  if (args.chunkIndex > chunkCount) {
    throw new GranaryError('GRN_CHUNK_MISMATCH', [`index ${args.chunkIndex} of inode ${inode.id}`, `the file has ${chunkCount} chunks; allocating it would leave a hole`])
  }
  const existing = chunkAt(db, inode.id, args.chunkIndex)
  let dropped: DroppedReplica[] = []
  let chunkHandle: ChunkHandle
  let version: number
  if (existing === undefined) {
    const number = nextChunkNumber(db)
    chunkHandle = chunkHandleFromNumber(number)
    version = 1
    sql(db, 'UPDATE meta SET nextChunkNumber = ? WHERE id = 1').run(number + 1)
    sql(db, "INSERT INTO chunks (chunkHandle, inodeId, chunkIndex, version, state) VALUES (?, ?, ?, 1, 'allocated')").run(chunkHandle, inode.id, args.chunkIndex)
  } else {
    if (existing.state === 'committed') {
      throw new GranaryError('GRN_CHUNK_MISMATCH', [existing.chunkHandle, `index ${args.chunkIndex} is already committed`])
    }
    chunkHandle = existing.chunkHandle as ChunkHandle
    version = existing.version + 1
    dropped = replicasOf(db, chunkHandle)
    sql(db, 'DELETE FROM replicas WHERE chunkHandle = ?').run(chunkHandle)
    sql(db, 'UPDATE chunks SET version = ? WHERE chunkHandle = ?').run(version, chunkHandle)
  }
  extendLease(db, inode.id, args.leaseExpiresAtMs)
  return { result: { chunkHandle, version, serverIds: args.serverIds, leaseExpiresAtMs: leaseExpiry(db, inode.id) }, dropped }
}

// The next handle, as a number: the counter, moved up to the first handle of the current term when the term has
// passed it (shared/ids.ts). Deterministic: term and counter are both in meta, which the oplog replays.
function nextChunkNumber (db: Db): number {
  const meta = readMeta(db)
  if (meta.term > chunkHandleTermMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['the term a chunk handle carries', chunkHandleTermMax])
  const first = firstChunkNumberOfTerm(meta.term)
  const number = Math.max(meta.nextChunkNumber, first)
  if (number - first >= chunkHandlesPerTermMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`chunk handles in term ${meta.term}`, chunkHandlesPerTermMax])
  return number
}

export interface CommitArgs {
  inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, chunkHandle: ChunkHandle, version: number,
  lengthBytes: number, crc32: number, serverIds: ServerId[], leaseExpiresAtMs: number, nowMs: number
}

// Records a chunk as written. Committing again with identical values succeeds without change (a retried
// commit whose reply was lost); different values are refused.
export function commitChunk (db: Db, args: CommitArgs): Applied<{ leaseExpiresAtMs: number }> {
  const inode = requireLease(db, args.inodeId, args.leaseId, args.nowMs)
  if (args.lengthBytes > inode.chunkSizeBytes) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunk length ${args.lengthBytes} is over the file's chunk size ${inode.chunkSizeBytes}`])
  }
  const chunk = chunkAt(db, inode.id, args.chunkIndex)
  if (chunk === undefined || chunk.chunkHandle !== args.chunkHandle) {
    throw new GranaryError('GRN_CHUNK_MISMATCH', [args.chunkHandle, `is not chunk ${args.chunkIndex} of inode ${inode.id}`])
  }
  if (args.version < chunk.version) throw new GranaryError('GRN_STALE_VERSION', [chunk.chunkHandle, args.version, chunk.version])
  if (args.version > chunk.version) throw new GranaryError('GRN_CHUNK_MISMATCH', [chunk.chunkHandle, `version ${args.version} was never issued`])
  if (new Set(args.serverIds).size !== args.serverIds.length) throw new GranaryError('GRN_INVALID_ARGUMENT', ['serverIds repeat a server'])
  for (const serverId of args.serverIds) {
    if (!serverKnown(db, serverId)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown chunkserver ${serverId}`])
  }
  if (chunk.state === 'committed') {
    if (chunk.lengthBytes !== args.lengthBytes || chunk.crc32 !== args.crc32) {
      throw new GranaryError('GRN_CHUNK_MISMATCH', [chunk.chunkHandle, 'already committed with a different length or CRC'])
    }
  } else {
    sql(db, "UPDATE chunks SET state = 'committed', lengthBytes = ?, crc32 = ? WHERE chunkHandle = ?").run(args.lengthBytes, args.crc32, chunk.chunkHandle)
  }
  const insert = sql(db, 'INSERT OR IGNORE INTO replicas (chunkHandle, serverId, version) VALUES (?, ?, ?)')
  for (const serverId of args.serverIds) insert.run(chunk.chunkHandle, serverId, chunk.version)
  extendLease(db, inode.id, args.leaseExpiresAtMs)
  return { result: { leaseExpiresAtMs: leaseExpiry(db, inode.id) }, dropped: [] }
}

// complete()'s check of the chunk list: 0..chunkCount-1 all committed, every one but the last full, the
// lengths summing to sizeBytes, and nothing beyond.
export function checkCompleteChunks (db: Db, inode: InodeRow, sizeBytes: number, chunkCount: number): void {
  const rows = sql(db, 'SELECT chunkHandle, chunkIndex, state, lengthBytes FROM chunks WHERE inodeId = ? ORDER BY chunkIndex')
    .all(inode.id) as Array<Pick<ChunkRow, 'chunkHandle' | 'chunkIndex' | 'state' | 'lengthBytes'>>
  const what = `inode ${inode.id}`
  if (rows.length !== chunkCount) throw new GranaryError('GRN_CHUNK_MISMATCH', [what, `has ${rows.length} chunks, complete names ${chunkCount}`])
  let totalBytes = 0
  for (const [i, row] of rows.entries()) {
    assert(row.chunkIndex === i, 'allocate never leaves a hole in the chunk list')
    if (row.state !== 'committed') throw new GranaryError('GRN_CHUNK_MISMATCH', [row.chunkHandle, `chunk ${i} is not committed`])
    if (i < rows.length - 1 && row.lengthBytes !== inode.chunkSizeBytes) {
      throw new GranaryError('GRN_CHUNK_MISMATCH', [row.chunkHandle, `chunk ${i} holds ${row.lengthBytes} bytes; every chunk but the last must hold ${inode.chunkSizeBytes}`])
    }
    totalBytes += row.lengthBytes
  }
  if (totalBytes !== sizeBytes) throw new GranaryError('GRN_CHUNK_MISMATCH', [what, `chunks hold ${totalBytes} bytes, complete names ${sizeBytes}`])
}

export function renewLease (db: Db, args: { inodeId: InodeId, leaseId: LeaseId, leaseExpiresAtMs: number, nowMs: number }): Applied<{ leaseExpiresAtMs: number }> {
  const inode = requireLease(db, args.inodeId, args.leaseId, args.nowMs)
  extendLease(db, inode.id, args.leaseExpiresAtMs)
  return { result: { leaseExpiresAtMs: leaseExpiry(db, inode.id) }, dropped: [] }
}

// The writer gives up; its lease may already have expired, but it must still be the writer. A file that is
// already gone (expired and dropped, or completed) is not an error: there is nothing left to abandon.
export function abandonFile (db: Db, args: { inodeId: InodeId, leaseId: LeaseId }): Applied<{ abandoned: boolean }> {
  const inode = getInode(db, args.inodeId)
  if (inode === undefined || inode.state !== 'writing') return { result: { abandoned: false }, dropped: [] }
  requireLease(db, args.inodeId, args.leaseId, null)
  return { result: { abandoned: true }, dropped: dropWritingFile(db, inode.id) }
}

// From the lease tick. The lease may have been renewed since the tick read it: then nothing happens.
export function expireLease (db: Db, args: { inodeId: InodeId, nowMs: number }): Applied<{ expired: boolean }> {
  const inode = getInode(db, args.inodeId)
  if (inode === undefined || inode.state !== 'writing' || (inode.leaseExpiresAtMs ?? 0) > args.nowMs) {
    return { result: { expired: false }, dropped: [] }
  }
  return { result: { expired: true }, dropped: dropWritingFile(db, inode.id) }
}

export function dropWritingFile (db: Db, inodeId: number): DroppedReplica[] {
  const { dropped } = dropChunksOf(db, [inodeId])
  deleteInodes(db, [inodeId])
  return dropped
}

// Deletes the chunk and replica rows of these files and returns the replicas to delete on chunkservers.
// The ids travel as one JSON array (json_each) so a recursive delete is three statements, not 3 × n.
export function dropChunksOf (db: Db, inodeIds: readonly number[]): { dropped: DroppedReplica[], chunkCount: number } {
  if (inodeIds.length === 0) return { dropped: [], chunkCount: 0 }
  const ids = JSON.stringify(inodeIds)
  const dropped = sql(db, `SELECT r.chunkHandle, r.serverId, r.version FROM chunks c JOIN replicas r ON r.chunkHandle = c.chunkHandle
    WHERE c.inodeId IN (SELECT value FROM json_each(?)) ORDER BY r.chunkHandle, r.serverId`).all(ids) as DroppedReplica[]
  sql(db, 'DELETE FROM replicas WHERE chunkHandle IN (SELECT chunkHandle FROM chunks WHERE inodeId IN (SELECT value FROM json_each(?)))').run(ids)
  const chunkCount = sql(db, 'DELETE FROM chunks WHERE inodeId IN (SELECT value FROM json_each(?))').run(ids).changes
  return { dropped, chunkCount }
}

// One statement, so the parentId foreign key is checked once at its end (children and parents go together).
export function deleteInodes (db: Db, inodeIds: readonly number[]): number {
  if (inodeIds.length === 0) return 0
  assert(!inodeIds.includes(1), 'the root is never deleted')
  return sql(db, 'DELETE FROM inodes WHERE id IN (SELECT value FROM json_each(?))').run(JSON.stringify(inodeIds)).changes
}

// ---------------------------------------------------------------------------------------------------------
// Replica bookkeeping from heartbeats. These never throw on a race with a delete or a new version: the
// outcome tells the heartbeat handler what to tell the chunkserver.

export type AddReplicaOutcome = 'added' | 'present' | 'unknown' | 'stale' | 'newer'

export function registerServer (db: Db, args: { serverId: ServerId, url: string }): Applied<{ registered: boolean }> {
  sql(db, 'INSERT INTO servers (serverId, url) VALUES (?, ?) ON CONFLICT (serverId) DO UPDATE SET url = excluded.url').run(args.serverId, args.url)
  return { result: { registered: true }, dropped: [] }
}

export function addReplica (db: Db, args: { chunkHandle: ChunkHandle, serverId: ServerId, version: number }): Applied<{ outcome: AddReplicaOutcome }> {
  assert(serverKnown(db, args.serverId), 'a chunkserver is registered before its replicas are recorded')
  const chunk = sql(db, 'SELECT version FROM chunks WHERE chunkHandle = ?').get(args.chunkHandle) as { version: number } | undefined
  let outcome: AddReplicaOutcome
  if (chunk === undefined) outcome = 'unknown'
  else if (args.version < chunk.version) outcome = 'stale'
  else if (args.version > chunk.version) outcome = 'newer'
  else {
    const changes = sql(db, 'INSERT OR IGNORE INTO replicas (chunkHandle, serverId, version) VALUES (?, ?, ?)').run(args.chunkHandle, args.serverId, args.version).changes
    outcome = changes === 1 ? 'added' : 'present'
  }
  return { result: { outcome }, dropped: [] }
}

// Only a row at this version or older goes: a server that reports deleting version 1 may already hold the
// version 2 written by a retried pipeline.
export function removeReplica (db: Db, args: { chunkHandle: ChunkHandle, serverId: ServerId, version: number }): Applied<{ removed: boolean }> {
  const changes = sql(db, 'DELETE FROM replicas WHERE chunkHandle = ? AND serverId = ? AND version <= ?').run(args.chunkHandle, args.serverId, args.version).changes
  return { result: { removed: changes === 1 }, dropped: [] }
}

function chunkAt (db: Db, inodeId: number, chunkIndex: number): ChunkRow | undefined {
  return sql(db, 'SELECT * FROM chunks WHERE inodeId = ? AND chunkIndex = ?').get(inodeId, chunkIndex) as ChunkRow | undefined
}

function replicasOf (db: Db, chunkHandle: string): DroppedReplica[] {
  return sql(db, 'SELECT chunkHandle, serverId, version FROM replicas WHERE chunkHandle = ? ORDER BY serverId').all(chunkHandle) as DroppedReplica[]
}

function serverKnown (db: Db, serverId: string): boolean {
  return sql(db, 'SELECT 1 FROM servers WHERE serverId = ?').get(serverId) !== undefined
}
