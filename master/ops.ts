// Every metadata mutation as data (the Op union) and ONE apply() that defines what each op means. The master
// calls it when it commits; a shadow calls it when it tails the oplog, and asserts it got the recorded result
// (MooseFS's "CREATE data mismatch"). So apply() is deterministic given (db state, op): every random value
// and timestamp (leaseId, nowMs, mtimeMs, lease expiry, the chosen pipeline) is decided by the caller and
// carried in the op. Counters (inode ids, chunk handles) live in the db, so they replay identically.
// apply() throws GranaryError for an invalid request; the caller's savepoint then rolls back, nothing is logged.
import { assert, AssertionError } from '../shared/assert.js'
import type { ChunkHandle, InodeId, LeaseId, ServerId } from '../shared/ids.js'
import type { AbandonReply, BindArgs, CommitReply, DeleteReply, FileAttrs, FileStat, RenewReply } from '../shared/protocol.js'
import { readMeta, sql, type Db } from './db.js'
import {
  abandonFile, addReplica, allocateChunk, commitChunk, expireLease, registerServer, removeReplica, renewLease,
  type AddReplicaOutcome, type AllocateArgs, type AllocateResult, type Applied, type CommitArgs, type DroppedReplica
} from './chunks.js'
import { purgeCheckpoint, removeOrTrash, restore, type PurgeArgs, type PurgeResult, type RestoreArgs } from './trash.js'
import { complete, create, mkdir, rename, reserveFile, type CompleteArgs, type CreateArgs, type CreateResult, type MkdirArgs, type ReserveArgs } from './namespace.js'
import { createKey, revokeKey, type KeyCreateArgs, type KeyInfo, type KeyRevokeArgs } from './keys.js'
import { concat, type ConcatArgs } from './concat.js'

export type { Applied, DroppedReplica } from './chunks.js'

export interface ReplicaArgs { chunkHandle: ChunkHandle, serverId: ServerId, version: number }
export type HeartbeatOp =
  | { type: 'registerServer', serverId: ServerId, url: string }
  | ({ type: 'addReplica' } & ReplicaArgs)
  | ({ type: 'removeReplica' } & ReplicaArgs)

export type Op =
  | ({ type: 'mkdir' } & MkdirArgs)
  | ({ type: 'create' } & CreateArgs & { firstChunk?: FirstChunkArgs })   // firstChunk: chunk 0 allocated in the same op
  | ({ type: 'reserve' } & ReserveArgs & { files: ReservedFileArgs[] })     // unnamed files made ahead, chunk 0 allocated each
  | ({ type: 'allocate' } & AllocateArgs)
  | ({ type: 'commit' } & CommitArgs & { complete?: CommitCompleteArgs })   // complete: the file's last chunk, completed in the same op
  | ({ type: 'complete' } & CompleteArgs)
  | { type: 'renew', inodeId: InodeId, leaseId: LeaseId, leaseExpiresAtMs: number, nowMs: number }
  | { type: 'abandon', inodeId: InodeId, leaseId: LeaseId }
  | { type: 'expireLease', inodeId: InodeId, nowMs: number }
  | { type: 'rename', source: string, target: string, mtimeMs: number }
  | ({ type: 'concat' } & ConcatArgs)
  | { type: 'delete', path: string, recursive: boolean, mtimeMs: number, trash?: string | null }   // trash: checkpoint name, or none (for good)
  | ({ type: 'restore' } & RestoreArgs)
  | ({ type: 'purgeTrash' } & PurgeArgs)
  | HeartbeatOp
  | { type: 'batch', ops: HeartbeatOp[] }   // one heartbeat's replica changes: one oplog record, one savepoint
  | { type: 'newTerm', term: number }        // a promoted shadow's first record: the term it won
  | ({ type: 'keyCreate' } & KeyCreateArgs)   // an access key (its secret sealed with the cluster secret)
  | ({ type: 'keyRevoke' } & KeyRevokeArgs)

export interface OpResults {
  mkdir: FileStat
  create: CreateResult & { firstChunk?: AllocateResult }
  reserve: Array<CreateResult & { firstChunk: AllocateResult }>
  allocate: AllocateResult
  commit: CommitReply
  complete: FileStat
  renew: RenewReply
  abandon: AbandonReply
  expireLease: { expired: boolean }
  rename: FileStat
  concat: FileStat
  delete: DeleteReply
  restore: { from: string, stat: FileStat }
  purgeTrash: PurgeResult
  registerServer: { registered: boolean }
  addReplica: { outcome: AddReplicaOutcome }
  removeReplica: { removed: boolean }
  batch: Array<OpResults[HeartbeatOp['type']]>
  newTerm: { term: number }
  keyCreate: KeyInfo
  keyRevoke: KeyInfo
}
export type OpType = Op['type']
export type OpResult<T extends Op> = OpResults[T['type']]

// Must run inside a transaction (the commit queue's savepoint, or a shadow's replay transaction): an op
// that throws halfway must leave nothing behind.
export function apply (db: Db, op: Op): Applied {
  assert(db.inTransaction, 'apply() runs inside a transaction')
  switch (op.type) {
    case 'mkdir': return mkdir(db, op)
    case 'create': return createWithChunk(db, op)
    case 'reserve': return reserveFiles(db, op)
    case 'allocate': return allocateChunk(db, op)
    case 'commit': return commitAndComplete(db, op)
    case 'complete': return complete(db, op)
    case 'renew': return renewLease(db, op)
    case 'abandon': return abandonFile(db, op)
    case 'expireLease': return expireLease(db, op)
    case 'rename': return rename(db, op)
    case 'concat': return concat(db, op)
    case 'delete': return removeOrTrash(db, op)
    case 'restore': return restore(db, op)
    case 'purgeTrash': return purgeCheckpoint(db, op)
    case 'registerServer': return registerServer(db, op)
    case 'addReplica': return addReplica(db, op)
    case 'removeReplica': return removeReplica(db, op)
    case 'batch': return applyBatch(db, op.ops)
    case 'newTerm': return newTerm(db, op.term)
    case 'keyCreate': return createKey(db, op)
    case 'keyRevoke': return revokeKey(db, op)
    default: {
      const never: never = op
      throw new AssertionError(`apply() was given an unknown op: ${JSON.stringify(never)}`)
    }
  }
}

// A small file's two round trips (create with its first chunk, the last chunk's commit completing the file) are
// each ONE op: one oplog record, one savepoint, so either both halves happened or neither did.
export interface FirstChunkArgs { serverIds: ServerId[] }
export interface CommitCompleteArgs { sizeBytes: number, chunkCount: number, mtimeMs: number, attrs?: FileAttrs, bind?: BindArgs }

function createWithChunk (db: Db, op: CreateArgs & { firstChunk?: FirstChunkArgs }): Applied<CreateResult & { firstChunk?: AllocateResult }> {
  const created = create(db, op)
  if (op.firstChunk === undefined) return created
  const allocated = allocateChunk(db, {
    inodeId: created.result.inodeId, leaseId: op.leaseId, chunkIndex: 0, serverIds: op.firstChunk.serverIds,
    leaseExpiresAtMs: op.leaseExpiresAtMs, nowMs: op.nowMs
  })
  return { result: { ...created.result, firstChunk: allocated.result }, dropped: [...created.dropped, ...allocated.dropped] }
}

// Each reserved file: its lease id and chunk 0's pipeline, decided by the caller (apply() stays deterministic).
export interface ReservedFileArgs { leaseId: LeaseId, serverIds: ServerId[] }

function reserveFiles (db: Db, op: ReserveArgs & { files: ReservedFileArgs[] }): Applied<OpResults['reserve']> {
  const results: OpResults['reserve'] = []
  const dropped: DroppedReplica[] = []
  for (const file of op.files) {
    const inodeId = reserveFile(db, { ...op, leaseId: file.leaseId })
    const allocated = allocateChunk(db, { inodeId, leaseId: file.leaseId, chunkIndex: 0, serverIds: file.serverIds, leaseExpiresAtMs: op.leaseExpiresAtMs, nowMs: op.nowMs })
    dropped.push(...allocated.dropped)
    results.push({ inodeId, leaseId: file.leaseId, leaseExpiresAtMs: op.leaseExpiresAtMs, replication: op.replication, chunkSizeBytes: op.chunkSizeBytes, firstChunk: allocated.result })
  }
  return { result: results, dropped }
}

function commitAndComplete (db: Db, op: CommitArgs & { complete?: CommitCompleteArgs }): Applied<CommitReply> {
  const committed = commitChunk(db, op)
  if (op.complete === undefined) return committed
  const completed = complete(db, { inodeId: op.inodeId, leaseId: op.leaseId, ...op.complete, nowMs: op.nowMs })
  return { result: { ...committed.result, stat: completed.result }, dropped: [...committed.dropped, ...completed.dropped] }
}

function applyBatch (db: Db, ops: HeartbeatOp[]): Applied {
  const results: unknown[] = []
  for (const op of ops) {
    assert(op.type === 'registerServer' || op.type === 'addReplica' || op.type === 'removeReplica', 'a batch holds only heartbeat ops')
    results.push(apply(db, op).result)
  }
  return { result: results, dropped: [] }
}

// Promotion (master/election.ts): the term rises to the one the shadow won (a lost election uses a term up, so
// it may skip some), in the same transaction as its oplog record, so a shadow of the new master replays the
// change and every token signed after it carries the new term.
function newTerm (db: Db, term: number): Applied {
  const meta = readMeta(db)
  assert(Number.isSafeInteger(term) && term > meta.term, 'a promotion raises the term')
  sql(db, 'UPDATE meta SET term = ? WHERE id = 1').run(term)
  return { result: { term }, dropped: [] }
}
