// Access keys (issue 12): rows of the accessKeys table, changed only by the keyCreate and keyRevoke ops, so they
// reach shadows through the oplog like every mutation, and looked up on every signed client request through a
// small cache that any key op empties (a revoke takes effect on the next request, on master and shadows alike).
import { createHash } from 'node:crypto'
import { GranaryError } from '../shared/errors.js'
import { operatorKeysMax } from '../shared/limits.js'
import { unsealSecret, type KeyRecord, type Principal } from '../shared/auth.js'
import { sql, type Db } from './db.js'
import type { Applied } from './chunks.js'

export interface KeyCreateArgs {
  accessKeyId: string, name: string, sealedSecret: string, readOnly: boolean, admin: boolean, prefix: string | null, createdAtMs: number
}
export interface KeyRevokeArgs { accessKeyId: string, revokedAtMs: number }
export interface KeyInfo { accessKeyId: string, name: string, readOnly: boolean, admin: boolean, prefix: string | null, createdAtMs: number, revokedAtMs: number | null }

export const accessKeysMax = 10_000          // keys in force; a create past it is refused
export const keyCacheEntriesMax = 1_024      // unsealed keys kept in memory

// Bumped by every key op applied in this process (master or shadow): caches compare it before trusting an entry.
let keysGeneration = 0

export function createKey (db: Db, op: KeyCreateArgs): Applied<KeyInfo> {
  keysGeneration += 1
  const existing = sql(db, 'SELECT accessKeyId FROM accessKeys WHERE accessKeyId = ?').get(op.accessKeyId)
  if (existing !== undefined) throw new GranaryError('GRN_EXISTS', [`access key ${op.accessKeyId}`])
  const { n } = sql(db, 'SELECT count(*) AS n FROM accessKeys WHERE revokedAtMs IS NULL').get() as { n: number }
  if (n >= accessKeysMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['access keys in force', accessKeysMax])
  sql(db, 'INSERT INTO accessKeys (accessKeyId, name, sealedSecret, readOnly, admin, prefix, createdAtMs, revokedAtMs) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)')
    .run(op.accessKeyId, op.name, op.sealedSecret, op.readOnly ? 1 : 0, op.admin ? 1 : 0, op.prefix, op.createdAtMs)
  return { result: infoOf(op.accessKeyId, op), dropped: [] }
}

export function revokeKey (db: Db, op: KeyRevokeArgs): Applied<KeyInfo> {
  keysGeneration += 1
  const row = sql(db, 'SELECT * FROM accessKeys WHERE accessKeyId = ?').get(op.accessKeyId) as KeyRow | undefined
  if (row === undefined) throw new GranaryError('GRN_NO_SUCH_KEY', [op.accessKeyId])
  const revokedAtMs = row.revokedAtMs ?? op.revokedAtMs   // revoking twice keeps the first time
  sql(db, 'UPDATE accessKeys SET revokedAtMs = ? WHERE accessKeyId = ?').run(revokedAtMs, op.accessKeyId)
  return { result: rowInfo({ ...row, revokedAtMs }), dropped: [] }
}

export function listKeys (db: Db): KeyInfo[] {
  return (sql(db, 'SELECT * FROM accessKeys ORDER BY createdAtMs, accessKeyId LIMIT ?').all(accessKeysMax * 4) as KeyRow[]).map(rowInfo)
}

export function countKeys (db: Db): number {
  return (sql(db, 'SELECT count(*) AS n FROM accessKeys').get() as { n: number }).n
}

interface KeyRow { accessKeyId: string, name: string, sealedSecret: string, readOnly: number, admin: number, prefix: string | null, createdAtMs: number, revokedAtMs: number | null }

function rowInfo (row: KeyRow): KeyInfo {
  return { accessKeyId: row.accessKeyId, name: row.name, readOnly: row.readOnly === 1, admin: row.admin === 1, prefix: row.prefix, createdAtMs: row.createdAtMs, revokedAtMs: row.revokedAtMs }
}

function infoOf (accessKeyId: string, op: KeyCreateArgs): KeyInfo {
  return { accessKeyId, name: op.name, readOnly: op.readOnly, admin: op.admin, prefix: op.prefix, createdAtMs: op.createdAtMs, revokedAtMs: null }
}

const operatorKeysCache = new WeakMap<Db, { generation: number, keys: Array<[string, string]> }>()

// [id, SHA-256(secret)] of the admin keys in force, recomputed only after a key op (heartbeat replies carry it).
export function operatorKeyHashes (db: Db, clusterSecret: Buffer): Array<[string, string]> {
  const cached = operatorKeysCache.get(db)
  if (cached !== undefined && cached.generation === keysGeneration) return cached.keys
  const rows = sql(db, 'SELECT accessKeyId, sealedSecret FROM accessKeys WHERE admin = 1 AND revokedAtMs IS NULL ORDER BY createdAtMs DESC LIMIT ?').all(operatorKeysMax) as Array<{ accessKeyId: string, sealedSecret: string }>
  const keys = rows.map((row): [string, string] => [row.accessKeyId, createHash('sha256').update(unsealSecret(clusterSecret, row.sealedSecret)).digest('hex')])
  operatorKeysCache.set(db, { generation: keysGeneration, keys })
  return keys
}

// The lookup a RequestVerifier uses: a key in force, unsealed once and cached until the next key op.
export class KeyCache {
  readonly #db: Db
  readonly #clusterSecret: Buffer
  readonly #entries = new Map<string, KeyRecord | null>()
  #generation = keysGeneration

  constructor (db: Db, clusterSecret: Buffer) {
    this.#db = db
    this.#clusterSecret = clusterSecret
  }

  lookup (accessKeyId: string): KeyRecord | null {
    if (this.#generation !== keysGeneration) {
      this.#entries.clear()
      this.#generation = keysGeneration
    }
    const cached = this.#entries.get(accessKeyId)
    if (cached !== undefined) return cached
    const row = sql(this.#db, 'SELECT * FROM accessKeys WHERE accessKeyId = ?').get(accessKeyId) as KeyRow | undefined
    let record: KeyRecord | null = null
    if (row !== undefined && row.revokedAtMs === null) {
      const principal: Principal = { kind: 'key', accessKeyId, name: row.name, readOnly: row.readOnly === 1, admin: row.admin === 1, prefix: row.prefix }
      record = { key: unsealSecret(this.#clusterSecret, row.sealedSecret), principal }
    }
    if (this.#entries.size >= keyCacheEntriesMax) this.#entries.clear()
    this.#entries.set(accessKeyId, record)
    return record
  }
}
