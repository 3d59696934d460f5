// The master's one SQLite database: pragmas, schema, meta. Restart = open this file: nothing here scans the
// namespace or replays the oplog, so start-up time does not grow with the namespace (only `meta` is read).
import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { rootInodeId } from '../shared/ids.js'

export type Db = Database.Database
export type SyncMode = 'normal' | 'full'

export const schemaVersion = 3
export const dbFileName = 'master.db'

// Every lookup the master does has an index here; the comment after each says which lookup it serves.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  schemaVersion INTEGER NOT NULL,
  term INTEGER NOT NULL,              -- master epoch; raised when a shadow is promoted
  seq INTEGER NOT NULL,               -- the last oplog seq written (0 = none)
  nextChunkNumber INTEGER NOT NULL    -- next chunk handle, as a number; allocate moves it up to term × 2^32 first (shared/ids.ts)
);
-- AUTOINCREMENT: inode ids are never reused, so a pending file's pendingParentId cannot come to name a
-- different directory after its parent is deleted.
CREATE TABLE IF NOT EXISTS inodes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  parentId INTEGER REFERENCES inodes(id),   -- NULL for the root and for files still being written
  name TEXT,                                 -- NULL while writing; '' for the root
  type TEXT NOT NULL CHECK (type IN ('file', 'dir')),
  state TEXT NOT NULL CHECK (state IN ('writing', 'closed')),
  sizeBytes INTEGER NOT NULL DEFAULT 0,
  replication INTEGER NOT NULL DEFAULT 0,
  chunkSizeBytes INTEGER NOT NULL DEFAULT 0,
  mtimeMs INTEGER NOT NULL,
  leaseId TEXT,
  leaseExpiresAtMs INTEGER,
  pendingParentId INTEGER,                   -- where complete() links the file; not a foreign key on purpose
  pendingName TEXT,
  overwrite INTEGER NOT NULL DEFAULT 0,      -- complete() may replace an existing file at the pending name
  mode INTEGER NOT NULL DEFAULT 0,           -- permission bits (0..0o7777), set by create and mkdir
  crc32 INTEGER,                             -- a closed file's whole-file CRC32, combined from its chunks' at complete (NULL: written before schema 2)
  attrs TEXT,                                -- a file's attributes (JSON object ≤ fileAttrsBytesMax), set at create and/or complete; NULL: none
  UNIQUE (parentId, name)                    -- child lookup, sorted listing, and the parentId foreign key
);
CREATE UNIQUE INDEX IF NOT EXISTS inodes_pending ON inodes (pendingParentId, pendingName) WHERE state = 'writing';
CREATE INDEX IF NOT EXISTS inodes_lease ON inodes (leaseExpiresAtMs) WHERE state = 'writing';  -- the lease tick
CREATE TABLE IF NOT EXISTS chunks (
  chunkHandle TEXT PRIMARY KEY,
  inodeId INTEGER NOT NULL REFERENCES inodes(id),
  chunkIndex INTEGER NOT NULL,
  version INTEGER NOT NULL,
  lengthBytes INTEGER NOT NULL DEFAULT 0,
  crc32 INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL CHECK (state IN ('allocated', 'committed')),
  UNIQUE (inodeId, chunkIndex)               -- a file's chunks in order
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS servers (
  serverId TEXT PRIMARY KEY,
  url TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replicas (
  chunkHandle TEXT NOT NULL REFERENCES chunks(chunkHandle),
  serverId TEXT NOT NULL REFERENCES servers(serverId),
  version INTEGER NOT NULL,
  PRIMARY KEY (chunkHandle, serverId)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS replicas_server ON replicas (serverId);        -- full-report reconciliation
-- Access keys (master/keys.ts): created by every open, so an older database gains it without a migration step.
-- The secret is sealed with the cluster secret (shared/auth.ts sealSecret), never stored in clear.
CREATE TABLE IF NOT EXISTS accessKeys (
  accessKeyId TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  sealedSecret TEXT NOT NULL,
  readOnly INTEGER NOT NULL,
  admin INTEGER NOT NULL,
  prefix TEXT,                               -- NULL: the whole namespace
  createdAtMs INTEGER NOT NULL,
  revokedAtMs INTEGER                        -- NULL while in force; a revoked key is kept for the record
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS oplog (
  seq INTEGER PRIMARY KEY,
  term INTEGER NOT NULL,
  atMs INTEGER NOT NULL,
  op TEXT NOT NULL,                          -- JSON of master/ops.ts Op
  result TEXT NOT NULL,                      -- JSON of what apply() returned; a replay must reproduce it
  requestId TEXT
);
-- Idempotent retries: a rowid table, so the oldest rows are the lowest rowids and pruning is an index range.
CREATE TABLE IF NOT EXISTS requests (
  requestId TEXT PRIMARY KEY,
  reply TEXT NOT NULL,
  atMs INTEGER NOT NULL
);
`

export interface Meta { schemaVersion: number, term: number, seq: number, nextChunkNumber: number }

// Opens (creating if needed) `${dataDir}/master.db`.
export function openMasterDb (dataDir: string, syncMode: SyncMode): Db {
  mkdirSync(dataDir, { recursive: true })
  return openDb(join(dataDir, dbFileName), syncMode)
}

// Opens any file (or ':memory:') with the master's pragmas and schema; a shadow or a replay test uses this.
export function openDb (file: string, syncMode: SyncMode): Db {
  const db = new Database(file, { timeout: 5000 })
  try {
    // Explicit pragmas (TigerStyle: never trust library defaults).
    db.pragma('journal_mode = WAL')          // readers never block the writer; one fsync per group commit
    db.pragma(`synchronous = ${syncMode === 'full' ? 'FULL' : 'NORMAL'}`) // NORMAL survives kill -9, FULL power loss too
    db.pragma('foreign_keys = ON')           // a dangling chunk or replica row is a bug: make SQLite refuse it
    db.pragma('busy_timeout = 5000')         // a shadow or a backup may hold a read lock briefly
    db.pragma('wal_autocheckpoint = 1000')   // pages; keeps the WAL file (and a restart's WAL scan) small (a running
                                             // master checkpoints from a worker instead: checkpointer.ts)
    db.pragma('temp_store = MEMORY')
    migrate(db)
  } catch (err) {
    db.close()
    throw err
  }
  return db
}

function migrate (db: Db): void {
  db.transaction(() => {
    db.exec(schema)
    const meta = db.prepare('SELECT schemaVersion FROM meta WHERE id = 1').get() as { schemaVersion: number } | undefined
    if (meta === undefined) {
      db.prepare('INSERT INTO meta (id, schemaVersion, term, seq, nextChunkNumber) VALUES (1, ?, 1, 0, 1)').run(schemaVersion)
      db.prepare("INSERT INTO inodes (id, parentId, name, type, state, mtimeMs, mode) VALUES (?, NULL, '', 'dir', 'closed', 0, ?)").run(rootInodeId, 0o755)
      return
    }
    if (meta.schemaVersion > schemaVersion) {
      throw new GranaryError('GRN_INTERNAL', [`master.db has schema version ${meta.schemaVersion}, newer than this Granary (${schemaVersion})`])
    }
    // One step per version, inside this transaction. None scans the namespace (restart stays flat).
    if (meta.schemaVersion === 1) {
      // Whole-file checksums: files completed from now on get one; older files show none (never a wrong one).
      db.exec('ALTER TABLE inodes ADD COLUMN crc32 INTEGER')
      db.prepare('UPDATE meta SET schemaVersion = 2 WHERE id = 1').run()
      meta.schemaVersion = 2
    }
    if (meta.schemaVersion === 2) {
      // Per-file attributes: a new nullable column; existing files have none. No row is touched.
      db.exec('ALTER TABLE inodes ADD COLUMN attrs TEXT')
      db.prepare('UPDATE meta SET schemaVersion = 3 WHERE id = 1').run()
      meta.schemaVersion = 3
    }
    assert(meta.schemaVersion === schemaVersion, 'no migration path from an older schema version')
  }).immediate()
}

export function readMeta (db: Db): Meta {
  const meta = sql(db, 'SELECT schemaVersion, term, seq, nextChunkNumber FROM meta WHERE id = 1').get() as Meta | undefined
  assert(meta !== undefined, 'meta row exists once the schema is in place')
  return meta
}

// Prepared statements, cached per database: apply() takes the db as an argument (the shadow passes its own),
// so the cache hangs off the db object rather than a module-level singleton. Bounded by the number of SQL
// literals in master/ (every text passed here is a constant).
const statementCache = new WeakMap<Db, Map<string, Database.Statement>>()

export function sql (db: Db, text: string): Database.Statement {
  let cache = statementCache.get(db)
  if (cache === undefined) {
    cache = new Map()
    statementCache.set(db, cache)
  }
  let statement = cache.get(text)
  if (statement === undefined) {
    statement = db.prepare(text)
    cache.set(text, statement)
  }
  return statement
}

// Row shapes, as SQLite returns them (the column names above).
export interface InodeRow {
  id: number
  parentId: number | null
  name: string | null
  type: 'file' | 'dir'
  state: 'writing' | 'closed'
  sizeBytes: number
  replication: number
  chunkSizeBytes: number
  mtimeMs: number
  leaseId: string | null
  leaseExpiresAtMs: number | null
  pendingParentId: number | null
  pendingName: string | null
  overwrite: number
  mode: number
  crc32: number | null
  attrs: string | null
}

export interface ChunkRow {
  chunkHandle: string
  inodeId: number
  chunkIndex: number
  version: number
  lengthBytes: number
  crc32: number
  state: 'allocated' | 'committed'
}
