// Corrupt replicas reported by a chunkserver's heartbeat (a read or the scrubber found a block whose CRC
// failed): the replica row goes at once, so clients are no longer sent there and re-replication
// (replicator.ts) sees the chunk under-replicated. The bad file itself is deleted only while another live
// replica of that version exists: a last copy with one bad block still holds every other block, and an
// operator may want them. The server repeats its report each heartbeat, so the delete follows as soon as a
// good copy is back.
import type { ServerId } from '../shared/ids.js'
import type { StoredChunk } from '../shared/protocol.js'
import { sql, type Db } from './db.js'
import type { HeartbeatOp } from './ops.js'
import type { Registry } from './registry.js'

export function classifyCorrupt (db: Db, registry: Registry, serverId: ServerId, chunk: StoredChunk, nowMs: number, ops: HeartbeatOp[], deletes: StoredChunk[]): void {
  const rows = sql(db, 'SELECT r.serverId FROM replicas r JOIN chunks c ON c.chunkHandle = r.chunkHandle AND c.version = r.version WHERE r.chunkHandle = ? AND r.version = ?')
    .all(chunk.chunkHandle, chunk.version) as Array<{ serverId: ServerId }>
  if (rows.some((r) => r.serverId === serverId)) {
    ops.push({ type: 'removeReplica', serverId, chunkHandle: chunk.chunkHandle, version: chunk.version })
  }
  const goodLive = rows.filter((r) => r.serverId !== serverId && registry.isAlive(r.serverId, nowMs)).length
  const known = sql(db, 'SELECT version FROM chunks WHERE chunkHandle = ?').get(chunk.chunkHandle) as { version: number } | undefined
  if (goodLive > 0 || known === undefined || known.version > chunk.version) deletes.push(chunk)
}
