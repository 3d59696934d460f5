// `granary fsck`: which data under a path is at risk. Every closed file below the path, in path order, with
// each chunk's live replicas (on chunkservers alive now) against the file's replication. Read-only, bounded:
// at most fsckFilesMax files are walked and fsckProblemsMax problem chunks listed (counts stay exact for the
// files walked). Files still being written are not linked yet and are not examined.
import { assert } from '../shared/assert.js'
import type { ChunkHandle, ServerId } from '../shared/ids.js'
import { fsckFilesMax, fsckProblemsMax, pathDepthMax } from '../shared/limits.js'
import type { FsckChunk, FsckFile, FsckReply } from '../shared/protocol.js'
import { sql, type Db, type InodeRow } from './db.js'
import { resolvePath } from './namespace.js'

export interface FsckBounds { filesMax: number, problemsMax: number }

interface ReplicaRow { chunkIndex: number, chunkHandle: ChunkHandle, version: number, serverId: ServerId | null }

export function fsck (db: Db, path: string, liveServerIds: readonly ServerId[], bounds: FsckBounds = { filesMax: fsckFilesMax, problemsMax: fsckProblemsMax }): FsckReply {
  const resolved = resolvePath(db, path)
  const live = new Set(liveServerIds)
  const reply: FsckReply = {
    path: resolved.path, fileCount: 0, chunkCount: 0, healthyChunks: 0, underReplicatedChunks: 0, missingChunks: 0,
    liveServers: live.size, files: [], truncated: false
  }
  let problems = 0
  const visit = (row: InodeRow, filePath: string): void => {
    const file = checkFile(db, row, filePath, live)
    reply.fileCount++
    reply.chunkCount += file.chunkCount
    reply.underReplicatedChunks += file.underReplicated.length
    reply.missingChunks += file.missing.length
    reply.healthyChunks += file.chunkCount - file.underReplicated.length - file.missing.length
    if (file.underReplicated.length + file.missing.length === 0) return
    if (problems >= bounds.problemsMax) { reply.truncated = true; return }
    const room = bounds.problemsMax - problems
    file.missing = file.missing.slice(0, room)
    file.underReplicated = file.underReplicated.slice(0, room - file.missing.length)
    problems += file.missing.length + file.underReplicated.length
    reply.files.push(file)
  }
  reply.truncated = !walk(db, resolved.row, resolved.path, bounds.filesMax, visit) || reply.truncated
  return reply
}

// Depth-first in name order with an explicit stack (no recursion over the tree). False when the file bound
// stopped it.
function walk (db: Db, root: InodeRow, rootPath: string, filesMax: number, visit: (row: InodeRow, path: string) => void): boolean {
  const children = sql(db, 'SELECT * FROM inodes WHERE parentId = ? ORDER BY name DESC')
  const stack: Array<{ row: InodeRow, path: string, depth: number }> = [{ row: root, path: rootPath, depth: 0 }]
  let files = 0
  while (stack.length > 0) {
    const { row, path, depth } = stack.pop() as { row: InodeRow, path: string, depth: number }
    if (row.type === 'file') {
      if (row.state !== 'closed') continue
      if (files >= filesMax) return false
      files++
      visit(row, path)
      continue
    }
    assert(depth <= pathDepthMax, 'the namespace respects the depth limit')
    // DESC, then popped: children come off the stack in name order.
    for (const child of children.all(row.id) as InodeRow[]) {
      stack.push({ row: child, path: path === '/' ? `/${child.name ?? ''}` : `${path}/${child.name ?? ''}`, depth: depth + 1 })
    }
  }
  return true
}

function checkFile (db: Db, row: InodeRow, path: string, live: Set<ServerId>): FsckFile {
  const rows = sql(db, `SELECT c.chunkIndex, c.chunkHandle, c.version, r.serverId FROM chunks c
      LEFT JOIN replicas r ON r.chunkHandle = c.chunkHandle AND r.version = c.version
      WHERE c.inodeId = ? ORDER BY c.chunkIndex`).all(row.id) as ReplicaRow[]
  const chunks = new Map<number, FsckChunk>()
  for (const r of rows) {
    let chunk = chunks.get(r.chunkIndex)
    if (chunk === undefined) {
      chunk = { chunkIndex: r.chunkIndex, chunkHandle: r.chunkHandle, version: r.version, liveReplicas: 0, replicas: 0 }
      chunks.set(r.chunkIndex, chunk)
    }
    if (r.serverId === null) continue
    chunk.replicas++
    if (live.has(r.serverId)) chunk.liveReplicas++
  }
  const file: FsckFile = { path, replication: row.replication, chunkCount: chunks.size, sizeBytes: row.sizeBytes, underReplicated: [], missing: [] }
  for (const chunk of chunks.values()) {
    if (chunk.liveReplicas === 0) file.missing.push(chunk)
    else if (chunk.liveReplicas < row.replication) file.underReplicated.push(chunk)
  }
  return file
}
