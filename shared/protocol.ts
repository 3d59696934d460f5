// The wire: every route's path, request/reply types and JSON Schema side by side, grouped by direction
// (MooseFS's MFSCommunication.h, hypercore's wire.*). HTTP/JSON everywhere except chunk bodies, which are raw
// bytes (application/octet-stream). Errors are { statusCode, code, error, message } (shared/errors.ts).
// Units: *Bytes bytes, *Ms milliseconds (durations), *AtMs epoch milliseconds (points in time).
import type { ChunkHandle, InodeId, LeaseId, ServerId, RequestId } from './ids.js'
import * as limits from './limits.js'
import type { ErrorBody } from './errors.js'

export type Role = 'master' | 'shadow' | 'chunkserver'

const pathProp = { type: 'string', minLength: 1, maxLength: limits.pathLengthBytesMax } as const
const requestIdProp = { type: 'string', minLength: 1, maxLength: limits.requestIdLengthMax } as const
const leaseIdProp = { type: 'string', minLength: 1, maxLength: limits.leaseIdLengthMax } as const
const handleProp = { type: 'string', pattern: '^[0-9a-f]{16}$' } as const
const serverIdProp = { type: 'string', pattern: '^cs-[0-9a-f]{12}$' } as const
// Every integer has a maximum: JSON Schema's 'integer' admits 1e308.
const countProp = { type: 'integer', minimum: 0, maximum: limits.wireIntegerMax } as const
const inodeIdProp = { type: 'integer', minimum: 1, maximum: limits.wireIntegerMax } as const
const versionProp = { type: 'integer', minimum: 1, maximum: limits.wireIntegerMax } as const
const chunkIndexProp = { type: 'integer', minimum: 0, maximum: limits.chunkCountPerFileMax - 1 } as const
const crcProp = { type: 'integer', minimum: 0, maximum: 0xffffffff } as const
const urlProp = { type: 'string', minLength: 1, maxLength: 256, pattern: '^https?://' } as const   // https:// from a server with TLS
const modeProp = { type: 'integer', minimum: 0, maximum: 0o7777 } as const   // permission bits only

function body<P extends Record<string, unknown>, R extends readonly string[]> (properties: P, required: R) {
  return { type: 'object', additionalProperties: false, required, properties } as const
}

// ---------------------------------------------------------------------------------------------------------
// Shared shapes

export interface ChunkserverAddress { serverId: ServerId, url: string }

// Permission bits an entry gets when its create or mkdir named none (and mkdir's intermediate folders).
export const fileModeDefault = 0o644
export const dirModeDefault = 0o755

export interface FileStat {
  path: string
  inodeId: InodeId
  type: 'file' | 'dir'
  sizeBytes: number            // files: committed length; dirs: 0
  mtimeMs: number
  replication: number          // dirs: 0
  chunkSizeBytes: number       // dirs: 0
  chunkCount: number           // dirs: 0
  mode: number                 // permission bits only (0..0o7777): files 0o644, dirs 0o755 unless given
  crc32?: number               // files: CRC32 (zlib's, unsigned) of the whole file, combined from its chunks' at complete;
                               // absent for dirs and for files completed before schema 2
  attrs?: FileAttrs            // files: the attributes set at create and/or complete (absent when none)
}

// A file's own attributes: a small JSON object (≤ limits.fileAttrsBytesMax as JSON) the writer sets at create
// and/or at complete (replacing the whole object), stored with the inode and returned by stat, open and list.
// The S3 gateway keeps Content-Type, x-amz-meta-* and the ETag here.
export type FileAttrs = Record<string, unknown>
const attrsProp = { type: 'object', maxProperties: 256 } as const

export interface ChunkLocation {
  chunkIndex: number
  chunkHandle: ChunkHandle
  version: number
  lengthBytes: number
  crc32: number                // CRC32 of the whole chunk, as committed
  replicas: ChunkserverAddress[] // live replicas first, in the order the client should try them
  token: string                // read token for this chunk and version
}

// ---------------------------------------------------------------------------------------------------------
// client → master: namespace. Every mutation may carry a requestId; a retried request with the same id gets
// the original reply (or the original error) instead of running twice.

export const mkdirPath = '/fs/mkdir' as const
export interface MkdirRequest { path: string, parents?: boolean, mode?: number, requestId?: RequestId }   // mode: the new leaf only
export type MkdirReply = FileStat
export const mkdirSchema = { body: body({ path: pathProp, parents: { type: 'boolean' }, mode: modeProp, requestId: requestIdProp }, ['path']) } as const

export const statPath = '/fs/stat' as const
export interface StatQuery { path: string }
export type StatReply = FileStat
export const statSchema = { querystring: body({ path: pathProp }, ['path']) } as const

export const listPath = '/fs/list' as const
export interface ListQuery { path: string, after?: string, limit?: number }  // entries sorted by name (bytewise); `after` = last name seen
export interface ListReply { entries: FileStat[], nextAfter: string | null }
export const listSchema = {
  querystring: body({ path: pathProp, after: { type: 'string', maxLength: limits.nameLengthBytesMax }, limit: { type: 'integer', minimum: 1, maximum: limits.listPageSizeMax } }, ['path'])
} as const

export const renamePath = '/fs/rename' as const
export interface RenameRequest { source: string, target: string, requestId?: RequestId }
export type RenameReply = FileStat   // the moved entry, at its new path
export const renameSchema = { body: body({ source: pathProp, target: pathProp, requestId: requestIdProp }, ['source', 'target']) } as const

// One new file at target made of the chunks of closed files `sources`, in order, moved without copying (master/
// concat.ts); the sources are gone after. Every source but the last must be whole chunks of one chunk size.
// An existing file at target is replaced. attrs: the new file's attributes.
export const concatPath = '/fs/concat' as const
export interface ConcatRequest { target: string, sources: string[], attrs?: FileAttrs, mtimeMs?: number, requestId?: RequestId }
export type ConcatReply = FileStat
export const concatSchema = {
  body: body({
    target: pathProp, sources: { type: 'array', minItems: 1, maxItems: limits.concatSourcesMax, items: pathProp },
    attrs: attrsProp, mtimeMs: { type: 'integer', minimum: 0, maximum: 8.64e15 }, requestId: requestIdProp
  }, ['target', 'sources'])
} as const

// Deleting moves the entry to the trash (master/trash.ts): /.trash/<checkpoint>/<its path>, kept for the master's
// trashRetentionMs, then purged. skipTrash, a path already in /.trash, or trashRetentionMs = 0 delete at once.
// The counts say what was deleted for good now (all 0 when the entry went to the trash); trashPath where it went.
export const deletePath = '/fs/delete' as const
export interface DeleteRequest { path: string, recursive?: boolean, skipTrash?: boolean, requestId?: RequestId }
export interface DeleteReply { deletedFiles: number, deletedDirs: number, deletedChunks: number, trashPath: string | null }
export const deleteSchema = { body: body({ path: pathProp, recursive: { type: 'boolean' }, skipTrash: { type: 'boolean' }, requestId: requestIdProp }, ['path']) } as const

// Brings a trashed entry back. `path` is either its place in the trash (/.trash/<checkpoint>/a/b) or the path it
// was deleted from (/a/b: the newest trashed copy is taken). `target` defaults to the path it was deleted from;
// missing parent folders are made; an existing target is never replaced (GRN_EXISTS).
export const restorePath = '/fs/restore' as const
export interface RestoreRequest { path: string, target?: string, requestId?: RequestId }
export interface RestoreReply { from: string, stat: FileStat }
export const restoreSchema = { body: body({ path: pathProp, target: pathProp, requestId: requestIdProp }, ['path']) } as const

export const duPath = '/fs/du' as const
export interface DuQuery { path: string }
export interface DuReply { path: string, fileCount: number, dirCount: number, sizeBytes: number }
export const duSchema = { querystring: body({ path: pathProp }, ['path']) } as const

// Data at risk under a path (master/fsck.ts): every closed file's chunks against the live chunkservers. Only
// chunks with a problem are listed (at most limits.fsckProblemsMax); at most limits.fsckFilesMax files are
// examined, and `truncated` says when the walk stopped early.
export const fsckPath = '/fs/fsck' as const
export interface FsckQuery { path: string }
export interface FsckChunk {
  chunkIndex: number, chunkHandle: ChunkHandle, version: number
  liveReplicas: number         // replicas of this version on live chunkservers
  replicas: number             // replica rows of this version, dead servers included
}
export interface FsckFile { path: string, replication: number, chunkCount: number, sizeBytes: number, underReplicated: FsckChunk[], missing: FsckChunk[] }
export interface FsckReply {
  path: string, fileCount: number, chunkCount: number
  healthyChunks: number, underReplicatedChunks: number, missingChunks: number   // missing: no live replica at all
  liveServers: number, files: FsckFile[]   // files with a problem only
  truncated: boolean
  inSyncShadows?: number       // a master: how many shadows hold every acknowledged mutation too (0: this host alone)
}
export const fsckSchema = { querystring: body({ path: pathProp }, ['path']) } as const

// ---------------------------------------------------------------------------------------------------------
// client → master: writing a file. create → (allocate → stream to pipeline → commit)* → complete.
// The new file is invisible under its name until complete; with overwrite, complete replaces the old file
// atomically. Every call renews the writer lease.

export const createPath = '/fs/create' as const
// allocateFirstChunk: also allocate chunk 0 in the same op (a small file's first round trip; absent from the
// reply when no pipeline could be placed — the client then allocates as usual).
export interface CreateRequest { path: string, replication?: number, chunkSizeBytes?: number, overwrite?: boolean, mode?: number, allocateFirstChunk?: boolean, attrs?: FileAttrs, requestId?: RequestId }
export interface CreateReply { inodeId: InodeId, leaseId: LeaseId, leaseExpiresAtMs: number, replication: number, chunkSizeBytes: number, firstChunk?: AllocateReply }
export const createSchema = {
  body: body({
    path: pathProp,
    replication: { type: 'integer', minimum: limits.replicationMin, maximum: limits.replicationMax },
    chunkSizeBytes: { type: 'integer', minimum: limits.chunkSizeBytesMin, maximum: limits.chunkSizeBytesMax, multipleOf: limits.blockSizeBytes },
    overwrite: { type: 'boolean' },
    mode: modeProp,
    allocateFirstChunk: { type: 'boolean' },
    attrs: attrsProp,
    requestId: requestIdProp
  }, ['path'])
} as const

// Allocating an index that is allocated but not committed gives a new version and a new pipeline
// (a failed pipeline is retried without the servers in excludeServerIds).
export const allocatePath = '/fs/allocate' as const
export interface AllocateRequest { inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, excludeServerIds?: ServerId[], requestId?: RequestId }
export interface AllocateReply {
  chunkHandle: ChunkHandle
  version: number
  term: number
  pipeline: ChunkserverAddress[]  // ordered; the client streams to pipeline[0], which forwards down the rest
  token: string                   // write token for (chunkHandle, version)
  tokenExpiresAtMs: number
  leaseExpiresAtMs: number
}
export const allocateSchema = {
  body: body({
    inodeId: inodeIdProp, leaseId: leaseIdProp, chunkIndex: chunkIndexProp,
    excludeServerIds: { type: 'array', maxItems: 64, items: serverIdProp }, requestId: requestIdProp
  }, ['inodeId', 'leaseId', 'chunkIndex'])
} as const

// Reserved files (a small file in one master call). A reservation is a file created ahead, with no name yet,
// its chunk 0 already allocated and a write token minted: the client streams a small file's bytes to that
// pipeline and then names, commits and completes it in one call (the completing commit's `bind`). An unused
// reservation is an unfinished file like any other: its lease runs out and its chunk's replicas are deleted.
export const reservePath = '/fs/reserve' as const
export interface ReserveRequest { count: number, replication?: number, chunkSizeBytes?: number, requestId?: RequestId }
export interface Reservation { inodeId: InodeId, leaseId: LeaseId, leaseExpiresAtMs: number, replication: number, chunkSizeBytes: number, firstChunk: AllocateReply }
// usableForMs: how long after the reply a reservation may still be started on, by the client's own clock (half
// the shorter of its lease and its token, so a write that starts in time finishes well within both).
export interface ReserveReply { reservations: Reservation[], usableForMs: number }
export const reserveSchema = {
  body: body({
    count: { type: 'integer', minimum: 1, maximum: limits.reservationsPerCallMax },
    replication: { type: 'integer', minimum: limits.replicationMin, maximum: limits.replicationMax },
    chunkSizeBytes: { type: 'integer', minimum: limits.chunkSizeBytesMin, maximum: limits.chunkSizeBytesMax, multipleOf: limits.blockSizeBytes },
    requestId: requestIdProp
  }, ['count'])
} as const

// Where a reserved file goes, given at its complete: create's checks (the folder exists, no folder or — without
// overwrite — file there, no live writer on the name) are made then, in the completing op. parents: missing
// folders are made in that op too (mkdir -p; create's client makes them with a call of its own).
export interface BindArgs { path: string, overwrite?: boolean, mode?: number, attrs?: FileAttrs, parents?: boolean }
const bindProp = body({ path: pathProp, overwrite: { type: 'boolean' }, mode: modeProp, attrs: attrsProp, parents: { type: 'boolean' } }, ['path'])

const completionProps = {
  sizeBytes: { type: 'integer', minimum: 0, maximum: limits.fileSizeBytesMax },
  chunkCount: { type: 'integer', minimum: 0, maximum: limits.chunkCountPerFileMax },
  mtimeMs: { type: 'integer', minimum: 0, maximum: 8.64e15 },
  attrs: attrsProp,            // replaces the attrs given at create
  bind: bindProp               // a reserved file: its name, linked now
} as const

// Records a chunk as written: its length, CRC32, and the servers that acknowledged it durable.
export const commitPath = '/fs/commit' as const
export interface CommitRequest {
  inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, chunkHandle: ChunkHandle, version: number,
  lengthBytes: number, crc32: number, serverIds: ServerId[], requestId?: RequestId
  complete?: { sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: FileAttrs, bind?: BindArgs }   // this is the last chunk: complete the file in the same op
}
export interface CommitReply { leaseExpiresAtMs: number, stat?: FileStat }   // stat: the completed file, when complete was asked
export const commitSchema = {
  body: body({
    inodeId: inodeIdProp, leaseId: leaseIdProp, chunkIndex: chunkIndexProp, chunkHandle: handleProp, version: versionProp,
    lengthBytes: { type: 'integer', minimum: 1, maximum: limits.chunkSizeBytesMax }, crc32: crcProp,
    serverIds: { type: 'array', minItems: 1, maxItems: limits.pipelineLengthMax, items: serverIdProp }, requestId: requestIdProp,
    complete: body(completionProps, ['sizeBytes', 'chunkCount'])
  }, ['inodeId', 'leaseId', 'chunkIndex', 'chunkHandle', 'version', 'lengthBytes', 'crc32', 'serverIds'])
} as const

// Makes the file visible: every chunk 0..chunkCount-1 committed, all but the last full, total = sizeBytes.
// mtimeMs (epoch ms) sets the file's modification time (tar unpack keeps the source's); default: the master's clock.
export const completePath = '/fs/complete' as const
export interface CompleteRequest { inodeId: InodeId, leaseId: LeaseId, sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: FileAttrs, bind?: BindArgs, requestId?: RequestId }
export type CompleteReply = FileStat
export const completeSchema = {
  body: body({ inodeId: inodeIdProp, leaseId: leaseIdProp, ...completionProps, requestId: requestIdProp }, ['inodeId', 'leaseId', 'sizeBytes', 'chunkCount'])
} as const

export const renewPath = '/fs/renew' as const
export interface RenewRequest { inodeId: InodeId, leaseId: LeaseId }
export interface RenewReply { leaseExpiresAtMs: number }
export const renewSchema = { body: body({ inodeId: inodeIdProp, leaseId: leaseIdProp }, ['inodeId', 'leaseId']) } as const

// The writer gives up: the unfinished file and its chunks are dropped.
export const abandonPath = '/fs/abandon' as const
export interface AbandonRequest { inodeId: InodeId, leaseId: LeaseId, requestId?: RequestId }
export interface AbandonReply { abandoned: boolean }
export const abandonSchema = { body: body({ inodeId: inodeIdProp, leaseId: leaseIdProp, requestId: requestIdProp }, ['inodeId', 'leaseId']) } as const

// ---------------------------------------------------------------------------------------------------------
// client → master: reading a file. One call returns every chunk with its replicas and read tokens.

export const openPath = '/fs/open' as const
export interface OpenQuery { path: string }
export interface OpenReply { stat: FileStat, chunks: ChunkLocation[], term: number, tokenExpiresAtMs: number }
export const openSchema = { querystring: body({ path: pathProp }, ['path']) } as const

// ---------------------------------------------------------------------------------------------------------
// client → master: several of the calls above in one exchange (client/batch.ts sends one when calls to the same
// server queue up behind the ones already out). One signature, one HTTP request and one reply for up to
// limits.batchOpsMax calls: on 2 cores HTTP and signing, not the namespace, were most of a stat's or a mkdir's CPU.
// Each op is the call it names, unchanged: validated by that route's schema, checked against the key's right
// on its own paths, gated (read or mutation) and handled as it would be alone, mutations with their own
// requestId. Results come back in order, each with its own position (a read's taken when the batch arrived,
// a mutation's after its ack) or its own error body; a read whose reply would push the batch's reply past
// limits.batchReplyBytesMax comes back as { single: true } and the client asks for it alone.
export const batchPath = '/fs/batch' as const
export interface BatchOp { route: string, query?: Record<string, unknown>, body?: Record<string, unknown> }
export interface BatchRequest { ops: BatchOp[] }
export type BatchResult = { reply: unknown, position: string } | { error: ErrorBody, position: string } | { single: true }
export interface BatchReply { results: BatchResult[] }
export const batchSchema = {
  body: body({
    ops: {
      type: 'array', minItems: 1, maxItems: limits.batchOpsMax,
      items: body({ route: { type: 'string', minLength: 1, maxLength: 64 }, query: { type: 'object' }, body: { type: 'object' } }, ['route'])
    }
  }, ['ops'])
} as const
// The calls a batch may carry: the hot ones, each with a small reply (an open names its chunks: a big file's is
// the one reply that can be large, hence batchReplyBytesMax). Reads are batched with reads and mutations with
// mutations, so a stat never waits for a mkdir's commit.
export const batchReadRoutes: ReadonlySet<string> = new Set([statPath, openPath])
export const batchMutationRoutes: ReadonlySet<string> = new Set([mkdirPath, createPath, reservePath, allocatePath, commitPath, completePath, renewPath, abandonPath, renamePath, deletePath])

// ---------------------------------------------------------------------------------------------------------
// anyone → master: health and the cluster report.

export const healthPath = '/healthz' as const
export interface HealthReply {
  role: Role, term: number, seq: number, safeMode: boolean
  fencedByTerm?: number        // a deposed master: the newer term it heard of (it serves nothing but health and report)
  following?: FollowReport     // a shadow: how far behind its master it is
  // The metadata servers this one knows, advertised URLs, itself included: a master lists itself and the
  // shadows that polled it lately; a shadow its master and itself. A client given one URL learns the rest here.
  metadataServers?: string[]
}

export const reportPath = '/cluster/report' as const
export interface ServerReport {
  serverId: ServerId, url: string, alive: boolean, lastHeartbeatAgeMs: number | null,
  capacityBytes: number, freeBytes: number, usedBytes: number, chunkCount: number, activeWrites: number
  corruptReplicas?: number     // replicas this server's last heartbeat reported failing a checksum (not yet deleted)
}
export interface ClusterReport {
  role: Role, term: number, seq: number, safeMode: boolean,
  fileCount: number, dirCount: number, chunkCount: number, sizeBytes: number,
  underReplicatedChunks: number, missingChunks: number,
  corruptReplicas?: number     // the sum of the live servers' corruptReplicas
  servers: ServerReport[]
  shadows?: ShadowReport[]     // a master: the shadows that follow it
  following?: FollowReport     // a shadow: its master and its lag
  fencedByTerm?: number        // a deposed master: the newer term it heard of
  isr?: string[]               // a master: the in-sync shadows its acknowledgements wait for
  lease?: { held: boolean, voters: number, remainingMs: number | null }   // a master: its lease from the chunkservers
  failovers?: FailoverEvent[]  // the failovers this process won as a shadow, newest first (master/failovers.ts, bounded)
}
// A shadow becoming the master, measured by that shadow (master/election.ts). Times in ms; atMs epoch ms.
export interface FailoverEvent {
  atMs: number                 // when it took over
  term: number                 // the term it won
  kind: 'election' | 'hand-over' | 'forced'   // master silent for a lease / planned (granary admin promote) / --force
  fromUrl: string              // the master it followed
  silentMs: number | null      // an election: how long the master had been silent when the shadow stood; else null
  electionMs: number           // from standing (or the promote call) to taking over: hand-over, vote rounds, take-over
  totalMs: number              // no master meanwhile, as far as this shadow can tell: silentMs + electionMs for an election
  votes: number, voters: number
}

// anyone → master, shadow, chunkserver (shared/metrics.ts): Prometheus text format; master and shadow also
// serve the status page (master/status-page.ts), one self-contained HTML page that reads the routes above.
export const metricsPath = '/metrics' as const
export const statusPagePath = '/' as const

// ---------------------------------------------------------------------------------------------------------
// shadow → master: following the oplog. A shadow bootstraps from a snapshot (a tar stream of an online backup
// of master.db), then long-polls for the records after the last seq it applied and applies each with the
// master's own apply(). Every poll registers the shadow (id, url, applied seq): the master keeps the records
// its shadows still need, within limits.oplogRecordsKeptMax and oplogRecordAgeMsMax. A shadow whose next
// record is gone, or whose history differs from the master's, gets GRN_SNAPSHOT_REQUIRED and re-bootstraps.
// A shadow or a deposed master answers both routes with GRN_NOT_MASTER.

const shadowIdProp = { type: 'string', pattern: '^sh-[0-9a-f]{12}$' } as const
const seqProp = countProp

export const oplogPath = '/oplog' as const
export interface OplogQuery {
  after: number                // the last seq the shadow applied; the reply starts at after + 1
  afterTerm?: number           // the term of that record: a different term here means the histories diverged
  waitMs?: number              // nothing newer: park the request this long for a commit (default 0)
  limit?: number               // records at most (default and max limits.oplogRecordsPerPollMax)
  shadowId: string
  url?: string                 // where the shadow serves (for the report); unknown before it listens
}
export interface OplogEntry { seq: number, term: number, atMs: number, op: unknown, result: unknown, requestId: string | null }
export interface OplogReply {
  term: number                 // the master's term
  seq: number                  // the master's last seq when it replied
  records: OplogEntry[]        // consecutive from after + 1, possibly none
  isr?: string[]               // the master's in-sync set (its acks wait for these shadows): may this shadow stand for election
}
export const oplogSchema = {
  querystring: body({
    after: seqProp, afterTerm: { type: 'integer', minimum: 1, maximum: limits.wireIntegerMax }, waitMs: { type: 'integer', minimum: 0, maximum: limits.oplogPollWaitMsMax },
    limit: { type: 'integer', minimum: 1, maximum: limits.oplogRecordsPerPollMax }, shadowId: shadowIdProp, url: urlProp
  }, ['after', 'shadowId'])
} as const

// Reply: application/x-tar with two entries, snapshotDbName (the backup, a self-contained SQLite file) first,
// then snapshotManifestName (JSON SnapshotManifest, whose sha256 the master computed while sending the file).
// The shadow checks size, sha256 and the file's meta row against the manifest before use.
export const snapshotPath = '/snapshot' as const
export const snapshotManifestName = 'snapshot.json'
export const snapshotDbName = 'master.db'
export interface SnapshotQuery { shadowId: string, url?: string }
export interface SnapshotManifest { seq: number, term: number, schemaVersion: number, sizeBytes: number, sha256: string, createdAtMs: number }
export const snapshotSchema = { querystring: body({ shadowId: shadowIdProp, url: urlProp }, ['shadowId']) } as const

// A shadow as its master sees it (in the master's ClusterReport).
export interface ShadowReport {
  shadowId: string, url: string | null
  appliedSeq: number           // as of its last poll
  lagRecords: number           // master seq - appliedSeq
  lagMs: number | null         // how long ago the oldest record it lacks was committed (0 when caught up; null when trimmed)
  lastSeenAgeMs: number
}
// A shadow's view of its master (in the shadow's health and report).
export interface FollowReport {
  masterUrl: string
  appliedSeq: number
  masterSeq: number | null     // the master's seq at the last successful poll (null: none since start)
  lagRecords: number | null    // masterSeq - appliedSeq
  lastContactAgeMs: number | null
  bootstrapCount: number       // snapshots installed since this process started
  inSync?: boolean             // the master's last reply named this shadow in its in-sync set (it may stand for election)
  lagMsP50: number | null      // over the last limits.lagSamplesKeptMax records: master commit → applied here
  lagMsP99: number | null
  lagRecordsP50: number | null // records the master had beyond each one when it was applied
  lagRecordsP99: number | null
}

// shadow → master: a planned hand-over (granary admin promote). The master stops taking mutations, waits for
// the ones in flight to be acknowledged and for the shadow to have applied everything (handOverDrainMsMax),
// releases its lease and answers with a signed release the shadow shows the chunkservers to win at once.
export const handOverPath = '/admin/hand-over' as const
export interface HandOverRequest { shadowId: string, url: string }
export interface HandOverReply { term: number, seq: number, release: string }
export const handOverSchema = { body: body({ shadowId: shadowIdProp, url: urlProp }, ['shadowId', 'url']) } as const

// operator → shadow: become the master with term + 1. Refused with GRN_NOT_CAUGHT_UP (naming the lag) unless
// the shadow has applied everything its master had at the last poll, or force is set.
export const promotePath = '/admin/promote' as const
export interface PromoteRequest { force?: boolean }
export interface PromoteReply { term: number, seq: number, lagRecords: number | null, forced: boolean }
export const promoteSchema = { body: body({ force: { type: 'boolean' } }, []) } as const

// admin → master: access keys (master/keys.ts). The caller makes the key (client/cli/admin.ts newCredentials) and
// sends its secret, so a retried create with the same request id is the same key; the master seals the secret
// with the cluster secret before it reaches the oplog. The secret is never sent back.
export const keysPath = '/admin/keys' as const
export const keysRevokePath = '/admin/keys/revoke' as const
export interface KeyCreateRequest { accessKeyId: string, secretAccessKey: string, name: string, readOnly?: boolean, admin?: boolean, prefix?: string, requestId?: RequestId }
export interface KeyRevokeRequest { accessKeyId: string, requestId?: RequestId }
export interface AccessKeyInfo { accessKeyId: string, name: string, readOnly: boolean, admin: boolean, prefix: string | null, createdAtMs: number, revokedAtMs: number | null }
export interface KeyListReply { keys: AccessKeyInfo[] }
const accessKeyIdProp = { type: 'string', pattern: '^GK[0-9A-Z]{18}$' } as const
export const keyCreateSchema = {
  body: body({
    accessKeyId: accessKeyIdProp, secretAccessKey: { type: 'string', pattern: '^[A-Za-z0-9+/_-]{32,128}$' },
    name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f]*$' },
    readOnly: { type: 'boolean' }, admin: { type: 'boolean' }, prefix: pathProp, requestId: requestIdProp
  }, ['accessKeyId', 'secretAccessKey', 'name'])
} as const
// admin (the S3 gateway) → master or shadow: the AWS SigV4 signing key of an access key for one scope (date,
// region, service), derived as AWS does from its secret, so a gateway can check S3 signatures without ever
// holding a secret (a derived key is good for that one day, region and service only).
export const keySigningPath = '/admin/keys/signing-key' as const
export interface KeySigningQuery { accessKeyId: string, date: string, region: string, service: string }
export interface KeySigningReply { accessKeyId: string, signingKey: string, readOnly: boolean, admin: boolean, prefix: string | null }
export const keySigningSchema = {
  querystring: body({
    accessKeyId: { type: 'string', minLength: 1, maxLength: 128 }, date: { type: 'string', pattern: '^[0-9]{8}$' },
    region: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' }, service: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' }
  }, ['accessKeyId', 'date', 'region', 'service'])
} as const
export const keyRevokeSchema = { body: body({ accessKeyId: accessKeyIdProp, requestId: requestIdProp }, ['accessKeyId']) } as const

// ---------------------------------------------------------------------------------------------------------
// chunkserver → master: heartbeat. The master never calls a chunkserver; its commands ride on the reply
// (HdfsDesign: "the NameNode never initiates any RPCs"). A chunkserver sends a full report of its chunks
// when the reply asks for one (first contact, or after a master restart) and deltas otherwise.

export const heartbeatPath = '/chunkservers/heartbeat' as const
// crc32: the whole-chunk CRC32 from the chunk file's footer (the one the client committed). Optional on the wire
// (a chunkserver of an older release leaves it out; an unreadable file reported corrupt has none): when present,
// the master refuses a committed chunk's replica whose length or CRC differs from the committed row.
export interface StoredChunk { chunkHandle: ChunkHandle, version: number, lengthBytes: number, crc32?: number }
export interface HeartbeatRequest {
  serverId: ServerId
  url: string                   // where clients and peers reach this chunkserver
  capacityBytes: number
  freeBytes: number
  usedBytes: number
  chunkCount: number
  activeWrites: number          // load: writes in progress
  term: number                  // the highest master term this chunkserver has seen
  fullReport?: StoredChunk[]    // every chunk stored here (when asked)
  added?: StoredChunk[]         // chunks finished since the last heartbeat
  removed?: StoredChunk[]       // chunks deleted since the last heartbeat
  corrupt?: StoredChunk[]       // stored chunks that failed a checksum (read or scrub); sent until deleted
  lease?: LeaseEcho             // renews the lease of the master whose last reply this echoes (shared/failover.ts)
  masterUrl?: string            // the master of `term` as this server knows it (a deposed master names it in refusals)
}
// The echo of a master's heartbeat reply: which process sent it (instanceId), in which term, when on ITS clock
// (sentAtMs), and the in-sync set epoch it announced. Only the master process that sent it counts it.
export interface LeaseEcho { instanceId: string, term: number, sentAtMs: number, isrEpoch: number }
export type ChunkserverCommand =
  | { type: 'delete', chunkHandle: ChunkHandle, version: number }   // delete this replica (and any older version)
  | ReplicateCommand
// Re-replication (master/replication.ts → chunkserver/replicator.ts): the receiving server is the TARGET. It
// GETs the chunk from the first source that serves it whole (token: a read token for handle + version),
// writes its own copy (temp file, fsync, rename), checks the whole-chunk CRC against crc32, and reports the
// chunk in its next heartbeat's `added`.
export interface ReplicateCommand {
  type: 'replicate', chunkHandle: ChunkHandle, version: number, lengthBytes: number, crc32: number,
  sources: ChunkserverAddress[], token: string
}
export interface HeartbeatReply {
  term: number
  heartbeatIntervalMs: number
  needFullReport: boolean
  commands: ChunkserverCommand[]
  // Present (true) when more commands are queued than this reply holds: the chunkserver heartbeats again as
  // soon as it has run these (at most limits.commandFollowUpBeatsMax times in a row), not an interval later.
  moreCommands?: boolean
  // The lease (shared/failover.ts), on a master's replies only: its process, its monotonic clock when it sent
  // this reply, the in-sync set the chunkserver may elect from, and released on a planned hand-over.
  // leaseWanted: the master holds no renewal from this server yet; the server heartbeats again at once.
  role?: Role
  instanceId?: string
  sentAtMs?: number
  isrEpoch?: number
  isr?: string[]
  released?: boolean
  leaseWanted?: boolean
  // The admin access keys in force, as [accessKeyId, SHA-256 of its secret] (at most operatorKeysMax): a chunkserver
  // knows no keys, and checks an admin's Basic/Bearer "id:secret" on its /metrics against these (issue 16 item 4).
  // Believed only because the reply is signed with the cluster secret (shared/auth.ts verifyReply).
  operatorKeys?: Array<[string, string]>
}
const storedChunkItems = body({ chunkHandle: handleProp, version: versionProp, lengthBytes: { type: 'integer', minimum: 0, maximum: limits.chunkSizeBytesMax }, crc32: crcProp }, ['chunkHandle', 'version', 'lengthBytes'])
export const heartbeatSchema = {
  body: body({
    serverId: serverIdProp, url: urlProp,
    capacityBytes: countProp, freeBytes: countProp, usedBytes: countProp, chunkCount: countProp, activeWrites: countProp, term: countProp,
    fullReport: { type: 'array', maxItems: limits.reportedChunksPerHeartbeatMax, items: storedChunkItems },
    added: { type: 'array', maxItems: limits.reportedChunksPerHeartbeatMax, items: storedChunkItems },
    removed: { type: 'array', maxItems: limits.reportedChunksPerHeartbeatMax, items: storedChunkItems },
    corrupt: { type: 'array', maxItems: limits.corruptChunksKeptMax, items: storedChunkItems },
    lease: body({
      instanceId: { type: 'string', pattern: '^[0-9a-f]{16}$' }, term: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      sentAtMs: { type: 'number', minimum: 0, maximum: 1e15 }, isrEpoch: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }
    }, ['instanceId', 'term', 'sentAtMs', 'isrEpoch']),
    masterUrl: urlProp
  }, ['serverId', 'url', 'capacityBytes', 'freeBytes', 'usedBytes', 'chunkCount', 'activeWrites', 'term'])
} as const

// ---------------------------------------------------------------------------------------------------------
// client → chunkserver (and chunkserver → next chunkserver): the data path.
//
// PUT /chunks/:chunkHandle?version=V    body: the chunk's bytes (application/octet-stream, ≤ chunkSizeBytesMax)
//   headers: x-granary-token (write token for handle+version), x-granary-pipeline (comma-separated URLs of the
//   rest of the pipeline, in order; empty or absent on the last replica). The write token names the whole
//   pipeline (shared/token.ts): this server must be the entry before the header's URLs, and they must be the
//   URLs of the entries after it, or the write is refused with GRN_TOKEN_INVALID before a byte is stored.
//   Each chunkserver writes every piece to a temp file while forwarding it to the next, fsyncs, renames, and
//   replies only when its own copy is durable and the downstream reply said the same for the rest.
// GET /chunks/:chunkHandle?version=V&offset=O&length=L   (query, or a Range: bytes=a-b header)
//   headers: x-granary-token (read token). Every block is checked against its CRC before it is sent; a block
//   that fails is never sent (the response is cut short, or GRN_CHECKSUM_MISMATCH if nothing was sent yet).

export const chunkRoutePath = '/chunks/:chunkHandle' as const
export const tokenHeader = 'x-granary-token'
export const pipelineHeader = 'x-granary-pipeline'
export const chunkLengthHeader = 'x-granary-chunk-length'   // GET replies: the stored chunk's full length
// Every master or shadow reply: `TERM.SEQ`, the namespace position it reflects (for a read: at least what the
// read saw, taken before it ran; for a mutation: at least its own record). A client never accepts a reply at
// a position older than one it has seen (client/master-link.ts), so a read after a write sees the write.
export const positionHeader = 'x-granary-position'
// A read that accepts a shadow's copy however long ago it heard from its master (else GRN_STALE past
// limits.shadowReadStaleMsMax of silence).
export const staleOkHeader = 'x-granary-stale-ok'

export interface Position { term: number, seq: number }
export function formatPosition (position: Position): string { return `${position.term}.${position.seq}` }
export function parsePosition (text: unknown): Position | null {
  if (typeof text !== 'string') return null
  const match = /^(\d{1,15})\.(\d{1,15})$/.exec(text)
  return match === null ? null : { term: Number(match[1]), seq: Number(match[2]) }
}
// Lexicographic: a newer term is newer whatever its seq (records a deposed master never got acknowledged are
// not in the new term's history).
export function positionBefore (a: Position, b: Position): boolean {
  return a.term < b.term || (a.term === b.term && a.seq < b.seq)
}
export interface ChunkQuery { version: number, offset?: number, length?: number }
export const chunkQuerySchema = {
  params: body({ chunkHandle: handleProp }, ['chunkHandle']),
  querystring: body({
    version: versionProp,
    offset: { type: 'integer', minimum: 0, maximum: limits.chunkSizeBytesMax },
    length: { type: 'integer', minimum: 0, maximum: limits.chunkSizeBytesMax }
  }, ['version'])
} as const
export interface ReplicaAck { serverId: ServerId, url: string, lengthBytes: number, crc32: number }
export interface WriteChunkReply { replicas: ReplicaAck[] }   // this server first, then downstream in pipeline order

// candidate shadow → chunkserver: a vote for `term` (shared/failover.ts decideVote). Granted: 200. Refused:
// GRN_STALE_TERM, GRN_VOTE_TAKEN, GRN_NOT_IN_SYNC or GRN_MASTER_LEASE_HELD, and nothing changes. The grant is
// on disk before the reply. force (operator's --force) skips the in-sync check, never the vote or the lease;
// release (shared/token.ts signRelease) is a planned hand-over's proof that the master gave its lease up.
export const votePath = '/vote' as const
export interface VoteRequest { term: number, candidateId: string, candidateUrl: string, force?: boolean, release?: string }
export interface VoteReply { granted: true, term: number, serverId: ServerId }
export const voteSchema = {
  body: body({
    term: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER }, candidateId: { type: 'string', pattern: '^sh-[0-9a-f]{12}$' },
    candidateUrl: urlProp, force: { type: 'boolean' }, release: { type: 'string', maxLength: limits.tokenLengthMax }
  }, ['term', 'candidateId', 'candidateUrl'])
} as const

export const chunkserverStatusPath = '/status' as const
export interface ChunkserverStatus { role: 'chunkserver', serverId: ServerId, term: number, chunkCount: number, freeBytes: number, activeWrites: number }

// A metadata server's URL as another server handed it out (a refusal's masterUrl, health's metadataServers): the
// origin of an http or https URL, or undefined for anything else (not a string, another scheme, credentials, a path).
export function metadataServerUrl (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  let parsed: URL
  try { parsed = new URL(value) } catch { return undefined }
  const plain = (parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.username === '' && parsed.password === '' && parsed.pathname === '/' && parsed.search === '' && parsed.hash === ''
  return plain ? parsed.origin : undefined
}

// details.masterUrl of a GRN_NOT_MASTER (master/commit-queue.ts notMasterError), or undefined when the refuser
// does not know its master (null) or names something that is not a master URL.
export function namedMasterUrl (details: unknown): string | undefined {
  return metadataServerUrl((details as { masterUrl?: unknown } | null | undefined)?.masterUrl)
}
