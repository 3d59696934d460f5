// The namespace tree: path resolution (one indexed lookup per component, never a scan), stat rows →
// FileStat, listing, du, and the tree mutations (mkdir, create, link-on-complete, rename, delete) with
// POSIX-like semantics. Subtrees are collected with a recursive CTE bounded by a limit: no JS recursion.
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { rootInodeId, type InodeId, type LeaseId } from '../shared/ids.js'
import { crc32Combine } from '../shared/checksum.js'
import { deleteEntriesPerOpMax, fileAttrsBytesMax, pathDepthMax } from '../shared/limits.js'
import { joinPath, splitPath } from '../shared/paths.js'
import { dirModeDefault, fileModeDefault, type BindArgs, type DeleteReply, type DuReply, type FileAttrs, type FileStat, type ListReply } from '../shared/protocol.js'
import { sql, type Db, type InodeRow } from './db.js'
import {
  chunkCountOf, checkCompleteChunks, deleteInodes, dropChunksOf, dropWritingFile, getInode, requireLease,
  type Applied, type DroppedReplica
} from './chunks.js'

// ---------------------------------------------------------------------------------------------------------
// Resolution

export function childOf (db: Db, parentId: number, name: string): InodeRow | undefined {
  return sql(db, 'SELECT * FROM inodes WHERE parentId = ? AND name = ?').get(parentId, name) as InodeRow | undefined
}

function rootRow (db: Db): InodeRow {
  const root = getInode(db, rootInodeId)
  assert(root !== undefined && root.type === 'dir', 'the root directory exists')
  return root
}

// The entry at `names`, or undefined when a component is missing. A component before the last that is a
// file makes the path GRN_NOT_DIR, as in POSIX (stat('/file/x') is ENOTDIR). The folders on the way are read
// as (id, type) only and the root not at all (its id is fixed): a stat was one whole-row query per component
// plus one for the root, the master's largest cost per metadata read.
export function lookup (db: Db, names: readonly string[]): InodeRow | undefined {
  if (names.length === 0) return rootRow(db)
  let parentId = rootInodeId as number
  const last = names.length - 1
  for (let i = 0; i < last; i++) {
    const step = sql(db, 'SELECT id, type FROM inodes WHERE parentId = ? AND name = ?').get(parentId, names[i]) as Pick<InodeRow, 'id' | 'type'> | undefined
    if (step === undefined) return undefined
    if (step.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', ['/' + names.join('/')])
    parentId = step.id
  }
  return childOf(db, parentId, names[last] as string)
}

export function resolvePath (db: Db, path: string): { row: InodeRow, path: string } {
  const names = splitPath(path)
  const normalized = '/' + names.join('/')
  const row = lookup(db, names)
  if (row === undefined) throw new GranaryError('GRN_NOT_FOUND', [normalized])
  return { row, path: normalized }
}

// The directory that holds the last component of `names` (which must not be the root).
export function resolveParent (db: Db, names: readonly string[]): { parent: InodeRow, name: string } {
  assert(names.length > 0, 'the root has no parent')
  const path = '/' + names.join('/')
  const parent = lookup(db, names.slice(0, -1))
  if (parent === undefined) throw new GranaryError('GRN_NOT_FOUND', [path])
  if (parent.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [path])
  return { parent, name: names[names.length - 1] as string }
}

// Walks up the parent links, bounded. Renames can nest a deep subtree under a deep folder (and the trash adds two
// levels), so a path past the depth limit is a refusal the caller's transaction rolls back, not a crash.
export function pathOf (db: Db, row: InodeRow): string {
  const names: string[] = []
  let current = row
  while (current.id !== rootInodeId) {
    if (names.length >= pathDepthMax) throw new GranaryError('GRN_INVALID_PATH', [`inode ${row.id}`, `deeper than ${pathDepthMax}`])
    assert(current.parentId !== null && current.name !== null, 'a linked entry has a parent and a name')
    names.push(current.name)
    const parent = getInode(db, current.parentId)
    assert(parent !== undefined, 'a linked entry has a parent')
    current = parent
  }
  return '/' + names.reverse().join('/')
}

export function statOf (db: Db, row: InodeRow, path: string, chunkCount?: number): FileStat {
  const file = row.type === 'file'
  return {
    path,
    inodeId: row.id as InodeId,
    type: row.type,
    sizeBytes: file ? row.sizeBytes : 0,
    mtimeMs: row.mtimeMs,
    replication: file ? row.replication : 0,
    chunkSizeBytes: file ? row.chunkSizeBytes : 0,
    chunkCount: file ? (chunkCount ?? chunkCountOf(db, row.id)) : 0,
    mode: row.mode,
    ...(file && row.crc32 !== null && row.crc32 !== undefined ? { crc32: row.crc32 } : {}),
    ...(file && row.attrs !== null && row.attrs !== undefined ? { attrs: JSON.parse(row.attrs) as FileAttrs } : {})
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reads

// One page of a directory, sorted bytewise by name (SQLite's BINARY collation over UTF-8), after `after`.
export function listDir (db: Db, path: string, after: string, limit: number): ListReply {
  const { row, path: dirPath } = resolvePath(db, path)
  if (row.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [dirPath])
  const rows = sql(db, `SELECT i.*, (SELECT count(*) FROM chunks c WHERE c.inodeId = i.id) AS chunkCount
    FROM inodes i WHERE i.parentId = ? AND i.name > ? ORDER BY i.name LIMIT ?`).all(row.id, after, limit + 1) as Array<InodeRow & { chunkCount: number }>
  const page = rows.slice(0, limit)
  const entries = page.map((child) => statOf(db, child, joinPath(dirPath, child.name as string), child.chunkCount))
  const last = page[page.length - 1]
  return { entries, nextAfter: rows.length > limit && last !== undefined ? last.name : null }
}

// Counts the entry itself too, like `hdfs dfs -count`. Refused past deleteEntriesPerOpMax entries, the same
// bound a recursive delete has, so one query's work is bounded.
export function diskUsage (db: Db, path: string): DuReply {
  const { row, path: normalized } = resolvePath(db, path)
  const totals = sql(db, `WITH RECURSIVE sub(id, type, sizeBytes) AS (
      SELECT id, type, sizeBytes FROM inodes WHERE id = ?
      UNION ALL SELECT i.id, i.type, i.sizeBytes FROM inodes i JOIN sub ON i.parentId = sub.id
      LIMIT ?)
    SELECT count(*) AS entryCount, coalesce(sum(type = 'file'), 0) AS fileCount, coalesce(sum(type = 'dir'), 0) AS dirCount,
      coalesce(sum(sizeBytes), 0) AS sizeBytes FROM sub`).get(row.id, deleteEntriesPerOpMax + 1) as
    { entryCount: number, fileCount: number, dirCount: number, sizeBytes: number }
  if (totals.entryCount > deleteEntriesPerOpMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`du of ${normalized} (entries)`, deleteEntriesPerOpMax])
  return { path: normalized, fileCount: totals.fileCount, dirCount: totals.dirCount, sizeBytes: totals.sizeBytes }
}

function subtree (db: Db, rootId: number): Array<{ id: number, type: 'file' | 'dir' }> {
  return sql(db, `WITH RECURSIVE sub(id, type) AS (
      SELECT id, type FROM inodes WHERE id = ?
      UNION ALL SELECT i.id, i.type FROM inodes i JOIN sub ON i.parentId = sub.id
      LIMIT ?)
    SELECT id, type FROM sub`).all(rootId, deleteEntriesPerOpMax + 1) as Array<{ id: number, type: 'file' | 'dir' }>
}

export function hasChildren (db: Db, inodeId: number): boolean {
  return sql(db, 'SELECT 1 FROM inodes WHERE parentId = ? LIMIT 1').get(inodeId) !== undefined
}

export function touch (db: Db, inodeId: number | null, mtimeMs: number): void {
  if (inodeId !== null) sql(db, 'UPDATE inodes SET mtimeMs = ? WHERE id = ?').run(mtimeMs, inodeId)
}

export function insertDir (db: Db, parentId: number, name: string, mtimeMs: number, mode: number): InodeRow {
  const id = sql(db, "INSERT INTO inodes (parentId, name, type, state, mtimeMs, mode) VALUES (?, ?, 'dir', 'closed', ?, ?)").run(parentId, name, mtimeMs, mode).lastInsertRowid
  const row = getInode(db, Number(id))
  assert(row !== undefined, 'the inserted directory reads back')
  touch(db, parentId, mtimeMs)
  return row
}

// ---------------------------------------------------------------------------------------------------------
// Mutations (called by apply(); deterministic given the db and the op)

// mode: the permission bits of the named folder (optional in old ops and tests: the default is a constant, so
// replay stays deterministic). Intermediate folders made by `parents` always get dirModeDefault, like mkdir -p.
export interface MkdirArgs { path: string, parents: boolean, mtimeMs: number, mode?: number }

export function mkdir (db: Db, op: MkdirArgs): Applied<FileStat> {
  const names = splitPath(op.path)
  const mode = op.mode ?? dirModeDefault
  const path = '/' + names.join('/')
  if (names.length === 0) {
    if (!op.parents) throw new GranaryError('GRN_EXISTS', [path])
    return { result: statOf(db, rootRow(db), path), dropped: [] }
  }
  if (!op.parents) {
    const { parent, name } = resolveParent(db, names)
    if (childOf(db, parent.id, name) !== undefined) throw new GranaryError('GRN_EXISTS', [path])
    return { result: statOf(db, insertDir(db, parent.id, name, op.mtimeMs, mode), path), dropped: [] }
  }
  let current = rootRow(db)
  for (const [i, name] of names.entries()) {
    const child = childOf(db, current.id, name)
    if (child === undefined) current = insertDir(db, current.id, name, op.mtimeMs, i === names.length - 1 ? mode : dirModeDefault)
    else if (child.type === 'dir') current = child
    else throw new GranaryError(i === names.length - 1 ? 'GRN_EXISTS' : 'GRN_NOT_DIR', ['/' + names.slice(0, i + 1).join('/')])
  }
  return { result: statOf(db, current, path), dropped: [] }
}

export interface CreateArgs {
  path: string, replication: number, chunkSizeBytes: number, overwrite: boolean,
  leaseId: LeaseId, leaseExpiresAtMs: number, nowMs: number, mode?: number   // mode: fileModeDefault when absent
  attrs?: FileAttrs                                                          // the file's attributes (replaced by complete's, if any)
}
export interface CreateResult { inodeId: InodeId, leaseId: LeaseId, leaseExpiresAtMs: number, replication: number, chunkSizeBytes: number }

// A new file is an unlinked 'writing' inode that only remembers where it will go (pendingParentId,
// pendingName): invisible to stat, list and open until complete links it.
export function create (db: Db, op: CreateArgs): Applied<CreateResult> {
  const attrs = attrsText(op.attrs)
  const { parent, name, dropped } = placeNewFile(db, op.path, op.overwrite, op.nowMs)
  const id = sql(db, `INSERT INTO inodes (parentId, name, type, state, replication, chunkSizeBytes, mtimeMs, leaseId, leaseExpiresAtMs,
    pendingParentId, pendingName, overwrite, mode, attrs) VALUES (NULL, NULL, 'file', 'writing', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    .run(op.replication, op.chunkSizeBytes, op.nowMs, op.leaseId, op.leaseExpiresAtMs, parent.id, name, op.overwrite ? 1 : 0, op.mode ?? fileModeDefault, attrs).lastInsertRowid
  const result = { inodeId: Number(id) as InodeId, leaseId: op.leaseId, leaseExpiresAtMs: op.leaseExpiresAtMs, replication: op.replication, chunkSizeBytes: op.chunkSizeBytes }
  return { result, dropped }
}

// create's checks of where a new file goes: its folder exists, no folder (nor, without overwrite, a file) has the
// name, and no live writer holds it (one whose lease ran out is dropped, its upload never linked).
function placeNewFile (db: Db, pathText: string, overwrite: boolean, nowMs: number): { parent: InodeRow, name: string, dropped: DroppedReplica[] } {
  const names = splitPath(pathText)
  const path = '/' + names.join('/')
  if (names.length === 0) throw new GranaryError('GRN_IS_DIR', [path])
  const { parent, name } = resolveParent(db, names)
  const existing = childOf(db, parent.id, name)
  if (existing?.type === 'dir') throw new GranaryError('GRN_IS_DIR', [path])
  if (existing !== undefined && !overwrite) throw new GranaryError('GRN_EXISTS', [path])
  const pending = sql(db, "SELECT * FROM inodes WHERE pendingParentId = ? AND pendingName = ? AND state = 'writing'").get(parent.id, name) as InodeRow | undefined
  let dropped: DroppedReplica[] = []
  if (pending !== undefined) {
    if ((pending.leaseExpiresAtMs ?? 0) > nowMs) throw new GranaryError('GRN_LEASE_HELD', [path])
    dropped = dropWritingFile(db, pending.id)
  }
  return { parent, name, dropped }
}

// Reserved files (protocol.ts reservePath): 'writing' inodes with no name yet (pendingParentId NULL), so nothing
// lists, opens or blocks a name with them. Their chunk 0 is allocated by the caller, in the same op.
export interface ReserveArgs { replication: number, chunkSizeBytes: number, leaseExpiresAtMs: number, nowMs: number }

export function reserveFile (db: Db, op: ReserveArgs & { leaseId: LeaseId }): InodeId {
  const id = sql(db, `INSERT INTO inodes (parentId, name, type, state, replication, chunkSizeBytes, mtimeMs, leaseId, leaseExpiresAtMs, mode)
    VALUES (NULL, NULL, 'file', 'writing', ?, ?, ?, ?, ?, ?)`).run(op.replication, op.chunkSizeBytes, op.nowMs, op.leaseId, op.leaseExpiresAtMs, fileModeDefault).lastInsertRowid
  return Number(id) as InodeId
}

// A reserved file gets its name (create's checks, made now) just before complete links it. Only a reserved
// file: one created with a name keeps it.
function bindReserved (db: Db, inode: InodeRow, bind: BindArgs, nowMs: number): { inode: InodeRow, dropped: DroppedReplica[] } {
  if (inode.pendingParentId !== null) throw new GranaryError('GRN_INVALID_ARGUMENT', [`inode ${inode.id} was created with a name; bind names only a reserved file`])
  const attrs = attrsText(bind.attrs)
  const overwrite = bind.overwrite ?? false
  let placed: ReturnType<typeof placeNewFile>
  try {
    placed = placeNewFile(db, bind.path, overwrite, nowMs)
  } catch (err) {
    // Only resolveParent throws GRN_NOT_FOUND there, before anything was written: a folder on the way is missing.
    const names = splitPath(bind.path)
    if (bind.parents !== true || !(err instanceof GranaryError) || err.code !== 'GRN_NOT_FOUND' || names.length < 2) throw err
    mkdir(db, { path: '/' + names.slice(0, -1).join('/'), parents: true, mtimeMs: nowMs })
    placed = placeNewFile(db, bind.path, overwrite, nowMs)
  }
  const { parent, name, dropped } = placed
  sql(db, 'UPDATE inodes SET pendingParentId = ?, pendingName = ?, overwrite = ?, mode = ?, attrs = ? WHERE id = ?')
    .run(parent.id, name, overwrite ? 1 : 0, bind.mode ?? fileModeDefault, attrs, inode.id)
  const bound = getInode(db, inode.id)
  assert(bound !== undefined, 'the bound file reads back')
  return { inode: bound, dropped }
}

export interface CompleteArgs { inodeId: InodeId, leaseId: LeaseId, sizeBytes: number, chunkCount: number, mtimeMs: number, nowMs: number, attrs?: FileAttrs, bind?: BindArgs }

// A file's attributes as stored: JSON of an object, at most fileAttrsBytesMax bytes; null for none.
export function attrsText (attrs: FileAttrs | undefined): string | null {
  if (attrs === undefined) return null
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) throw new GranaryError('GRN_INVALID_ARGUMENT', ['attrs must be a JSON object'])
  const text = JSON.stringify(attrs)
  if (Buffer.byteLength(text) > fileAttrsBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['attrs (as JSON, bytes)', fileAttrsBytesMax])
  return text
}

// Checks the chunks, then links the file under its name in the same transaction. With overwrite, an existing
// file there is deleted (with its chunks) in that same transaction, so readers see the old or the new file.
export function complete (db: Db, op: CompleteArgs): Applied<FileStat> {
  let inode = requireLease(db, op.inodeId, op.leaseId, op.nowMs)
  const attrs = attrsText(op.attrs)
  let dropped: DroppedReplica[] = []
  if (op.bind !== undefined) ({ inode, dropped } = bindReserved(db, inode, op.bind, op.nowMs))
  else if (inode.pendingParentId === null) throw new GranaryError('GRN_INVALID_ARGUMENT', [`inode ${inode.id} is a reserved file: its complete must name it (bind)`])
  dropped = [...dropped, ...dropUnusedAllocations(db, inode.id, op.chunkCount)]
  checkCompleteChunks(db, inode, op.sizeBytes, op.chunkCount)
  assert(inode.pendingParentId !== null && inode.pendingName !== null, 'a file being written knows where it goes')
  const name = inode.pendingName
  const parent = getInode(db, inode.pendingParentId)
  if (parent === undefined || parent.type !== 'dir') throw new GranaryError('GRN_NOT_FOUND', [`${name} (its directory was deleted)`])
  const path = joinPath(pathOf(db, parent), name)
  const existing = childOf(db, parent.id, name)
  if (existing !== undefined) {
    if (existing.type === 'dir') throw new GranaryError('GRN_IS_DIR', [path])
    if (inode.overwrite === 0) throw new GranaryError('GRN_EXISTS', [path])
    dropped = [...dropped, ...dropChunksOf(db, [existing.id]).dropped]
    deleteInodes(db, [existing.id])
  }
  sql(db, `UPDATE inodes SET parentId = ?, name = ?, state = 'closed', sizeBytes = ?, mtimeMs = ?, leaseId = NULL,
    leaseExpiresAtMs = NULL, pendingParentId = NULL, pendingName = NULL, overwrite = 0, crc32 = ?, attrs = coalesce(?, attrs) WHERE id = ?`)
    .run(parent.id, name, op.sizeBytes, op.mtimeMs, wholeFileCrc32(db, inode.id), attrs, inode.id)
  touch(db, parent.id, op.nowMs)   // the folder changed now, whatever mtime the file was given
  const linked = getInode(db, inode.id)
  assert(linked !== undefined && linked.state === 'closed', 'the completed file reads back closed')
  return { result: statOf(db, linked, path, op.chunkCount), dropped }
}

// The CRC32 of the whole file from its chunks' CRC32s and lengths (zlib's crc32_combine): no pass over the bytes.
export function wholeFileCrc32 (db: Db, inodeId: number): number {
  const rows = sql(db, 'SELECT crc32, lengthBytes FROM chunks WHERE inodeId = ? ORDER BY chunkIndex').all(inodeId) as Array<{ crc32: number, lengthBytes: number }>
  let crc = 0
  for (const row of rows) crc = crc32Combine(crc, row.crc32, row.lengthBytes)
  return crc
}

// Chunks past the end the writer names that were allocated but never committed: create allocates chunk 0 ahead
// (allocateFirstChunk), and an empty file never uses it. A committed chunk past the end is still refused.
function dropUnusedAllocations (db: Db, inodeId: number, chunkCount: number): DroppedReplica[] {
  const unused = sql(db, "SELECT chunkHandle FROM chunks WHERE inodeId = ? AND chunkIndex >= ? AND state = 'allocated'").all(inodeId, chunkCount) as Array<{ chunkHandle: string }>
  if (unused.length === 0) return []
  const handles = JSON.stringify(unused.map((row) => row.chunkHandle))
  const dropped = sql(db, 'SELECT chunkHandle, serverId, version FROM replicas WHERE chunkHandle IN (SELECT value FROM json_each(?)) ORDER BY chunkHandle, serverId').all(handles) as DroppedReplica[]
  sql(db, 'DELETE FROM replicas WHERE chunkHandle IN (SELECT value FROM json_each(?))').run(handles)
  sql(db, 'DELETE FROM chunks WHERE chunkHandle IN (SELECT value FROM json_each(?))').run(handles)
  return dropped
}

// POSIX rename(2): the target is replaced atomically when the types allow it.
export function rename (db: Db, op: { source: string, target: string, mtimeMs: number }): Applied<FileStat> {
  const sourceNames = splitPath(op.source)
  const targetNames = splitPath(op.target)
  const source = '/' + sourceNames.join('/')
  const target = '/' + targetNames.join('/')
  if (sourceNames.length === 0 || targetNames.length === 0) throw new GranaryError('GRN_INVALID_PATH', ['/', 'the root cannot be renamed or replaced'])
  const moving = lookup(db, sourceNames)
  if (moving === undefined) throw new GranaryError('GRN_NOT_FOUND', [source])
  if (source === target) return { result: statOf(db, moving, target), dropped: [] }
  const { parent, name } = resolveParent(db, targetNames)
  if (target.startsWith(source + '/')) throw new GranaryError('GRN_RENAME_INTO_SELF', [source, target])
  const existing = childOf(db, parent.id, name)
  let dropped: DroppedReplica[] = []
  if (existing !== undefined) {
    if (moving.type === 'file' && existing.type === 'dir') throw new GranaryError('GRN_IS_DIR', [target])
    if (moving.type === 'dir' && existing.type === 'file') throw new GranaryError('GRN_NOT_DIR', [target])
    if (existing.type === 'dir' && hasChildren(db, existing.id)) throw new GranaryError('GRN_NOT_EMPTY', [target])
    dropped = dropChunksOf(db, [existing.id]).dropped
    deleteInodes(db, [existing.id])
  }
  sql(db, 'UPDATE inodes SET parentId = ?, name = ? WHERE id = ?').run(parent.id, name, moving.id)
  touch(db, moving.parentId, op.mtimeMs)
  touch(db, parent.id, op.mtimeMs)
  const moved = getInode(db, moving.id)
  assert(moved !== undefined && moved.parentId === parent.id, 'the moved entry reads back under its new parent')
  return { result: statOf(db, moved, target), dropped }
}

// A file or an empty directory; a non-empty directory only with recursive, and only up to
// deleteEntriesPerOpMax entries (delete subtrees first beyond that).
export interface RemoveArgs { path: string, recursive: boolean, mtimeMs: number }

export function remove (db: Db, op: RemoveArgs): Applied<DeleteReply> {
  const names = splitPath(op.path)
  const path = '/' + names.join('/')
  if (names.length === 0) throw new GranaryError('GRN_INVALID_PATH', [path, 'the root cannot be deleted'])
  const row = lookup(db, names)
  if (row === undefined) throw new GranaryError('GRN_NOT_FOUND', [path])
  let entries: Array<{ id: number, type: 'file' | 'dir' }> = [{ id: row.id, type: row.type }]
  if (row.type === 'dir' && hasChildren(db, row.id)) {
    if (!op.recursive) throw new GranaryError('GRN_NOT_EMPTY', [path])
    entries = subtree(db, row.id)
    if (entries.length > deleteEntriesPerOpMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`recursive delete of ${path} (entries)`, deleteEntriesPerOpMax])
  }
  const fileIds = entries.filter((e) => e.type === 'file').map((e) => e.id)
  const { dropped, chunkCount } = dropChunksOf(db, fileIds)
  const deletedCount = deleteInodes(db, entries.map((e) => e.id))
  assert(deletedCount === entries.length, 'every collected entry was deleted')
  touch(db, row.parentId, op.mtimeMs)
  return { result: { deletedFiles: fileIds.length, deletedDirs: entries.length - fileIds.length, deletedChunks: chunkCount, trashPath: null }, dropped }
}
