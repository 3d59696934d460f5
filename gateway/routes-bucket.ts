// Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
// GetBucketVersioning (never versioned), the three listings (ListObjectsV2, ListObjects v1, ListObjectVersions
// with each object once as VersionId "null") and DeleteObjects.
import type { FastifyReply } from 'fastify'
import { isGranaryError } from '../shared/errors.js'
import type { Handler, S3Request, GatewayContext } from './server.js'
import { sendXml } from './server.js'
import { S3Error, fromGranary } from './errors.js'
import { document, readItems, type XmlNode } from './xml.js'
import { checkBucketName, isBucketName, uploadsRoot } from './keys.js'
import { walkBucket, type WalkEntry } from './walk.js'
import { etagOf } from './attrs.js'
import { listKeysMax, deleteObjectsMax, deletesInFlightMax } from './limits.js'
import { readSmallBody } from './body.js'
import { deleteKey } from './routes-object.js'

const owner: XmlNode = ['Owner', [['ID', 'granary'], ['DisplayName', 'granary']]]

export const listBuckets: Handler = async (context, request, reply) => {
  const entries = await context.client.readdir('/', { withStats: true })
  const prefix = request.auth.key.prefix
  const visible = entries.filter((entry) => entry.type === 'dir' && isBucketName(entry.path.slice(1)) &&
    (prefix === null || `${prefix}/`.startsWith(`${entry.path}/`)))
  return sendXml(reply, 200, document('ListAllMyBucketsResult', [
    owner,
    ['Buckets', visible.map((entry): XmlNode => ['Bucket', [['Name', entry.path.slice(1)], ['CreationDate', new Date(entry.mtimeMs).toISOString()]]])]
  ]))
}

export const createBucket: Handler = async (context, request, reply) => {
  checkBucketName(request.bucket)
  await drain(request)
  try {
    await context.client.mkdir(`/${request.bucket}`)
  } catch (err) {
    if (isGranaryError(err) && err.code === 'GRN_EXISTS') throw new S3Error('BucketAlreadyOwnedByYou', 'Your previous request to create the named bucket succeeded and you already own it.', err.code)
    throw err
  }
  return reply.code(200).header('location', `/${request.bucket}`).send()
}

export const headBucket: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  return reply.code(200).header('x-amz-bucket-region', context.region).send()
}

export const deleteBucket: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  try {
    await context.client.rm(`/${request.bucket}`, { skipTrash: true })
  } catch (err) {
    throw fromGranary(err, 'bucket')
  } finally {
    context.buckets.forget(request.bucket)
  }
  // Uploads never completed go with their bucket.
  await context.client.rm(`${uploadsRoot}/${request.bucket}`, { recursive: true, force: true, skipTrash: true }).catch(() => {})
  return reply.code(204).send()
}

export const getBucketLocation: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  const region = context.region === 'us-east-1' ? null : context.region
  return sendXml(reply, 200, `<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${region ?? ''}</LocationConstraint>`)
}

export const getBucketVersioning: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  return sendXml(reply, 200, document('VersioningConfiguration', []))
}

// ---- listings ------------------------------------------------------------------------------------------

interface Page { contents: WalkEntry[], prefixes: string[], truncated: boolean, last: { key: string, isPrefix: boolean } | null }

// One page of keys after `startAfter` (a common prefix in `skipPrefix` is skipped whole: it was the last item
// of the page before), grouped by the delimiter.
async function listPage (context: GatewayContext, request: S3Request, options: { prefix: string, delimiter: string, startAfter: string, skipPrefix: string, maxKeys: number }): Promise<Page> {
  await context.buckets.require(request.bucket)
  const scope = request.auth.key.prefix
  const page: Page = { contents: [], prefixes: [], truncated: false, last: null }
  if (scope !== null && scope.startsWith(`/${request.bucket}/`) && !(`/${request.bucket}/${options.prefix}`).startsWith(`${scope}/`)) {
    throw new S3Error('AccessDenied', `this access key may only list under ${scope}/`)
  }
  const { prefix, delimiter } = options
  const walk = walkBucket(context.client, request.bucket, { prefix, startAfter: options.startAfter, descend: delimiter !== '/' })
  try {
    for await (const entry of walk) {
      if (options.skipPrefix !== '' && entry.key.startsWith(options.skipPrefix)) continue
      let commonPrefix: string | null = null
      if (entry.isDir) commonPrefix = entry.key
      else if (delimiter !== '' && delimiter !== '/') {
        const at = entry.key.indexOf(delimiter, prefix.length)
        if (at !== -1) commonPrefix = entry.key.slice(0, at + delimiter.length)
      }
      if (commonPrefix !== null && page.last?.isPrefix === true && page.last.key === commonPrefix) continue
      if (page.contents.length + page.prefixes.length >= options.maxKeys) { page.truncated = true; break }
      if (commonPrefix !== null) {
        page.prefixes.push(commonPrefix)
        page.last = { key: commonPrefix, isPrefix: true }
      } else {
        page.contents.push(entry)
        page.last = { key: entry.key, isPrefix: false }
      }
    }
  } catch (err) {
    throw fromGranary(err, 'bucket')
  } finally {
    await walk.return(undefined)
  }
  return page
}

function maxKeysOf (request: S3Request, name = 'max-keys'): number {
  const raw = request.query.get(name)
  if (raw === undefined) return listKeysMax
  if (!/^\d{1,9}$/.test(raw)) throw new S3Error('InvalidArgument', `${name} must be a non-negative integer`)
  return Math.min(Number(raw), listKeysMax)
}

function encodingOf (request: S3Request): (text: string) => string {
  const encoding = request.query.get('encoding-type')
  if (encoding === undefined) return (text) => text
  if (encoding !== 'url') throw new S3Error('InvalidArgument', 'Invalid Encoding Method specified in Request')
  return (text) => text.split('/').map(encodeURIComponent).join('/')
}

function contentsNode (entry: WalkEntry, encode: (text: string) => string): XmlNode[] {
  return [['Key', encode(entry.key)], ['LastModified', new Date(entry.stat.mtimeMs).toISOString()], ['ETag', etagOf(entry.stat)],
    ['Size', entry.stat.sizeBytes], ['StorageClass', 'STANDARD']]
}

function commonNodes (page: Page, encode: (text: string) => string): XmlNode[] {
  return page.prefixes.map((prefix): XmlNode => ['CommonPrefixes', [['Prefix', encode(prefix)]]])
}

const tokenOf = (last: Page['last']): string => Buffer.from(JSON.stringify(last)).toString('base64url')

function parseToken (token: string): { key: string, isPrefix: boolean } {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { key?: unknown, isPrefix?: unknown }
    if (typeof parsed.key === 'string' && typeof parsed.isPrefix === 'boolean') return { key: parsed.key, isPrefix: parsed.isPrefix }
  } catch {}
  throw new S3Error('InvalidArgument', 'The continuation token provided is incorrect')
}

export const listObjectsV2: Handler = async (context, request, reply) => {
  const prefix = request.query.get('prefix') ?? ''
  const delimiter = request.query.get('delimiter') ?? ''
  const token = request.query.get('continuation-token')
  const startAfterGiven = request.query.get('start-after') ?? ''
  const resume = token === undefined ? { key: startAfterGiven, isPrefix: false } : parseToken(token)
  const maxKeys = maxKeysOf(request)
  const page = await listPage(context, request, { prefix, delimiter, startAfter: resume.key, skipPrefix: resume.isPrefix ? resume.key : '', maxKeys })
  const encode = encodingOf(request)
  const nodes: XmlNode[] = [['Name', request.bucket], ['Prefix', encode(prefix)]]
  if (delimiter !== '') nodes.push(['Delimiter', encode(delimiter)])
  nodes.push(['MaxKeys', maxKeys], ['KeyCount', page.contents.length + page.prefixes.length], ['IsTruncated', page.truncated])
  if (request.query.has('encoding-type')) nodes.push(['EncodingType', 'url'])
  if (token !== undefined) nodes.push(['ContinuationToken', token])
  if (startAfterGiven !== '') nodes.push(['StartAfter', encode(startAfterGiven)])
  if (page.truncated && page.last !== null) nodes.push(['NextContinuationToken', tokenOf(page.last)])
  for (const entry of page.contents) nodes.push(['Contents', contentsNode(entry, encode)])
  nodes.push(...commonNodes(page, encode))
  return sendXml(reply, 200, document('ListBucketResult', nodes))
}

export const listObjectsV1: Handler = async (context, request, reply) => {
  const prefix = request.query.get('prefix') ?? ''
  const delimiter = request.query.get('delimiter') ?? ''
  const marker = request.query.get('marker') ?? ''
  const maxKeys = maxKeysOf(request)
  // A marker that is a common prefix of this listing skips the whole prefix (as S3's NextMarker does).
  const skipPrefix = delimiter !== '' && marker.endsWith(delimiter) && marker.startsWith(prefix) ? marker : ''
  const page = await listPage(context, request, { prefix, delimiter, startAfter: marker, skipPrefix, maxKeys })
  const encode = encodingOf(request)
  const nodes: XmlNode[] = [['Name', request.bucket], ['Prefix', encode(prefix)], ['Marker', encode(marker)], ['MaxKeys', maxKeys]]
  if (delimiter !== '') nodes.push(['Delimiter', encode(delimiter)])
  nodes.push(['IsTruncated', page.truncated])
  if (request.query.has('encoding-type')) nodes.push(['EncodingType', 'url'])
  if (page.truncated && page.last !== null) nodes.push(['NextMarker', encode(page.last.key)])
  for (const entry of page.contents) nodes.push(['Contents', [...contentsNode(entry, encode), owner]])
  nodes.push(...commonNodes(page, encode))
  return sendXml(reply, 200, document('ListBucketResult', nodes))
}

// Buckets are never versioned: each object is listed once, as its only and latest version, VersionId "null".
export const listObjectVersions: Handler = async (context, request, reply) => {
  const prefix = request.query.get('prefix') ?? ''
  const delimiter = request.query.get('delimiter') ?? ''
  const marker = request.query.get('key-marker') ?? ''
  const maxKeys = maxKeysOf(request)
  const skipPrefix = delimiter !== '' && marker.endsWith(delimiter) && marker.startsWith(prefix) ? marker : ''
  const page = await listPage(context, request, { prefix, delimiter, startAfter: marker, skipPrefix, maxKeys })
  const encode = encodingOf(request)
  const nodes: XmlNode[] = [['Name', request.bucket], ['Prefix', encode(prefix)], ['KeyMarker', encode(marker)], ['VersionIdMarker', ''], ['MaxKeys', maxKeys]]
  if (delimiter !== '') nodes.push(['Delimiter', encode(delimiter)])
  nodes.push(['IsTruncated', page.truncated])
  if (request.query.has('encoding-type')) nodes.push(['EncodingType', 'url'])
  if (page.truncated && page.last !== null) nodes.push(['NextKeyMarker', encode(page.last.key)], ['NextVersionIdMarker', 'null'])
  for (const entry of page.contents) {
    nodes.push(['Version', [['Key', encode(entry.key)], ['VersionId', 'null'], ['IsLatest', true], ['LastModified', new Date(entry.stat.mtimeMs).toISOString()],
      ['ETag', etagOf(entry.stat)], ['Size', entry.stat.sizeBytes], ['StorageClass', 'STANDARD'], owner]])
  }
  nodes.push(...commonNodes(page, encode))
  return sendXml(reply, 200, document('ListVersionsResult', nodes))
}

// ---- DeleteObjects -------------------------------------------------------------------------------------

export const deleteObjects: Handler = async (context, request, reply) => {
  await context.buckets.require(request.bucket)
  const body = await readSmallBody(request)
  const { items, top } = readItems(body, 'Delete', 'Object', ['Key', 'VersionId'])
  if (items.length === 0) throw new S3Error('MalformedXML', 'The XML you provided was not well-formed: no <Object> to delete')
  if (items.length > deleteObjectsMax) throw new S3Error('MalformedXML', `at most ${deleteObjectsMax} keys per DeleteObjects request`)
  const quiet = top.get('Quiet') === 'true'
  const results: Array<XmlNode | null> = items.map(() => null)   // in the request's order
  const one = async (index: number): Promise<void> => {
    const item = items[index] as Map<string, string>
    const key = item.get('Key')
    const versionId = item.get('VersionId')
    if (key === undefined || key === '') { results[index] = ['Error', [['Key', ''], ['Code', 'MalformedXML'], ['Message', 'an <Object> without a <Key>']]]; return }
    if (versionId !== undefined && versionId !== 'null') {
      results[index] = ['Error', [['Key', key], ['VersionId', versionId], ['Code', 'NoSuchVersion'], ['Message', 'The specified version does not exist.']]]
      return
    }
    try {
      await deleteKey(context, request.bucket, key)
      if (!quiet) results[index] = ['Deleted', [['Key', key], ...(versionId === undefined ? [] : [['VersionId', versionId] as XmlNode])]]
    } catch (err) {
      const error = fromGranary(err, 'object')
      results[index] = ['Error', [['Key', key], ['Code', error.code], ['Message', error.message]]]
    }
  }
  let next = 0
  await Promise.all(Array.from({ length: Math.min(deletesInFlightMax, items.length) }, async () => {
    for (let index = next++; index < items.length; index = next++) await one(index)
  }))
  return sendXml(reply, 200, document('DeleteResult', results.filter((node): node is XmlNode => node !== null)))
}

// Reads and drops a body a request may carry but this gateway ignores (CreateBucket's location constraint).
async function drain (request: S3Request): Promise<void> {
  if (request.raw.readableEnded) return
  for await (const _piece of request.raw) { /* ignored */ }
}

export type { FastifyReply }
