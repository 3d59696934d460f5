// concat (HDFS's concat): one new file at `target` made of the chunks of closed files `sources`, in order, moved
// rather than copied — the chunk rows change owner and index, no byte moves, no chunkserver is told anything
// (a chunk is named by its handle alone). The sources disappear in the same op. The result must be a file the
// write protocol could have made: every chunk but the last full, so every source but the last must be a whole
// number of chunks of one shared chunk size, and the last must have that chunk size too or be one chunk no
// longer than it. An existing file at `target` is replaced (its chunks dropped), like complete with overwrite.
// The S3 gateway completes multipart uploads with it.
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { chunkCountPerFileMax, concatSourcesMax, fileSizeBytesMax } from '../shared/limits.js'
import { splitPath } from '../shared/paths.js'
import { fileModeDefault, type FileAttrs, type FileStat } from '../shared/protocol.js'
import { sql, type Db, type InodeRow } from './db.js'
import { chunkCountOf, deleteInodes, dropChunksOf, getInode, type Applied, type DroppedReplica } from './chunks.js'
import { attrsText, childOf, lookup, resolveParent, statOf, touch, wholeFileCrc32 } from './namespace.js'

export interface ConcatArgs { target: string, sources: string[], mtimeMs: number, attrs?: FileAttrs }

export function concat (db: Db, op: ConcatArgs): Applied<FileStat> {
  if (op.sources.length < 1 || op.sources.length > concatSourcesMax) throw new GranaryError('GRN_INVALID_ARGUMENT', [`concat takes 1..${concatSourcesMax} sources, got ${op.sources.length}`])
  const attrs = attrsText(op.attrs)
  const targetNames = splitPath(op.target)
  const target = '/' + targetNames.join('/')
  if (targetNames.length === 0) throw new GranaryError('GRN_IS_DIR', [target])
  const sources: Array<{ row: InodeRow, chunkCount: number }> = []
  const seen = new Set<number>()
  for (const path of op.sources) {
    const names = splitPath(path)
    const row = lookup(db, names)
    const normal = '/' + names.join('/')
    if (row === undefined) throw new GranaryError('GRN_NOT_FOUND', [normal])
    if (row.type !== 'file') throw new GranaryError('GRN_IS_DIR', [normal])
    if (seen.has(row.id)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`concat names ${normal} twice`])
    if (normal === target) throw new GranaryError('GRN_INVALID_ARGUMENT', [`concat's target ${target} is one of its sources`])
    seen.add(row.id)
    sources.push({ row, chunkCount: chunkCountOf(db, row.id) })
  }
  const chunkSizeBytes = (sources[0] as { row: InodeRow }).row.chunkSizeBytes
  let chunkCount = 0
  let sizeBytes = 0
  for (const [index, { row, chunkCount: count }] of sources.entries()) {
    const last = index === sources.length - 1
    const aligned = row.chunkSizeBytes === chunkSizeBytes && (last || row.sizeBytes % chunkSizeBytes === 0)
    const shortLast = last && count <= 1 && row.sizeBytes <= chunkSizeBytes
    if (!aligned && !shortLast) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`concat source ${op.sources[index] as string} is not chunk-aligned: every source but the last must be whole ${chunkSizeBytes}-byte chunks`])
    }
    chunkCount += count
    sizeBytes += row.sizeBytes
  }
  if (chunkCount > chunkCountPerFileMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`chunk count of ${target}`, chunkCountPerFileMax])
  if (sizeBytes > fileSizeBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`size of ${target}`, fileSizeBytesMax])

  const { parent, name } = resolveParent(db, targetNames)
  const existing = childOf(db, parent.id, name)
  let dropped: DroppedReplica[] = []
  if (existing !== undefined) {
    if (existing.type === 'dir') throw new GranaryError('GRN_IS_DIR', [target])
    dropped = dropChunksOf(db, [existing.id]).dropped
    deleteInodes(db, [existing.id])
  }
  const first = (sources[0] as { row: InodeRow }).row
  const id = Number(sql(db, `INSERT INTO inodes (parentId, name, type, state, sizeBytes, replication, chunkSizeBytes, mtimeMs, mode, attrs)
    VALUES (?, ?, 'file', 'closed', ?, ?, ?, ?, ?, ?)`).run(parent.id, name, sizeBytes, first.replication, chunkSizeBytes, op.mtimeMs, fileModeDefault, attrs).lastInsertRowid)
  let offset = 0
  for (const { row, chunkCount: count } of sources) {
    const moved = sql(db, "UPDATE chunks SET inodeId = ?, chunkIndex = chunkIndex + ? WHERE inodeId = ? AND state = 'committed'").run(id, offset, row.id).changes
    assert(moved === count, 'a closed file has only committed chunks')
    offset += count
    deleteInodes(db, [row.id])
    touch(db, row.parentId, op.mtimeMs)
  }
  sql(db, 'UPDATE inodes SET crc32 = ? WHERE id = ?').run(wholeFileCrc32(db, id), id)
  touch(db, parent.id, op.mtimeMs)
  const made = getInode(db, id)
  assert(made !== undefined, 'the concatenated file reads back')
  return { result: statOf(db, made, target, chunkCount), dropped }
}
