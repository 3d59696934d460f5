// Who may ask a server for what: every control-plane request is signed with a key (issue 12).
//   - Servers (chunkserver → master/shadow, shadow ↔ master, candidate → chunkserver) sign with the control
//     key, an HMAC of the cluster secret (the raw secret signs chunk tokens; one key, one purpose).
//   - Clients sign with an access key's secret (master/keys.ts stores them sealed with the cluster secret).
// A signature covers method, path and query, a timestamp, a nonce and the body's SHA-256, so a captured request
// cannot be altered, is refused once its timestamp is older than authWindowMs, and is refused when replayed
// inside that window (NonceCache). A reply that carries commands (heartbeat, vote, oplog, hand-over) is signed
// too, bound to the request's nonce, so a forged or replayed reply changes nothing either.
// The format (headers, newline-joined string to sign) is small enough to implement in any language.
import { createCipheriv, createDecipheriv, createHash, createHmac, hash, randomBytes } from 'node:crypto'
import { hmacKey } from './hmac.js'
import { GranaryError } from './errors.js'

export const keyHeader = 'x-granary-key'               // the access key id, or clusterKeyId
export const dateHeader = 'x-granary-date'             // the signer's clock, epoch ms
export const nonceHeader = 'x-granary-nonce'           // 16..64 hex digits, never reused by a signer
export const signatureHeader = 'x-granary-signature'   // hex HMAC-SHA256 of stringToSign
export const replySignatureHeader = 'x-granary-reply-signature'
export const clusterKeyId = '~cluster'
export const credentialsFileName = 'credentials'        // in a master's data folder, and DATA/credentials of granary up                 // signed with the control key: a server, or an operator holding the secret

// A request signed more than this far from the verifier's clock is refused: the replay window, and the clock
// drift tolerated between hosts (they run NTP; the master lease itself assumes bounded drift rates, not offsets).
export const authWindowMs = 60_000
// The nonces of the requests accepted inside the window. Past this many, the oldest are forgotten and every
// request signed at or before the newest forgotten one is refused as too old (the window shrinks under load
// instead of memory growing: ~30 MB at the bound).
export const authNoncesMax = 262_144
export const accessKeyIdPattern = /^GK[0-9A-Z]{18}$/
export const accessKeySecretPattern = /^[A-Za-z0-9+/_-]{32,128}$/
const noncePattern = /^[0-9a-f]{16,64}$/

export interface Credentials { accessKeyId: string, secretAccessKey: string }

// What a verified request may do. `cluster`: a server or an operator holding the cluster secret: everything.
export type Principal =
  | { kind: 'cluster' }
  | { kind: 'key', accessKeyId: string, name: string, readOnly: boolean, admin: boolean, prefix: string | null }

// The control key: servers sign their requests and replies with it.
export function controlKey (clusterSecret: Buffer): Buffer {
  return createHmac('sha256', clusterSecret).update('granary control plane v1').digest()
}

const emptySha256Hex = createHash('sha256').update('').digest('hex')   // every GET's body: computed once

// The control key per secret, derived once (every server call signs with it).
const controlKeys = new WeakMap<Buffer, Buffer>()
function controlKeyCached (clusterSecret: Buffer): Buffer {
  let key = controlKeys.get(clusterSecret)
  if (key === undefined) {
    key = controlKey(clusterSecret)
    controlKeys.set(clusterSecret, key)
  }
  return key
}

export function sha256Hex (body: string | Buffer | null | undefined): string {
  return body === null || body === undefined || body.length === 0 ? emptySha256Hex : hash('sha256', body, 'hex')   // one-shot: a third of createHash's cost
}

function stringToSign (method: string, pathAndQuery: string, dateMs: string, nonce: string, bodyHash: string): string {
  return `GRN1\n${method.toUpperCase()}\n${pathAndQuery}\n${dateMs}\n${nonce}\n${bodyHash}`
}

function hmacHex (key: Buffer | string, text: string): string {
  return hmacKey(key).hex(text)   // the key's pads prepared once (shared/hmac.ts): createHmac per call cost ~1.3 µs more
}

// A nonce must never repeat for a signer, not be unpredictable (the signature covers it): a random prefix drawn
// once per process and a counter. randomBytes per request cost ~10 µs of the client's CPU (measured).
const noncePrefix = randomBytes(8).toString('hex')
let nonceCounter = 0

// The headers that sign one request. `pathAndQuery` is exactly what goes on the request line.
export function signRequest (keyId: string, key: Buffer | string, method: string, pathAndQuery: string, body: string | Buffer | null, nowMs = Date.now()): Record<string, string> {
  const dateMs = String(nowMs)
  nonceCounter += 1
  const nonce = noncePrefix + nonceCounter.toString(16).padStart(12, '0')
  return {
    [keyHeader]: keyId,
    [dateHeader]: dateMs,
    [nonceHeader]: nonce,
    [signatureHeader]: hmacHex(key, stringToSign(method, pathAndQuery, dateMs, nonce, sha256Hex(body)))
  }
}

export function signRequestWithSecret (clusterSecret: Buffer, method: string, pathAndQuery: string, body: string | Buffer | null): Record<string, string> {
  return signRequest(clusterKeyId, controlKeyCached(clusterSecret), method, pathAndQuery, body)
}

export function signClient (credentials: Credentials, method: string, pathAndQuery: string, body: string | Buffer | null): Record<string, string> {
  return signRequest(credentials.accessKeyId, credentials.secretAccessKey, method, pathAndQuery, body)
}

// A reply to a signed request: bound to its nonce and status, so it cannot answer another request.
export function signReply (key: Buffer, requestNonce: string, statusCode: number, body: string | Buffer): string {
  return hmacHex(key, `GRN1-REPLY\n${requestNonce}\n${statusCode}\n${sha256Hex(body)}`)
}

// Checks a reply's signature; throws GRN_UNAUTHENTICATED when it is missing or wrong.
export function verifyReply (key: Buffer, requestHeaders: Record<string, string>, statusCode: number, headers: Record<string, string | string[] | undefined>, body: string | Buffer, from: string): void {
  const given = headers[replySignatureHeader]
  const nonce = requestHeaders[nonceHeader] ?? ''
  if (typeof given !== 'string' || !equalHex(given, signReply(key, nonce, statusCode, body))) {
    throw new GranaryError('GRN_UNAUTHENTICATED', [`the reply from ${from} is not signed with this cluster's secret`])
  }
}

export function equalSecrets (a: string, b: string): boolean {
  return equalHex(a, b)
}

// Constant time in the strings' content (every character is compared, no early exit), without the two Buffers
// timingSafeEqual needs: this runs on every signed request and reply.
function equalHex (a: string, b: string): boolean {
  if (a.length !== b.length) return false
  let difference = 0
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i)
  return difference === 0
}

// The nonces seen inside the window: a Set for "seen?" and a ring of (nonce, date) in arrival order for
// forgetting the oldest. Not a Map walked from its front: deleted entries stay in a Map's table until it is
// rehashed, and walking past them made each admit cost ~90 µs once the bound was reached (measured).
export class NonceCache {
  readonly #seen = new Set<string>()
  readonly #nonces: Array<string | undefined>
  readonly #dates: Float64Array
  #head = 0
  #count = 0
  #floorMs = -Infinity   // requests signed at or before this are refused: their nonces may have been forgotten
  readonly #max: number

  constructor (max = authNoncesMax) {
    this.#max = max
    this.#nonces = new Array<string | undefined>(max)
    this.#dates = new Float64Array(max)
  }

  get size (): number { return this.#count }

  // Records the nonce; false when it was seen already or cannot be checked any more.
  admit (nonce: string, dateMs: number, nowMs: number): boolean {
    if (dateMs <= this.#floorMs || this.#seen.has(nonce)) return false
    // Forget what the window has passed, then what the bound forces out (oldest arrival first).
    while (this.#count > 0) {
      const oldDateMs = this.#dates[this.#head] as number
      const expired = oldDateMs < nowMs - authWindowMs
      if (!expired && this.#count < this.#max) break
      if (!expired) this.#floorMs = Math.max(this.#floorMs, oldDateMs)
      this.#seen.delete(this.#nonces[this.#head] as string)
      this.#nonces[this.#head] = undefined
      this.#head = (this.#head + 1) % this.#max
      this.#count -= 1
    }
    const slot = (this.#head + this.#count) % this.#max
    this.#nonces[slot] = nonce
    this.#dates[slot] = dateMs
    this.#count += 1
    this.#seen.add(nonce)
    return true
  }
}

export interface KeyRecord { key: Buffer | string, principal: Principal }

// Checks a signed request and returns who sent it. `lookup` finds an access key (null: unknown or revoked).
export class RequestVerifier {
  readonly #control: Buffer
  readonly #lookup: (accessKeyId: string) => KeyRecord | null
  readonly #nonces: NonceCache
  readonly #now: () => number

  constructor (options: { clusterSecret: Buffer, lookup: (accessKeyId: string) => KeyRecord | null, now?: () => number, noncesMax?: number }) {
    this.#control = controlKey(options.clusterSecret)
    this.#lookup = options.lookup
    this.#nonces = new NonceCache(options.noncesMax)
    this.#now = options.now ?? Date.now
  }

  get controlKey (): Buffer { return this.#control }

  verify (method: string, pathAndQuery: string, headers: Record<string, string | string[] | undefined>, body: string | Buffer | null): Principal {
    const keyId = headers[keyHeader]
    const date = headers[dateHeader]
    const nonce = headers[nonceHeader]
    const signature = headers[signatureHeader]
    if (typeof keyId !== 'string' || typeof date !== 'string' || typeof nonce !== 'string' || typeof signature !== 'string') {
      throw new GranaryError('GRN_UNAUTHENTICATED', ['the request is not signed (give credentials: --credentials FILE, GRANARY_CREDENTIALS, or the cluster\'s credentials file; docs/API.md "Credentials")'])
    }
    if (!/^\d{1,16}$/.test(date) || !noncePattern.test(nonce) || !/^[0-9a-f]{64}$/.test(signature)) {
      throw new GranaryError('GRN_UNAUTHENTICATED', ['malformed signature headers'])
    }
    const nowMs = this.#now()
    const dateMs = Number(date)
    if (Math.abs(nowMs - dateMs) > authWindowMs) {
      throw new GranaryError('GRN_UNAUTHENTICATED', [`the request was signed at ${new Date(dateMs).toISOString()}, more than ${authWindowMs / 1000} s from this server's clock (${new Date(nowMs).toISOString()}): check both clocks`])
    }
    let record: KeyRecord | null
    if (keyId === clusterKeyId) record = { key: this.#control, principal: { kind: 'cluster' } }
    else record = accessKeyIdPattern.test(keyId) ? this.#lookup(keyId) : null
    if (record === null) throw new GranaryError('GRN_UNAUTHENTICATED', [`unknown or revoked access key ${JSON.stringify(keyId.slice(0, 40))}`])
    const expected = hmacHex(record.key, stringToSign(method, pathAndQuery, date, nonce, sha256Hex(body)))
    if (!equalHex(signature, expected)) throw new GranaryError('GRN_UNAUTHENTICATED', ['the signature does not match the request (wrong secret, or the request was altered)'])
    if (!this.#nonces.admit(nonce, dateMs, nowMs)) throw new GranaryError('GRN_UNAUTHENTICATED', ['a replayed request (its nonce was seen already)'])
    return record.principal
  }
}

// ---- access key secrets at rest: sealed with a key derived from the cluster secret -----------------------
// Not hashed: verifying an HMAC signature (ours, or the S3 gateway's SigV4) needs the secret itself. Sealed, a
// copy of master.db (or of the oplog) alone does not reveal any key; with the cluster secret it does.
function sealKey (clusterSecret: Buffer): Buffer {
  return createHmac('sha256', clusterSecret).update('granary access-key seal v1').digest()
}

export function sealSecret (clusterSecret: Buffer, secret: string): string {
  const iv = randomBytes(12)
  const cipher = createCipheriv('aes-256-gcm', sealKey(clusterSecret), iv)
  const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()])
  return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
}

export function unsealSecret (clusterSecret: Buffer, sealed: string): string {
  const raw = Buffer.from(sealed, 'base64url')
  if (raw.length < 29) throw new GranaryError('GRN_INTERNAL', ['a sealed access key is too short'])
  const decipher = createDecipheriv('aes-256-gcm', sealKey(clusterSecret), raw.subarray(0, 12))
  decipher.setAuthTag(raw.subarray(12, 28))
  try {
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
  } catch {
    throw new GranaryError('GRN_INTERNAL', ['an access key was sealed with another cluster secret'])
  }
}

// AWS Signature V4's signing key for one scope (the S3 gateway checks S3 requests with it): HMAC chain over
// date (YYYYMMDD), region, service, "aws4_request", starting from "AWS4" + secret.
export function sigV4SigningKey (secret: string, date: string, region: string, service: string): Buffer {
  const step = (key: Buffer | string, text: string): Buffer => createHmac('sha256', key).update(text).digest()
  return step(step(step(step(`AWS4${secret}`, date), region), service), 'aws4_request')
}

// A new access key: an id that says what it is (GK + 18 base-32 characters) and a 40-character secret.
export function newCredentials (): Credentials {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  const idBytes = randomBytes(18)
  let id = 'GK'
  for (const byte of idBytes) id += alphabet[byte % 32]
  return { accessKeyId: id, secretAccessKey: randomBytes(30).toString('base64url') }
}

export function parseCredentials (text: string, from: string): Credentials {
  let value: unknown
  try { value = JSON.parse(text) } catch { value = undefined }
  const v = value as Partial<Credentials> | undefined
  if (typeof v?.accessKeyId !== 'string' || !accessKeyIdPattern.test(v.accessKeyId) ||
    typeof v.secretAccessKey !== 'string' || !accessKeySecretPattern.test(v.secretAccessKey)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${from} is not a credentials file: want {"accessKeyId": "GK…", "secretAccessKey": "…"}`])
  }
  return { accessKeyId: v.accessKeyId, secretAccessKey: v.secretAccessKey }
}

// May this principal do `right` on `paths`? (Chunk routes carry a lease id minted by a create it was allowed.)
export type Right = 'read' | 'write' | 'admin'
// True when no path can change the answer (so a caller need not even normalise them).
export function permitsAnyPath (principal: Principal, right: Right): boolean {
  if (principal.kind === 'cluster' || principal.admin) return true
  if (right === 'admin' || (right === 'write' && principal.readOnly)) return false
  return principal.prefix === null || principal.prefix === '/'
}

export function permits (principal: Principal, right: Right, paths: readonly string[]): boolean {
  if (principal.kind === 'cluster' || principal.admin) return true
  if (right === 'admin') return false
  if (right === 'write' && principal.readOnly) return false
  const prefix = principal.prefix
  if (prefix === null || prefix === '/') return true
  return paths.every((path) => path === prefix || path.startsWith(prefix + '/'))
}

// Refuses (GRN_PERMISSION_DENIED) unless the principal may do `right` on every one of `paths`.
export function requireRight (principal: Principal | undefined, right: Right, paths: readonly string[]): void {
  if (principal === undefined) return   // authentication off on this server
  if (permits(principal, right, paths)) return
  const who = principal.kind === 'key' ? `access key ${principal.accessKeyId} (${principal.name})` : 'the cluster key'
  const scope = principal.kind === 'key' && principal.prefix !== null ? ` (limited to ${principal.prefix})` : ''
  throw new GranaryError('GRN_PERMISSION_DENIED', [who + scope, right, paths.join(', ') || 'this cluster'])
}

// A host that only this machine can reach: where a server may run without authentication.
export function isLoopbackHost (host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase()
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

// ---- a server's own signed call to another server (chunkserver → master, shadow → master, candidate → chunkserver)

export interface ControlReply { statusCode: number, headers: Record<string, string | string[] | undefined>, json: unknown }
export const controlReplyBytesMax = 64 * 1024 * 1024   // an oplog page is the largest reply a server reads this way

// Signs the request with the control key, and checks the reply is signed by a holder of the same secret before
// anything in it is believed (a refusal naming a "new master" included). undici's request is passed in, so
// callers keep their own dispatcher, signal and timeouts.
export async function controlRequest (
  send: (url: string, init: { method: string, headers: Record<string, string>, body?: string }) => Promise<{ statusCode: number, headers: Record<string, string | string[] | undefined>, body: { text: () => Promise<string> } }>,
  clusterSecret: Buffer, url: string, method: 'GET' | 'POST', body?: unknown, headers: Record<string, string> = {}
): Promise<ControlReply> {
  const parsed = new URL(url)
  const text = body === undefined ? undefined : JSON.stringify(body)
  const auth = signRequest(clusterKeyId, controlKeyCached(clusterSecret), method, parsed.pathname + parsed.search, text ?? null)
  const res = await send(url, {
    method, headers: { ...headers, ...auth, ...(text === undefined ? {} : { 'content-type': 'application/json' }) }, ...(text === undefined ? {} : { body: text })
  })
  const replyText = await res.body.text()
  if (Buffer.byteLength(replyText) > controlReplyBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`the reply from ${parsed.origin}`, controlReplyBytesMax])
  verifyReply(controlKeyCached(clusterSecret), auth, res.statusCode, res.headers, replyText, parsed.origin)
  let json: unknown
  try { json = JSON.parse(replyText) } catch { json = undefined }
  return { statusCode: res.statusCode, headers: res.headers, json }
}
