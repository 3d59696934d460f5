// Multipart uploads. An upload is a folder /.s3-uploads/BUCKET/UPLOAD_ID holding upload.json (the key, the
// object's attrs, when it began) and one file per part, named by its number (00001..10000), each with its MD5
// as its ETag attr. Parts stream to the chunkservers like any PUT, each written with a chunk size that divides
// its length (partChunkSizeBytes), so equal parts are whole chunks of one size. Complete checks the list against
// the stored parts (InvalidPart, InvalidPartOrder, EntityTooSmall), then:
//   - parts chunk-aligned (every part but the last whole chunks of the first part's chunk size; what S3 clients
//     send: equal parts, a shorter last one): the master's concat moves the parts' chunks into the object in one
//     op. No byte moves.
//   - otherwise (parts of different sizes, or sizes not a multiple of 64 KiB): the parts are streamed in order
//     into a new file, a copy inside the store (never through the client). While it copies it answers 200 at once
//     and sends a space every few seconds, as S3 does, so clients do not time out; a failure after that point is
//     an <Error> document in the 200 body (which SDKs check for).
// Either way the object gets S3's md5-of-md5s-N ETag and the upload folder is removed.
import { randomBytes, createHash } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { isGranaryError } from '../shared/errors.js'
import type { FileStat } from '../shared/protocol.js'
import type { Handler, S3Request, GatewayContext } from './server.js'
import { sendXml } from './server.js'
import { S3Error, fromGranary } from './errors.js'
import { document, errorDocument, readItems, type XmlNode } from './xml.js'
import { objectPath, uploadsRoot, isFolderKey } from './keys.js'
import { attrsFromHeaders, attrsOf, type ObjectAttrs } from './attrs.js'
import { writeObject, copySource, parseRange, checkCopyConditions, drainBody } from './routes-object.js'
import { readSmallBody } from './body.js'
import { headerValue } from './sigv4.js'
import { checkContentMd5 } from './payload.js'
import { blockSizeBytes, chunkSizeBytesDefault, MiB } from '../shared/limits.js'
import { partNumberMax, partSizeBytesMax, partSizeBytesMin, listPartsMax, listUploadsMax, completeKeepAliveMs } from './limits.js'

export const uploadsScannedMax = 10_000   // uploads of one bucket ListMultipartUploads reads (then it says truncated)
const partChunkSizeBytesMin = MiB           // smaller chunks would make a large object many chunks: copy instead

// The chunk size for a part of `lengthBytes`: the largest whole number of 64 KiB blocks, at most the default
// chunk size, that divides the length; undefined (the gateway's default, and a copy at Complete) when none fits.
export function partChunkSizeBytes (lengthBytes: number | undefined): number | undefined {
  if (lengthBytes === undefined || !Number.isSafeInteger(lengthBytes) || lengthBytes <= 0 || lengthBytes % blockSizeBytes !== 0) return undefined
  const blocks = lengthBytes / blockSizeBytes
  for (let perChunk = Math.min(blocks, chunkSizeBytesDefault / blockSizeBytes); perChunk >= 1; perChunk--) {
    if (blocks % perChunk === 0) return perChunk * blockSizeBytes >= partChunkSizeBytesMin ? perChunk * blockSizeBytes : undefined
  }
  return undefined
}

// The length a part's request announces (the decoded length of an aws-chunked body).
function announcedLength (request: S3Request): number | undefined {
  const raw = headerValue(request.headers, 'x-amz-decoded-content-length') ?? (request.auth.payload.kind === 'chunked' ? undefined : headerValue(request.headers, 'content-length'))
  return raw === undefined || !/^\d+$/.test(raw) ? undefined : Number(raw)
}

// True when concat can join these parts: what master/concat.ts accepts.
function chunkAligned (parts: readonly FileStat[]): boolean {
  const chunkSizeBytes = (parts[0] as FileStat).chunkSizeBytes
  return parts.every((part, index) => {
    const last = index === parts.length - 1
    if (part.chunkSizeBytes === chunkSizeBytes && (last || part.sizeBytes % chunkSizeBytes === 0)) return true
    return last && part.chunkCount <= 1 && part.sizeBytes <= chunkSizeBytes
  })
}

interface UploadRecord { key: string, attrs: ObjectAttrs, initiatedMs: number }

const uploadDir = (bucket: string, uploadId: string): string => `${uploadsRoot}/${bucket}/${uploadId}`
const partName = (partNumber: number): string => String(partNumber).padStart(5, '0')

function uploadIdOf (request: S3Request): string {
  const uploadId = request.query.get('uploadId') ?? ''
  if (!/^[0-9a-f]{32}$/.test(uploadId)) throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.')
  return uploadId
}

async function readUpload (context: GatewayContext, bucket: string, uploadId: string, key?: string): Promise<UploadRecord> {
  let record: UploadRecord
  try {
    record = JSON.parse(await context.client.readFile(`${uploadDir(bucket, uploadId)}/upload.json`, 'utf8')) as UploadRecord
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) {
      throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', err.code)
    }
    throw err
  }
  if (key !== undefined && record.key !== key) throw new S3Error('NoSuchUpload', 'The specified upload does not exist (it is for another key).')
  return record
}

export const createMultipartUpload: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  objectPath(request.bucket, request.key)
  if (isFolderKey(request.key)) throw new S3Error('InvalidArgument', 'a key ending in / is a folder here: it cannot hold bytes')
  const attrs = attrsFromHeaders(request.headers)
  await drainBody(request)
  const uploadId = randomBytes(16).toString('hex')
  const record: UploadRecord = { key: request.key, attrs, initiatedMs: context.now() }
  await context.client.writeFile(`${uploadDir(request.bucket, uploadId)}/upload.json`, JSON.stringify(record), { replication: undefined })
  return sendXml(reply, 200, document('InitiateMultipartUploadResult', [['Bucket', request.bucket], ['Key', request.key], ['UploadId', uploadId]]))
}

function partNumberOf (request: S3Request): number {
  const raw = request.query.get('partNumber') ?? ''
  const partNumber = /^\d{1,5}$/.test(raw) ? Number(raw) : 0
  if (partNumber < 1 || partNumber > partNumberMax) throw new S3Error('InvalidArgument', `Part number must be an integer between 1 and ${partNumberMax}, inclusive`)
  return partNumber
}

export const uploadPart: Handler = async (context, request, reply) => {
  const uploadId = uploadIdOf(request)
  const partNumber = partNumberOf(request)
  await readUpload(context, request.bucket, uploadId, request.key)
  checkContentMd5(request.headers)
  const { stat, verified } = await writeObject(context, `${uploadDir(request.bucket, uploadId)}/${partName(partNumber)}`, request.raw, {
    mode: request.auth.payload, headers: request.headers, attrs: {}, sizeBytesMax: partSizeBytesMax, chunkSizeBytes: partChunkSizeBytes(announcedLength(request))
  })
  const checksums: Record<string, string> = {}
  for (const [algorithm, value] of Object.entries(verified.checksums)) checksums[`x-amz-checksum-${algorithm}`] = value
  return reply.code(200).headers({ etag: `"${attrsOf(stat).etag ?? verified.md5Hex}"`, ...checksums }).send()
}

export const uploadPartCopy: Handler = async (context, request, reply) => {
  const uploadId = uploadIdOf(request)
  const partNumber = partNumberOf(request)
  await readUpload(context, request.bucket, uploadId, request.key)
  const source = copySource(request)
  let stat: FileStat
  try {
    stat = await context.client.stat(objectPath(source.bucket, source.key))
  } catch (err) {
    throw fromGranary(err, 'object')
  }
  if (stat.type !== 'file') throw new S3Error('NoSuchKey', 'The specified key does not exist.')
  checkCopyConditions(request.headers, stat)
  const rangeHeader = headerValue(request.headers, 'x-amz-copy-source-range')
  const range = parseRange(rangeHeader, stat.sizeBytes)
  if (rangeHeader !== undefined && range === null) throw new S3Error('InvalidArgument', 'x-amz-copy-source-range must be bytes=FIRST-LAST')
  await drainBody(request)
  const readStream = context.client.createReadStream(stat.path, range === null ? {} : { start: range.start, end: range.end })
  const lengthBytes = range === null ? stat.sizeBytes : range.end - range.start + 1
  const { stat: written } = await writeObject(context, `${uploadDir(request.bucket, uploadId)}/${partName(partNumber)}`, readStream, {
    mode: { kind: 'unsigned' }, headers: {}, attrs: {}, sizeBytesMax: partSizeBytesMax, chunkSizeBytes: partChunkSizeBytes(lengthBytes)
  })
  return sendXml(reply, 200, document('CopyPartResult', [['LastModified', new Date(written.mtimeMs).toISOString()], ['ETag', `"${attrsOf(written).etag ?? ''}"`]]))
}

// The stored parts of an upload, by number.
async function storedParts (context: GatewayContext, bucket: string, uploadId: string): Promise<Map<number, FileStat>> {
  const parts = new Map<number, FileStat>()
  for (const stat of await context.client.readdir(uploadDir(bucket, uploadId), { withStats: true })) {
    const name = stat.path.slice(stat.path.lastIndexOf('/') + 1)
    if (/^\d{5}$/.test(name) && stat.type === 'file') parts.set(Number(name), stat)
  }
  return parts
}

export const completeMultipartUpload: Handler = async (context, request, reply) => {
  const uploadId = uploadIdOf(request)
  const record = await readUpload(context, request.bucket, uploadId, request.key)
  const target = objectPath(request.bucket, request.key)
  const { items } = readItems(await readSmallBody(request), 'CompleteMultipartUpload', 'Part', ['PartNumber', 'ETag'])
  if (items.length === 0) throw new S3Error('MalformedXML', 'You must specify at least one part')
  const stored = await storedParts(context, request.bucket, uploadId)
  const chosen: FileStat[] = []
  let previous = 0
  for (const item of items) {
    const partNumber = Number(item.get('PartNumber'))
    if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > partNumberMax) throw new S3Error('InvalidPart', `part number ${item.get('PartNumber') ?? ''} is not valid`)
    if (partNumber <= previous) throw new S3Error('InvalidPartOrder', 'The list of parts was not in ascending order. Parts must be ordered by part number.')
    previous = partNumber
    const stat = stored.get(partNumber)
    const etag = (item.get('ETag') ?? '').replace(/^"|"$/g, '').replace(/^&quot;|&quot;$/g, '')
    if (stat === undefined || attrsOf(stat).etag !== etag) {
      throw new S3Error('InvalidPart', `One or more of the specified parts could not be found or its entity tag did not match (part ${partNumber}).`)
    }
    chosen.push(stat)
  }
  for (const [index, stat] of chosen.entries()) {
    if (index < chosen.length - 1 && stat.sizeBytes < partSizeBytesMin) {
      throw new S3Error('EntityTooSmall', `Your proposed upload is smaller than the minimum allowed object size: every part but the last must be at least ${partSizeBytesMin} bytes`)
    }
  }
  const md5s = Buffer.concat(chosen.map((stat) => Buffer.from(attrsOf(stat).etag as string, 'hex')))
  const etag = `${createHash('md5').update(md5s).digest('hex')}-${chosen.length}`
  await context.buckets.require(request.bucket)
  const result = (): string => document('CompleteMultipartUploadResult', [
    ['Location', `/${request.bucket}/${request.key}`], ['Bucket', request.bucket], ['Key', request.key], ['ETag', `"${etag}"`]
  ])
  if (chunkAligned(chosen)) {
    await concatParts(context, target, chosen, { ...record.attrs, etag })
    await context.client.rm(uploadDir(request.bucket, uploadId), { recursive: true, skipTrash: true }).catch(() => {})
    return sendXml(reply, 200, result())
  }

  // From here the answer is 200 with a body that comes when the copy is done (spaces until then).
  reply.hijack()
  const raw = reply.raw
  raw.writeHead(200, { ...reply.getHeaders(), 'content-type': 'application/xml' } as Record<string, string>)
  raw.write('<?xml version="1.0" encoding="UTF-8"?>\n')
  const keepAlive = setInterval(() => { raw.write(' ') }, completeKeepAliveMs)
  try {
    const stream = context.client.createWriteStream(target, { overwrite: true })
    const client = context.client
    await pipeline(async function * () {
      for (const part of chosen) yield * client.createReadStream(part.path)
      stream.setAttrs({ ...record.attrs, etag })   // before the end: the complete may ride on the last commit
    }, stream)
    await context.client.rm(uploadDir(request.bucket, uploadId), { recursive: true, skipTrash: true }).catch(() => {})
    clearInterval(keepAlive)
    raw.end(result().replace(/^<\?xml[^>]*\?>\n/, ''))
  } catch (err) {
    clearInterval(keepAlive)
    const error = fromGranary(err, 'write')
    context.log?.warn({ err, requestId: request.requestId }, 'CompleteMultipartUpload failed after answering 200')
    raw.end(errorDocument(error.code, error.message, [['Key', request.key], ['RequestId', request.requestId]]).replace(/^<\?xml[^>]*\?>\n/, ''))
  }
  return reply
}

export const abortMultipartUpload: Handler = async (context, request, reply) => {
  const uploadId = uploadIdOf(request)
  await readUpload(context, request.bucket, uploadId, request.key)
  await context.client.rm(uploadDir(request.bucket, uploadId), { recursive: true, skipTrash: true })
  return reply.code(204).send()
}

export const listParts: Handler = async (context, request, reply) => {
  const uploadId = uploadIdOf(request)
  await readUpload(context, request.bucket, uploadId, request.key)
  const markerRaw = request.query.get('part-number-marker') ?? '0'
  const marker = /^\d{1,5}$/.test(markerRaw) ? Number(markerRaw) : 0
  const maxRaw = request.query.get('max-parts')
  const maxParts = maxRaw === undefined || !/^\d{1,6}$/.test(maxRaw) ? listPartsMax : Math.min(Number(maxRaw), listPartsMax)
  const parts = [...(await storedParts(context, request.bucket, uploadId)).entries()].filter(([n]) => n > marker).sort((a, b) => a[0] - b[0])
  const page = parts.slice(0, maxParts)
  const truncated = parts.length > page.length
  const nodes: XmlNode[] = [['Bucket', request.bucket], ['Key', request.key], ['UploadId', uploadId],
    ['PartNumberMarker', marker], ['NextPartNumberMarker', page.length > 0 ? (page[page.length - 1] as [number, FileStat])[0] : marker],
    ['MaxParts', maxParts], ['IsTruncated', truncated], ['StorageClass', 'STANDARD']]
  for (const [partNumber, stat] of page) {
    nodes.push(['Part', [['PartNumber', partNumber], ['LastModified', new Date(stat.mtimeMs).toISOString()], ['ETag', `"${attrsOf(stat).etag ?? ''}"`], ['Size', stat.sizeBytes]]])
  }
  return sendXml(reply, 200, document('ListPartsResult', nodes))
}

export const listMultipartUploads: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  const prefix = request.query.get('prefix') ?? ''
  const keyMarker = request.query.get('key-marker') ?? ''
  const idMarker = request.query.get('upload-id-marker') ?? ''
  const maxRaw = request.query.get('max-uploads')
  const maxUploads = maxRaw === undefined || !/^\d{1,6}$/.test(maxRaw) ? listUploadsMax : Math.min(Number(maxRaw), listUploadsMax)
  let ids: string[] = []
  try {
    ids = (await context.client.readdir(`${uploadsRoot}/${request.bucket}`)).filter((name) => /^[0-9a-f]{32}$/.test(name)).slice(0, uploadsScannedMax)
  } catch (err) {
    if (!isGranaryError(err) || err.code !== 'GRN_NOT_FOUND') throw err
  }
  const uploads: Array<{ uploadId: string, record: UploadRecord }> = []
  for (const uploadId of ids) {
    try {
      const record = await readUpload(context, request.bucket, uploadId)
      if (record.key.startsWith(prefix)) uploads.push({ uploadId, record })
    } catch {}   // an upload completed or aborted meanwhile
  }
  uploads.sort((a, b) => a.record.key < b.record.key ? -1 : a.record.key > b.record.key ? 1 : a.uploadId < b.uploadId ? -1 : 1)
  const after = uploads.filter(({ uploadId, record }) => keyMarker === '' || record.key > keyMarker || (record.key === keyMarker && idMarker !== '' && uploadId > idMarker))
  const page = after.slice(0, maxUploads)
  const truncated = after.length > page.length
  const last = page[page.length - 1]
  const nodes: XmlNode[] = [['Bucket', request.bucket], ['KeyMarker', keyMarker], ['UploadIdMarker', idMarker],
    ['NextKeyMarker', last?.record.key ?? ''], ['NextUploadIdMarker', last?.uploadId ?? ''], ['Prefix', prefix], ['MaxUploads', maxUploads], ['IsTruncated', truncated]]
  const who: XmlNode[] = [['ID', 'granary'], ['DisplayName', 'granary']]
  for (const { uploadId, record } of page) {
    nodes.push(['Upload', [['Key', record.key], ['UploadId', uploadId], ['Initiator', who], ['Owner', who], ['StorageClass', 'STANDARD'],
      ['Initiated', new Date(record.initiatedMs).toISOString()]]])
  }
  return sendXml(reply, 200, document('ListMultipartUploadsResult', nodes))
}

// The parts' chunks moved into the object by one master op; the key's folders are made first when missing.
async function concatParts (context: GatewayContext, target: string, parts: readonly FileStat[], attrs: ObjectAttrs): Promise<void> {
  const sources = parts.map((part) => part.path)
  try {
    try {
      await context.client.concat(target, sources, { attrs: { ...attrs } })
    } catch (err) {
      const parent = target.slice(0, target.lastIndexOf('/'))
      if (!isGranaryError(err) || err.code !== 'GRN_NOT_FOUND' || parent.split('/').length <= 2) throw err
      await context.client.mkdir(parent, { recursive: true })
      await context.client.concat(target, sources, { attrs: { ...attrs } })
    }
  } catch (err) {
    throw fromGranary(err, 'write')
  }
}
