// Short-lived chunk tokens: the master signs (chunk handle, version, mode, expiry, term) with the cluster
// secret; chunkservers refuse any chunk request without a valid one, so a client can only touch chunks the
// master allowed. A write token also names its pipeline, the ordered (server id, URL) pairs the master chose,
// so it writes on those servers only and each hop forwards only to the next one named (chunkserver/access.ts).
// Format: base64url(JSON payload) "." base64url(HMAC-SHA256). Verification is constant-time.
import { timingSafeEqual, randomBytes } from 'node:crypto'
import { hmacKey } from './hmac.js'
import { readFileSync, writeFileSync, existsSync, mkdirSync, renameSync } from 'node:fs'
import { dirname } from 'node:path'
import { GranaryError } from './errors.js'
import { tokenLengthMax } from './limits.js'
import { serverIdPattern, type ChunkHandle, type ServerId } from './ids.js'

export type TokenMode = 'read' | 'write'
export interface TokenClaims {
  chunkHandle: ChunkHandle
  version: number
  mode: TokenMode
  expiresAtMs: number   // epoch ms
  term: number          // the master term that signed it; chunkservers refuse older terms (fencing)
  pipeline?: PipelineEntry[]   // write tokens: the ordered replicas of this write; read tokens have none
}
export interface PipelineEntry { serverId: ServerId, url: string }

export const secretBytes = 32

export function signToken (secret: Buffer, claims: TokenClaims): string {
  const fields: unknown[] = [claims.chunkHandle, claims.version, claims.mode, claims.expiresAtMs, claims.term]
  if (claims.pipeline !== undefined) fields.push(claims.pipeline.map((entry) => [entry.serverId, entry.url]))
  const payload = Buffer.from(JSON.stringify(fields)).toString('base64url')
  return `${payload}.${mac(secret, payload)}`
}

// Checks the signature and the expiry and returns the claims; the caller checks they fit the request.
export function verifyToken (secret: Buffer, token: string | undefined, nowMs: number): TokenClaims {
  if (typeof token !== 'string' || token.length === 0) throw new GranaryError('GRN_TOKEN_INVALID', ['missing token'])
  if (token.length > tokenLengthMax) throw new GranaryError('GRN_TOKEN_INVALID', ['token too long'])
  const dot = token.indexOf('.')
  if (dot <= 0) throw new GranaryError('GRN_TOKEN_INVALID', ['malformed token'])
  const payload = token.slice(0, dot)
  const given = Buffer.from(token.slice(dot + 1), 'base64url')
  const expected = Buffer.from(mac(secret, payload), 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new GranaryError('GRN_TOKEN_INVALID', ['bad signature'])
  }
  let fields: unknown
  try { fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) } catch { fields = undefined }
  if (!Array.isArray(fields) || (fields.length !== 5 && fields.length !== 6)) throw new GranaryError('GRN_TOKEN_INVALID', ['malformed claims'])
  const [chunkHandle, version, mode, expiresAtMs, term, pipeline] = fields as [ChunkHandle, number, TokenMode, number, number, unknown]
  if (expiresAtMs < nowMs) throw new GranaryError('GRN_TOKEN_EXPIRED', [chunkHandle, expiresAtMs])
  if (pipeline === undefined) return { chunkHandle, version, mode, expiresAtMs, term }
  return { chunkHandle, version, mode, expiresAtMs, term, pipeline: pipelineOf(pipeline) }
}

function pipelineOf (value: unknown): PipelineEntry[] {
  const entries = Array.isArray(value) ? value : []
  const ok = entries.length > 0 && entries.every((entry: unknown) => Array.isArray(entry) && entry.length === 2 &&
    typeof entry[0] === 'string' && serverIdPattern.test(entry[0]) && typeof entry[1] === 'string')
  if (!ok) throw new GranaryError('GRN_TOKEN_INVALID', ['malformed pipeline'])
  return (entries as Array<[ServerId, string]>).map(([serverId, url]) => ({ serverId, url }))
}

// A planned hand-over's proof: the master of `term` released its lease, and names the shadow it hands over to.
// The candidate sends it with its vote requests; a chunkserver that checks it may vote at once instead of
// waiting out the lease (and only for that shadow). Signed with the cluster secret like chunk tokens.
export interface ReleaseClaims { term: number, shadowId: string }
export function signRelease (secret: Buffer, claims: ReleaseClaims): string {
  const payload = Buffer.from(JSON.stringify(['release', claims.term, claims.shadowId])).toString('base64url')
  return `${payload}.${mac(secret, payload)}`
}
export function verifyRelease (secret: Buffer, token: string): ReleaseClaims | null {
  if (token.length > tokenLengthMax) return null
  const dot = token.indexOf('.')
  if (dot <= 0) return null
  const payload = token.slice(0, dot)
  const given = Buffer.from(token.slice(dot + 1), 'base64url')
  const expected = Buffer.from(mac(secret, payload), 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
  let fields: unknown
  try { fields = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) } catch { return null }
  if (!Array.isArray(fields) || fields.length !== 3 || fields[0] !== 'release' || !Number.isSafeInteger(fields[1]) || typeof fields[2] !== 'string') return null
  return { term: fields[1] as number, shadowId: fields[2] }
}

function mac (secret: Buffer, payload: string): string {
  return hmacKey(secret).base64url(payload)   // pads prepared once per secret (shared/hmac.ts)
}

// Reads the cluster secret (hex) from a file, creating it (mode 0600, temp file then rename) when asked to.
export function loadSecret (file: string, createIfMissing: boolean): Buffer {
  if (!existsSync(file)) {
    if (!createIfMissing) throw new GranaryError('GRN_INVALID_ARGUMENT', [`secret file ${file} does not exist`])
    mkdirSync(dirname(file), { recursive: true })
    const temp = `${file}.tmp-${process.pid}`
    writeFileSync(temp, randomBytes(secretBytes).toString('hex') + '\n', { mode: 0o600 })
    renameSync(temp, file)
  }
  const secret = Buffer.from(readFileSync(file, 'utf8').trim(), 'hex')
  if (secret.length < 16) throw new GranaryError('GRN_INVALID_ARGUMENT', [`secret file ${file} holds fewer than 16 bytes of hex`])
  return secret
}
