// Object operations: PutObject, GetObject (Range, conditionals, response-* overrides), HeadObject,
// DeleteObject, CopyObject. A PUT streams the request body through gateway/payload.ts (framing, signatures,
// digests) into a write stream that replaces the file atomically on completion, with the MD5 as the ETag
// carried on the complete: a failed check abandons the write and the old object stays.
import { pipeline } from 'node:stream/promises'
import type { Readable } from 'node:stream'
import type { IncomingHttpHeaders } from 'node:http'
import { isGranaryError } from '../shared/errors.js'
import type { FileStat } from '../shared/protocol.js'
import { parentPath } from '../shared/paths.js'
import { pipe } from '../shared/pipe.js'
import type { Handler, S3Request, GatewayContext } from './server.js'
import { sendXml } from './server.js'
import { S3Error, fromGranary } from './errors.js'
import { document } from './xml.js'
import { objectPath, isFolderKey, checkKey, checkBucketName } from './keys.js'
import { attrsFromHeaders, attrsOf, etagOf, objectHeaders, type ObjectAttrs } from './attrs.js'
import { PayloadReader, checkContentMd5, type Verified } from './payload.js'
import type { PayloadMode } from './sigv4.js'
import { decode, headerValue } from './sigv4.js'
import { putObjectBytesMax, getReadAheadBytes } from './limits.js'

const emptyMd5 = 'd41d8cd98f00b204e9800998ecf8427e'

export interface WriteResult { stat: FileStat, verified: Verified }

// Streams `source` into the file at `path` (replacing it on completion), checked by a PayloadReader; the
// attrs given plus the computed ETag (or `etag` when given) are stored with the file.
export async function writeObject (context: GatewayContext, path: string, source: Readable, options: {
  mode: PayloadMode, headers: IncomingHttpHeaders, attrs: ObjectAttrs, sizeBytesMax: number, etag?: (verified: Verified) => string
  chunkSizeBytes?: number       // default: the gateway's client's
}): Promise<WriteResult> {
  let verified: Verified | undefined
  // The declared length lets a small object go on a reserved file (one master call); the reader checks it.
  const declared = headerValue(options.headers, options.mode.kind === 'chunked' ? 'x-amz-decoded-content-length' : 'content-length')
  const sizeBytes = declared !== undefined && /^[0-9]{1,15}$/.test(declared) ? Number(declared) : undefined
  const target = context.client.createWriteStream(path, {
    overwrite: true, ...(options.chunkSizeBytes === undefined ? {} : { chunkSizeBytes: options.chunkSizeBytes }), ...(sizeBytes === undefined ? {} : { sizeBytes })
  })
  const reader = new PayloadReader({
    mode: options.mode, headers: options.headers, sizeBytesMax: options.sizeBytesMax,
    onVerified: (result) => {
      verified = result
      target.setAttrs({ ...options.attrs, etag: options.etag?.(result) ?? result.md5Hex })
    }
  })
  try {
    await pipe(source, reader, target)
  } catch (err) {
    if (err instanceof S3Error) throw err
    // A folder on the key's path appearing or going while the file was written: say what cannot map.
    if (isGranaryError(err) && err.code === 'GRN_NOT_FOUND') throw new S3Error('InternalError', `a folder on the path of ${path} was removed during the write; retry`, err.code)
    throw fromGranary(err, 'write')
  }
  if (target.stat === undefined || verified === undefined) throw new S3Error('InternalError', `the write of ${path} finished without its stat`)
  return { stat: target.stat, verified }
}

function checksumHeaders (verified: Verified): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [algorithm, value] of Object.entries(verified.checksums)) out[`x-amz-checksum-${algorithm}`] = value
  return out
}

export const putObject: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  const path = objectPath(request.bucket, request.key)
  checkContentMd5(request.headers)
  const length = headerValue(request.headers, 'content-length')
  if (length !== undefined && Number(length) > putObjectBytesMax && request.auth.payload.kind !== 'chunked') {
    throw new S3Error('EntityTooLarge', `Your proposed upload exceeds the maximum allowed size (${putObjectBytesMax} bytes for one PUT; use multipart)`)
  }
  const attrs = attrsFromHeaders(request.headers)
  if (isFolderKey(request.key)) return await putFolder(context, request, reply, path)
  const { stat, verified } = await writeObject(context, path, request.raw, { mode: request.auth.payload, headers: request.headers, attrs, sizeBytesMax: putObjectBytesMax })
  return reply.code(200).headers({ etag: etagOf(stat), ...checksumHeaders(verified) }).send()
}

// A key ending in '/' with an empty body is a folder marker: the folder is made (with its parents).
async function putFolder (context: GatewayContext, request: S3Request, reply: Parameters<Handler>[2], path: string): Promise<unknown> {
  let bytes = 0
  const reader = new PayloadReader({ mode: request.auth.payload, headers: request.headers, sizeBytesMax: 0 })
  await pipeline(request.raw, reader, async function (source: AsyncIterable<Buffer>) { for await (const piece of source) bytes += piece.length })
  if (bytes > 0) throw new S3Error('InvalidArgument', 'a key ending in / is a folder here: it cannot hold bytes')
  try {
    await context.client.mkdir(path, { recursive: true })
  } catch (err) {
    throw fromGranary(err, 'write')
  }
  return reply.code(200).header('etag', `"${emptyMd5}"`).send()
}

// ---- reading -------------------------------------------------------------------------------------------

// The file behind a key, or NoSuchKey. A folder answers only to its marker key ('dir/'), as an empty object.
async function statObject (context: GatewayContext, bucket: string, key: string): Promise<FileStat> {
  const path = objectPath(bucket, key)
  let stat: FileStat
  try {
    stat = await context.client.stat(path)
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) {
      await context.buckets.require(bucket)
      throw new S3Error('NoSuchKey', 'The specified key does not exist.', err.code)
    }
    throw fromGranary(err, 'object')
  }
  if ((stat.type === 'dir') !== isFolderKey(key) || path === `/${bucket}`) throw new S3Error('NoSuchKey', 'The specified key does not exist.')
  return stat
}

function checkVersion (request: S3Request): void {
  const versionId = request.query.get('versionId')
  if (versionId !== undefined && versionId !== 'null') throw new S3Error('NoSuchVersion', 'The specified version does not exist.')
}

// If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since, in S3's order of precedence.
function checkConditions (headers: IncomingHttpHeaders, stat: FileStat): 304 | null {
  const etag = etagOf(stat)
  const matches = (list: string): boolean => list.split(',').map((e) => e.trim()).some((e) => e === '*' || e === etag || `"${e}"` === etag)
  const mtimeS = Math.floor(stat.mtimeMs / 1000)
  const ifMatch = headerValue(headers, 'if-match')
  const ifNoneMatch = headerValue(headers, 'if-none-match')
  const ifModifiedSince = headerValue(headers, 'if-modified-since')
  const ifUnmodifiedSince = headerValue(headers, 'if-unmodified-since')
  if (ifMatch !== undefined && !matches(ifMatch)) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  if (ifMatch === undefined && ifUnmodifiedSince !== undefined) {
    const since = Date.parse(ifUnmodifiedSince)
    if (!Number.isNaN(since) && mtimeS > Math.floor(since / 1000)) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  }
  if (ifNoneMatch !== undefined && matches(ifNoneMatch)) return 304
  if (ifNoneMatch === undefined && ifModifiedSince !== undefined) {
    const since = Date.parse(ifModifiedSince)
    if (!Number.isNaN(since) && mtimeS <= Math.floor(since / 1000)) return 304
  }
  return null
}

// bytes=A-B, bytes=A-, bytes=-N (one range; anything else is ignored, as S3 does). null: the whole object.
export function parseRange (header: string | undefined, sizeBytes: number): { start: number, end: number } | null {
  if (header === undefined) return null
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (match === null || (match[1] === '' && match[2] === '')) return null
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0 || sizeBytes === 0) throw new S3Error('InvalidRange', 'The requested range is not satisfiable')
    return { start: Math.max(0, sizeBytes - suffix), end: sizeBytes - 1 }
  }
  const start = Number(match[1])
  const end = match[2] === '' ? sizeBytes - 1 : Math.min(Number(match[2]), sizeBytes - 1)
  if (match[2] !== '' && Number(match[2]) < start) return null
  if (start >= sizeBytes) throw new S3Error('InvalidRange', 'The requested range is not satisfiable')
  return { start, end }
}

const overrides = ['content-type', 'content-language', 'expires', 'cache-control', 'content-disposition', 'content-encoding']

async function readObject (context: GatewayContext, request: S3Request, reply: Parameters<Handler>[2], withBody: boolean): Promise<unknown> {
  checkVersion(request)
  const stat = await statObject(context, request.bucket, request.key)
  const headers = objectHeaders(stat)
  for (const name of overrides) {
    const value = request.query.get(`response-${name}`)
    if (value !== undefined) headers[name] = value
  }
  headers['x-amz-version-id'] = 'null'
  const condition = checkConditions(request.headers, stat)
  if (condition === 304) {
    return reply.code(304).headers({ etag: headers.etag as string, 'last-modified': headers['last-modified'] as string }).send()
  }
  const range = stat.type === 'dir' ? null : parseRange(headerValue(request.headers, 'range'), stat.sizeBytes)
  const start = range?.start ?? 0
  const end = range?.end ?? stat.sizeBytes - 1
  const lengthBytes = Math.max(0, end - start + 1)
  reply.code(range === null ? 200 : 206).headers(headers).header('content-length', String(lengthBytes))
  if (range !== null) reply.header('content-range', `bytes ${start}-${end}/${stat.sizeBytes}`)
  if (!withBody || lengthBytes === 0) return reply.send()
  // The bytes are read after the stat: a file replaced in between may differ in length. Node then cuts the
  // connection rather than send a body that disagrees with Content-Length (a client retries the GET).
  reply.raw.strictContentLength = true
  // Read ahead of the client by getReadAheadBytes: the chunkserver's socket is drained while the client's fills.
  const stream = context.client.createReadStream(stat.path, { start, end, highWaterMark: getReadAheadBytes })
  return reply.send(stream)
}

export const getObject: Handler = async (context, request, reply) => await readObject(context, request, reply, true)
export const headObject: Handler = async (context, request, reply) => await readObject(context, request, reply, false)

// ---- deleting ------------------------------------------------------------------------------------------

export const deleteObject: Handler = async (context, request, reply) => {
  checkVersion(request)
  await context.buckets.require(request.bucket)
  await deleteKey(context, request.bucket, request.key)
  return reply.code(204).send()
}

// Deletes a key: a missing one is not an error (S3's rule). An object goes to Granary's trash (restorable with
// `granary restore`); a folder marker removes its folder only when empty. Folders the delete left empty are
// removed up to the bucket, so a prefix exists exactly while it holds objects (as in S3).
export async function deleteKey (context: GatewayContext, bucket: string, key: string): Promise<void> {
  checkKey(key)
  const path = objectPath(bucket, key)
  try {
    const stat = await context.client.stat(path)
    if ((stat.type === 'dir') !== isFolderKey(key)) return
    await context.client.rm(path, { skipTrash: stat.type === 'dir' })
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR' || err.code === 'GRN_NOT_EMPTY')) return
    throw fromGranary(err, 'object')
  }
  await pruneEmptyFolders(context, bucket, parentPath(path))
}

// A read first (one entry), so a delete among siblings costs no second mutation; the rm itself refuses a folder
// that is not empty, so a file arriving in between is never lost.
async function pruneEmptyFolders (context: GatewayContext, bucket: string, from: string): Promise<void> {
  for (let path = from; path !== `/${bucket}` && path !== '/'; path = parentPath(path)) {
    try {
      if ((await context.client.list(path, { limit: 1 })).entries.length > 0) return
      await context.client.rm(path, { skipTrash: true })
    } catch {
      return   // not empty (or gone, or a new file arrived): it stays
    }
  }
}

// ---- CopyObject ----------------------------------------------------------------------------------------

export function copySource (request: S3Request): { bucket: string, key: string } {
  const raw = headerValue(request.headers, 'x-amz-copy-source') as string
  const [pathPart, queryPart] = raw.split('?') as [string, string | undefined]
  if (queryPart !== undefined && queryPart !== '' && queryPart !== 'versionId=null') throw new S3Error('NoSuchVersion', 'The specified version does not exist.')
  const path = decode(pathPart).replace(/^\//, '')
  const slash = path.indexOf('/')
  if (slash <= 0 || slash === path.length - 1) throw new S3Error('InvalidArgument', 'x-amz-copy-source must be BUCKET/KEY')
  const bucket = path.slice(0, slash)
  checkBucketName(bucket)
  const key = path.slice(slash + 1)
  // The signing key's prefix bounds what it may read too.
  const prefix = request.auth.key.prefix
  if (prefix !== null && !`/${bucket}/${key}`.startsWith(`${prefix.replace(/\/$/, '')}/`)) {
    throw new S3Error('AccessDenied', `this access key is limited to ${prefix}`)
  }
  return { bucket, key }
}

// A copy inside the store: the gateway reads the source and writes the target (bytes never go to the client);
// metadata is copied (x-amz-metadata-directive COPY, the default) or taken from this request (REPLACE).
export const copyObject: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  const target = objectPath(request.bucket, request.key)
  const source = copySource(request)
  const stat = await statObject(context, source.bucket, source.key)
  checkCopyConditions(request.headers, stat)
  const directive = headerValue(request.headers, 'x-amz-metadata-directive') ?? 'COPY'
  if (directive !== 'COPY' && directive !== 'REPLACE') throw new S3Error('InvalidArgument', 'x-amz-metadata-directive must be COPY or REPLACE')
  const attrs = directive === 'REPLACE' ? attrsFromHeaders(request.headers) : { ...attrsOf(stat) }
  delete attrs.etag
  await drainBody(request)
  const { stat: written } = await writeObject(context, target, context.client.createReadStream(stat.path), {
    mode: { kind: 'unsigned' }, headers: {}, attrs, sizeBytesMax: Number.MAX_SAFE_INTEGER
  })
  return sendXml(reply, 200, document('CopyObjectResult', [['LastModified', new Date(written.mtimeMs).toISOString()], ['ETag', etagOf(written)]]))
}

export function checkCopyConditions (headers: IncomingHttpHeaders, stat: FileStat): void {
  const etag = etagOf(stat)
  const ifMatch = headerValue(headers, 'x-amz-copy-source-if-match')
  const ifNoneMatch = headerValue(headers, 'x-amz-copy-source-if-none-match')
  const same = (list: string): boolean => list.split(',').map((e) => e.trim()).some((e) => e === '*' || e === etag || `"${e}"` === etag)
  if (ifMatch !== undefined && !same(ifMatch)) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
  if (ifNoneMatch !== undefined && same(ifNoneMatch)) throw new S3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold')
}

export async function drainBody (request: S3Request): Promise<void> {
  if (request.raw.readableEnded) return
  for await (const _piece of request.raw) { /* a copy request carries no body */ }
}
