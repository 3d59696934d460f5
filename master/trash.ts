// The trash (HDFS's .Trash, one per cluster): a delete moves the entry to /.trash/<checkpoint>/<its old path>,
// where <checkpoint> is the deletion time as an ISO-8601 UTC string (2026-11-21T10:15:30.123Z). Those names sort
// bytewise in time order, so "every checkpoint older than the retention" is one index range on (parentId, name)
// and the newest trashed copy of a path is found by walking checkpoints in descending name order.
// Everything here runs inside apply() (deterministic given the db and the op: the checkpoint name travels in the
// op), except the reads at the bottom that the route and the tick use to decide what to submit.
// Crash safety comes from the master's transaction: a move to the trash, a restore or a purge is one op, one
// transaction, one oplog record. A purge drops chunk rows in that transaction; the replicas are deleted on the
// chunkservers afterwards by commands riding heartbeat replies, and a command lost to a crash is re-derived
// from the next full report (an unknown chunk is an orphan).
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { rootInodeId } from '../shared/ids.js'
import { trashCheckpointsSearchedMax, trashNameAttemptsMax, trashPurgeEntriesPerOpMax } from '../shared/limits.js'
import { splitPath } from '../shared/paths.js'
import { dirModeDefault, type DeleteReply, type FileStat } from '../shared/protocol.js'
import { sql, type Db, type InodeRow } from './db.js'
import { deleteInodes, dropChunksOf, getInode, type Applied } from './chunks.js'
import { childOf, hasChildren, insertDir, lookup, remove, statOf, touch, type RemoveArgs } from './namespace.js'

export const trashDirName = '.trash'
export const trashRoot = `/${trashDirName}`
const checkpointShape = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z(-\d+)?$/

export function checkpointName (nowMs: number): string {
  return new Date(nowMs).toISOString()
}

// True for /.trash itself and everything under it: deleting there is for good.
export function inTrash (names: readonly string[]): boolean {
  return names[0] === trashDirName
}

// /.trash/<checkpoint>/a/b → ['a', 'b'] (the path it was deleted from); undefined for /.trash or a checkpoint.
export function originalNames (names: readonly string[]): string[] | undefined {
  return inTrash(names) && names.length >= 3 ? names.slice(2) : undefined
}

// ---------------------------------------------------------------------------------------------------------
// Mutations (called by apply())

// Moves `row` (found at `names`) to /.trash/<checkpoint>/<names>. If that place is taken (the same path deleted
// twice within a millisecond, or a file where a folder of the path should be), the checkpoint gets a suffix
// (-1, -2, ...: still sorted in time order) until a free place is found.
export function moveToTrash (db: Db, row: InodeRow, names: readonly string[], checkpoint: string, mtimeMs: number): Applied<DeleteReply> {
  assert(!inTrash(names) && names.length > 0, 'only an entry outside the trash moves to it')
  assert(checkpointShape.test(checkpoint), 'a checkpoint name is an ISO-8601 UTC time')
  for (let attempt = 0; attempt < trashNameAttemptsMax; attempt++) {
    const name = attempt === 0 ? checkpoint : `${checkpoint}-${attempt}`
    const dirNames = [trashDirName, name, ...names.slice(0, -1)]
    const parent = ensureDirs(db, dirNames, mtimeMs)
    const leaf = names[names.length - 1] as string
    if (parent === undefined || childOf(db, parent.id, leaf) !== undefined) continue
    sql(db, 'UPDATE inodes SET parentId = ?, name = ? WHERE id = ?').run(parent.id, leaf, row.id)
    touch(db, row.parentId, mtimeMs)
    return { result: { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, trashPath: '/' + [...dirNames, leaf].join('/') }, dropped: [] }
  }
  throw new GranaryError('GRN_LIMIT_EXCEEDED', [`places tried in the trash for /${names.join('/')}`, trashNameAttemptsMax])
}

// The delete op: with a checkpoint (the route decided the trash is on) an entry outside the trash moves there;
// otherwise, and for anything already in the trash, it is deleted for good. The checks come first either way,
// so a non-empty folder without recursive is GRN_NOT_EMPTY whether or not the trash is on.
export function removeOrTrash (db: Db, op: RemoveArgs & { trash?: string | null }): Applied<DeleteReply> {
  const names = splitPath(op.path)
  if (op.trash === undefined || op.trash === null || names.length === 0 || inTrash(names)) return remove(db, op)   // the root: remove() refuses it
  const row = lookup(db, names)
  if (row === undefined) throw new GranaryError('GRN_NOT_FOUND', ['/' + names.join('/')])
  if (row.type === 'dir' && !op.recursive && hasChildren(db, row.id)) {
    throw new GranaryError('GRN_NOT_EMPTY', ['/' + names.join('/')])
  }
  return moveToTrash(db, row, names, op.trash, op.mtimeMs)
}

export interface RestoreArgs { source: string, target: string, mtimeMs: number }

// Moves a trashed entry back (to its old path or a chosen one), making missing parent folders like mkdir -p.
// Never replaces: an existing target is GRN_EXISTS (restoring over a newer file would lose it).
export function restore (db: Db, op: RestoreArgs): Applied<{ from: string, stat: FileStat }> {
  const sourceNames = splitPath(op.source)
  const targetNames = splitPath(op.target)
  const source = '/' + sourceNames.join('/')
  const target = '/' + targetNames.join('/')
  if (originalNames(sourceNames) === undefined) throw new GranaryError('GRN_INVALID_PATH', [source, `not an entry in the trash (${trashRoot}/<checkpoint>/...)`])
  if (targetNames.length === 0 || inTrash(targetNames)) throw new GranaryError('GRN_INVALID_PATH', [target, 'restore into the namespace, outside the trash'])
  const moving = lookup(db, sourceNames)
  if (moving === undefined) throw new GranaryError('GRN_NOT_FOUND', [source])
  const parent = ensureDirs(db, targetNames.slice(0, -1), op.mtimeMs)
  if (parent === undefined) throw new GranaryError('GRN_NOT_DIR', [target])
  const name = targetNames[targetNames.length - 1] as string
  if (childOf(db, parent.id, name) !== undefined) throw new GranaryError('GRN_EXISTS', [target])
  sql(db, 'UPDATE inodes SET parentId = ?, name = ? WHERE id = ?').run(parent.id, name, moving.id)
  touch(db, moving.parentId, op.mtimeMs)
  touch(db, parent.id, op.mtimeMs)
  const moved = getInode(db, moving.id)
  assert(moved !== undefined && moved.parentId === parent.id, 'the restored entry reads back under its new parent')
  return { result: { from: source, stat: statOf(db, moved, target) }, dropped: [] }
}

export interface PurgeArgs { checkpoint: string, entriesMax: number }
export interface PurgeResult { deletedFiles: number, deletedDirs: number, deletedChunks: number, done: boolean }

// Deletes one expired checkpoint for good, at most entriesMax entries per op. A checkpoint that fits goes whole;
// a bigger one loses its leaves (files and empty folders) first, found depth-first so every round finds some.
// The order (deepest first, then inode id) is total, so a shadow's replay deletes exactly the same entries.
export function purgeCheckpoint (db: Db, op: PurgeArgs): Applied<PurgeResult> {
  assert(op.entriesMax >= 1 && op.entriesMax <= trashPurgeEntriesPerOpMax, 'a purge op is bounded')
  const checkpoint = checkpointRow(db, op.checkpoint)
  if (checkpoint === undefined) return { result: { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, done: true }, dropped: [] }
  const rows = sql(db, `WITH RECURSIVE sub(id, type, depth) AS (
      SELECT id, type, 0 FROM inodes WHERE id = ?
      UNION ALL SELECT i.id, i.type, sub.depth + 1 FROM inodes i JOIN sub ON i.parentId = sub.id ORDER BY 3 DESC, 1
      LIMIT ?)
    SELECT id, type, NOT EXISTS (SELECT 1 FROM inodes c WHERE c.parentId = sub.id) AS leaf FROM sub`)
    .all(checkpoint.id, op.entriesMax + 1) as Array<{ id: number, type: 'file' | 'dir', leaf: number }>
  const whole = rows.length <= op.entriesMax
  const doomed = whole ? rows : rows.filter((r) => r.leaf === 1 && r.id !== checkpoint.id)
  assert(doomed.length > 0, 'a depth-first walk always reaches a leaf within the bound')
  const fileIds = doomed.filter((r) => r.type === 'file').map((r) => r.id)
  const { dropped, chunkCount } = dropChunksOf(db, fileIds)
  const deleted = deleteInodes(db, doomed.map((r) => r.id))
  assert(deleted === doomed.length, 'every collected entry was deleted')
  return { result: { deletedFiles: fileIds.length, deletedDirs: doomed.length - fileIds.length, deletedChunks: chunkCount, done: whole }, dropped }
}

// ---------------------------------------------------------------------------------------------------------
// Reads (route and tick)

// Checkpoints whose deletion time is before `beforeMs`, oldest first. Only names of the checkpoint shape count:
// anything else an operator put in /.trash is left alone.
export function expiredCheckpoints (db: Db, beforeMs: number, limit: number): string[] {
  const trash = childOf(db, rootInodeId, trashDirName)
  if (trash === undefined || trash.type !== 'dir') return []
  const names = sql(db, 'SELECT name FROM inodes WHERE parentId = ? AND name < ? ORDER BY name LIMIT ?')
    .all(trash.id, checkpointName(beforeMs), limit) as Array<{ name: string }>
  return names.map((r) => r.name).filter((name) => checkpointShape.test(name))
}

// The newest trashed copy of the path `names` was deleted from: /.trash/<checkpoint>/<names>. One indexed
// query finds the checkpoints holding the first name; the rest of the path is looked up in each, newest first.
export function newestTrashed (db: Db, names: readonly string[]): string | undefined {
  assert(names.length > 0 && !inTrash(names), 'a path outside the trash')
  const trash = childOf(db, rootInodeId, trashDirName)
  if (trash === undefined || trash.type !== 'dir') return undefined
  const candidates = sql(db, `SELECT cp.name AS checkpoint, top.id AS topId FROM inodes cp JOIN inodes top ON top.parentId = cp.id AND top.name = ?
    WHERE cp.parentId = ? ORDER BY cp.name DESC LIMIT ?`).all(names[0], trash.id, trashCheckpointsSearchedMax) as Array<{ checkpoint: string, topId: number }>
  for (const { checkpoint, topId } of candidates) {
    let current = getInode(db, topId)
    for (const name of names.slice(1)) {
      if (current === undefined || current.type !== 'dir') break
      current = childOf(db, current.id, name)
    }
    if (current !== undefined) return '/' + [trashDirName, checkpoint, ...names].join('/')
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------

function checkpointRow (db: Db, checkpoint: string): InodeRow | undefined {
  const trash = childOf(db, rootInodeId, trashDirName)
  return trash === undefined ? undefined : childOf(db, trash.id, checkpoint)
}

// mkdir -p of `names` under the root; undefined when a component is a file (the caller tries elsewhere).
function ensureDirs (db: Db, names: readonly string[], mtimeMs: number): InodeRow | undefined {
  let current = getInode(db, rootInodeId)
  assert(current !== undefined, 'the root exists')
  for (const name of names) {
    const child = childOf(db, current.id, name)
    if (child !== undefined && child.type !== 'dir') return undefined
    current = child ?? insertDir(db, current.id, name, mtimeMs, dirModeDefault)
  }
  return current
}

