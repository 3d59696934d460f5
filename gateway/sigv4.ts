// AWS Signature Version 4 as S3 checks it: the Authorization header form and the presigned query form, each
// with its payload mode (a SHA-256 of the body, UNSIGNED-PAYLOAD, or the aws-chunked streaming forms, whose
// chunks are checked by gateway/payload.ts with the seed signature found here). The secret never reaches this
// file: a KeyResolver hands out the derived signing key for one (date, region, service) scope, so a resolver
// backed by the master (Granary access keys) can keep secrets where they are.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { S3Error } from './errors.js'
import { hmacKey } from '../shared/hmac.js'
import { clockSkewMsMax, presignExpiresSecondsMax, signingKeysCachedMax } from './limits.js'

export interface KeyScope { date: string, region: string, service: string }   // date: YYYYMMDD
export interface ResolvedKey {
  signingKey: Buffer           // HMAC(HMAC(HMAC(HMAC('AWS4' + secret, date), region), service), 'aws4_request')
  readOnly: boolean            // the gateway refuses every mutation (AccessDenied)
  prefix: string | null        // the key may only touch paths under this ('/bucket' or '/bucket/dir'); null: all
}
export interface KeyResolver { resolve: (accessKeyId: string, scope: KeyScope) => Promise<ResolvedKey | null> }

export const algorithm = 'AWS4-HMAC-SHA256'
export const unsignedPayload = 'UNSIGNED-PAYLOAD'
export const streamingSigned = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'
export const streamingSignedTrailer = 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER'
export const streamingUnsignedTrailer = 'STREAMING-UNSIGNED-PAYLOAD-TRAILER'
export const emptySha256 = createHash('sha256').update('').digest('hex')

export function deriveSigningKey (secretAccessKey: string, scope: KeyScope): Buffer {
  const dateKey = hmac(`AWS4${secretAccessKey}`, scope.date)
  return hmac(hmac(hmac(dateKey, scope.region), scope.service), 'aws4_request')
}

// One key pair given by flags or environment (until Granary access keys back the gateway): full access. The
// signing key of a scope is derived once (four HMACs, ~50 µs of a small PUT's gateway CPU when made per request)
// and kept, boundedly: a scope changes once a day per region.
export class StaticKeyResolver implements KeyResolver {
  readonly #accessKeyId: string
  readonly #secretAccessKey: string
  readonly #byScope = new Map<string, ResolvedKey>()
  constructor (accessKeyId: string, secretAccessKey: string) {
    this.#accessKeyId = accessKeyId
    this.#secretAccessKey = secretAccessKey
  }

  async resolve (accessKeyId: string, scope: KeyScope): Promise<ResolvedKey | null> {
    if (!safeEqual(accessKeyId, this.#accessKeyId)) return null
    const id = `${scope.date} ${scope.region} ${scope.service}`
    let key = this.#byScope.get(id)
    if (key === undefined) {
      if (this.#byScope.size >= signingKeysCachedMax) this.#byScope.clear()
      key = { signingKey: deriveSigningKey(this.#secretAccessKey, scope), readOnly: false, prefix: null }
      this.#byScope.set(id, key)
    }
    return key
  }
}

// How the body is to be checked after the signature on the request itself passed.
export type PayloadMode =
  | { kind: 'unsigned' }
  | { kind: 'sha256', sha256Hex: string }
  | { kind: 'chunked', signed: boolean, trailer: boolean, chunkSigning: ChunkSigning | null }

export interface ChunkSigning { signingKey: Buffer, amzDate: string, scope: string, seedSignature: string }

export interface Authenticated { accessKeyId: string, key: ResolvedKey, payload: PayloadMode }

export interface SignedRequest { method: string, url: string, headers: IncomingHttpHeaders }

// Checks the request's signature (either form) and returns who signed it and how its body must be checked.
// Throws S3Error with S3's codes: AccessDenied (no signature, expired presign), AuthorizationHeaderMalformed,
// AuthorizationQueryParametersError, InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed.
export async function authenticate (request: SignedRequest, resolver: KeyResolver, nowMs: number): Promise<Authenticated> {
  const { path, query } = splitUrl(request.url)
  const authorization = headerValue(request.headers, 'authorization')
  const presigned = query.some(([name]) => name === 'X-Amz-Signature')
  if (authorization !== undefined && presigned) throw new S3Error('InvalidArgument', 'only one auth mechanism allowed')
  if (authorization === undefined && !presigned) throw new S3Error('AccessDenied', 'anonymous requests are not allowed: sign with SigV4')
  if (authorization !== undefined && !authorization.startsWith(`${algorithm} `)) {
    throw new S3Error('InvalidRequest', 'only AWS Signature Version 4 (AWS4-HMAC-SHA256) is supported')
  }
  const parts = authorization !== undefined ? parseAuthorization(authorization) : parsePresigned(query, nowMs)
  const amzDate = authorization !== undefined ? (headerValue(request.headers, 'x-amz-date') ?? headerValue(request.headers, 'date')) : parts.amzDate
  const dateMs = parseAmzDate(amzDate, authorization !== undefined ? 'AuthorizationHeaderMalformed' : 'AuthorizationQueryParametersError')
  const [keyId, date, region, service, terminator] = parts.credential.split('/')
  const malformed = authorization !== undefined ? 'AuthorizationHeaderMalformed' : 'AuthorizationQueryParametersError'
  if (keyId === undefined || keyId === '' || date === undefined || region === undefined || service === undefined || terminator !== 'aws4_request') {
    throw new S3Error(malformed, `the credential ${JSON.stringify(parts.credential)} is not KEY/DATE/REGION/SERVICE/aws4_request`)
  }
  if (service !== 's3') throw new S3Error(malformed, `the credential's service must be s3, not ${JSON.stringify(service)}`)
  if (date !== (amzDate as string).slice(0, 8)) throw new S3Error(malformed, `the credential's date ${date} is not the request's date ${(amzDate as string).slice(0, 8)}`)
  if (authorization !== undefined && Math.abs(nowMs - dateMs) > clockSkewMsMax) {
    throw new S3Error('RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.')
  }
  if (authorization === undefined) {
    if (dateMs - nowMs > clockSkewMsMax) throw new S3Error('AccessDenied', 'Request is not valid yet')
    if (nowMs > dateMs + parts.expiresSeconds * 1000) throw new S3Error('AccessDenied', 'Request has expired')
  }
  const key = await resolver.resolve(keyId, { date, region, service })
  if (key === null) throw new S3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.')

  const signedHeaders = parts.signedHeaders.split(';')
  if (!signedHeaders.includes('host')) throw new S3Error(malformed, 'the host header must be signed')
  const payloadHash = authorization !== undefined
    ? headerValue(request.headers, 'x-amz-content-sha256')
    : (query.find(([name]) => name === 'X-Amz-Content-Sha256')?.[1] ?? unsignedPayload)
  if (payloadHash === undefined) throw new S3Error('InvalidRequest', 'Missing required header for this request: x-amz-content-sha256')
  const canonical = [
    request.method,
    canonicalPath(path),
    canonicalQuery(query.filter(([name]) => name !== 'X-Amz-Signature')),
    ...signedHeaders.map((name) => `${name}:${canonicalHeaderValue(request.headers, name)}`),
    '',
    parts.signedHeaders,
    payloadHash
  ].join('\n')
  const scope = `${date}/${region}/${service}/aws4_request`
  const stringToSign = [algorithm, amzDate, scope, sha256Hex(canonical)].join('\n')
  const expected = hmacKey(key.signingKey).hex(stringToSign)
  if (!safeEqual(expected, parts.signature)) {
    throw new S3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.')
  }
  const chunkSigning: ChunkSigning = { signingKey: key.signingKey, amzDate: amzDate as string, scope, seedSignature: expected }
  return { accessKeyId: keyId, key, payload: payloadModeOf(payloadHash, chunkSigning) }
}

function payloadModeOf (payloadHash: string, chunkSigning: ChunkSigning): PayloadMode {
  if (payloadHash === unsignedPayload) return { kind: 'unsigned' }
  if (payloadHash === streamingSigned) return { kind: 'chunked', signed: true, trailer: false, chunkSigning }
  if (payloadHash === streamingSignedTrailer) return { kind: 'chunked', signed: true, trailer: true, chunkSigning }
  if (payloadHash === streamingUnsignedTrailer) return { kind: 'chunked', signed: false, trailer: true, chunkSigning: null }
  if (/^[0-9a-f]{64}$/.test(payloadHash)) return { kind: 'sha256', sha256Hex: payloadHash }
  throw new S3Error('InvalidArgument', `x-amz-content-sha256 ${JSON.stringify(payloadHash)} is not a SHA-256, UNSIGNED-PAYLOAD or a streaming mode`)
}

// The string a chunk's signature covers (aws-chunked, STREAMING-AWS4-HMAC-SHA256-PAYLOAD).
export function chunkSignature (signing: ChunkSigning, previousSignature: string, chunkSha256Hex: string): string {
  const stringToSign = [`${algorithm}-PAYLOAD`, signing.amzDate, signing.scope, previousSignature, emptySha256, chunkSha256Hex].join('\n')
  return hmacKey(signing.signingKey).hex(stringToSign)
}

// The trailer's signature (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER): over the trailer lines, each "name:value\n".
export function trailerSignature (signing: ChunkSigning, previousSignature: string, trailerText: string): string {
  const stringToSign = [`${algorithm}-TRAILER`, signing.amzDate, signing.scope, previousSignature, sha256Hex(trailerText)].join('\n')
  return hmacKey(signing.signingKey).hex(stringToSign)
}

// ---- parsing -------------------------------------------------------------------------------------------

interface SignatureParts { credential: string, signedHeaders: string, signature: string, amzDate?: string, expiresSeconds: number }

function parseAuthorization (header: string): SignatureParts {
  const fields = new Map<string, string>()
  for (const part of header.slice(algorithm.length + 1).split(',')) {
    const eq = part.indexOf('=')
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
  const credential = fields.get('Credential')
  const signedHeaders = fields.get('SignedHeaders')
  const signature = fields.get('Signature')
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    throw new S3Error('AuthorizationHeaderMalformed', 'the Authorization header needs Credential, SignedHeaders and Signature')
  }
  return { credential, signedHeaders, signature, expiresSeconds: 0 }
}

function parsePresigned (query: Array<[string, string]>, _nowMs: number): SignatureParts & { amzDate: string } {
  const get = (name: string): string => {
    const value = query.find(([n]) => n === name)?.[1]
    if (value === undefined) throw new S3Error('AuthorizationQueryParametersError', `Query-string authentication version 4 requires the ${name} parameter`)
    return value
  }
  if (get('X-Amz-Algorithm') !== algorithm) throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Algorithm must be ${algorithm}`)
  const expires = get('X-Amz-Expires')
  const expiresSeconds = /^\d{1,9}$/.test(expires) ? Number(expires) : -1
  if (expiresSeconds < 1 || expiresSeconds > presignExpiresSecondsMax) {
    throw new S3Error('AuthorizationQueryParametersError', `X-Amz-Expires must be 1..${presignExpiresSecondsMax} seconds`)
  }
  return { credential: get('X-Amz-Credential'), signedHeaders: get('X-Amz-SignedHeaders'), signature: get('X-Amz-Signature'), amzDate: get('X-Amz-Date'), expiresSeconds }
}

function parseAmzDate (value: string | undefined, code: string): number {
  const match = value === undefined ? null : /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value)
  if (match === null) throw new S3Error(code, 'X-Amz-Date must be given as YYYYMMDDTHHMMSSZ')
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[]
  return Date.UTC(y as number, (mo as number) - 1, d, h, mi, s)
}

// The path and the decoded query pairs of a request URL, as sent (no normalisation: S3 signs the path as is).
export function splitUrl (url: string): { path: string, query: Array<[string, string]> } {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  const query: Array<[string, string]> = []
  if (q !== -1) {
    for (const pair of url.slice(q + 1).split('&')) {
      if (pair === '') continue
      const eq = pair.indexOf('=')
      query.push([decode(eq === -1 ? pair : pair.slice(0, eq)), eq === -1 ? '' : decode(pair.slice(eq + 1))])
    }
  }
  return { path, query }
}

export function decode (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw new S3Error('InvalidURI', 'Couldn\'t parse the specified URI.')
  }
}

// RFC 3986 unreserved characters stay; everything else is %XX (uppercase), as AWS encodes.
export function awsEncode (text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

function canonicalPath (path: string): string {
  return path.split('/').map((segment) => awsEncode(decode(segment))).join('/')
}

function canonicalQuery (query: Array<[string, string]>): string {
  return query.map(([name, value]) => [awsEncode(name), awsEncode(value)] as const)
    .sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
    .map(([name, value]) => `${name}=${value}`).join('&')
}

function canonicalHeaderValue (headers: IncomingHttpHeaders, name: string): string {
  const raw = headers[name]
  const value = Array.isArray(raw) ? raw.join(',') : raw ?? ''
  return value.trim().replace(/\s+/g, ' ')
}

export function headerValue (headers: IncomingHttpHeaders, name: string): string | undefined {
  const raw = headers[name]
  return Array.isArray(raw) ? raw.join(',') : raw
}

function hmac (key: string | Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text, 'utf8').digest()
}

export function sha256Hex (text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex')
}

function safeEqual (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
