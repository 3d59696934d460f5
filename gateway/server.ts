// The S3 gateway's HTTP server: one fastify catch-all route (S3 names its operations by method, path AND query
// subresource, which a route table cannot express), the SigV4 check as the first step of every request, the
// read-only and prefix limits of the signing key, then one dispatch table below. Bodies are never parsed by
// fastify: request.raw is streamed to the store (gateway/payload.ts checks it on the way). No listen() here:
// gateway/main.ts listens, tests may inject().
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { GranaryClient } from '../client/index.js'
import { fastifyTimeoutOptions, chunkserverServerTimeouts } from '../shared/server-timeouts.js'
import type { Logger } from '../shared/log.js'
import { randomHex } from '../shared/ids.js'
import { authenticate, decode, headerValue, splitUrl, type Authenticated, type KeyResolver } from './sigv4.js'
import { corsMaxAgeSeconds } from './limits.js'
import { S3Error, fromGranary } from './errors.js'
import { errorDocument, type XmlNode } from './xml.js'
import * as buckets from './routes-bucket.js'
import * as objects from './routes-object.js'
import * as multipart from './routes-multipart.js'
import { BucketCache } from './bucket-cache.js'

export interface GatewayDeps {
  client: GranaryClient
  resolver: KeyResolver
  region: string                     // answered by GetBucketLocation; any region is accepted in signatures
  logger?: Logger
  now?: () => number                 // tests move the clock (skew, expiry)
  corsOrigins?: string               // browser origins allowed (comma-separated), '*' for any, '' for none (default '*')
}

// What each handler gets: the parsed request and the gateway's shared state.
export interface S3Request {
  method: string
  bucket: string                     // '' for the service (ListBuckets)
  key: string                        // '' for bucket requests; keeps a trailing '/'
  query: Map<string, string>
  raw: FastifyRequest['raw']
  headers: FastifyRequest['headers']
  auth: Authenticated
  requestId: string
}
export interface GatewayContext { client: GranaryClient, region: string, buckets: BucketCache, log: Logger | undefined, now: () => number }
export type Handler = (context: GatewayContext, request: S3Request, reply: FastifyReply) => Promise<unknown>

const readMethods = new Set(['GET', 'HEAD'])

export function buildGateway (deps: GatewayDeps): FastifyInstance {
  const app = Fastify({
    logger: false,
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 8192 },
    // Uploads are long requests: the chunkserver's request bound (a whole chunk at 1.8 Mbit/s), not the master's.
    ...fastifyTimeoutOptions(chunkserverServerTimeouts),
  })
  // Leave every body unread: handlers stream request.raw themselves.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  const context: GatewayContext = {
    client: deps.client, region: deps.region, buckets: new BucketCache(deps.client), log: deps.logger, now: deps.now ?? Date.now
  }
  const cors = corsPolicy(deps.corsOrigins ?? '*')
  app.route({
    method: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'OPTIONS'],
    url: '*',
    handler: async (request, reply) => {
      const requestId = randomHex(8).toUpperCase()
      reply.header('x-amz-request-id', requestId)
      reply.header('server', 'Granary')
      let target: { bucket: string, key: string } = { bucket: '', key: '' }
      try {
        const origin = headerValue(request.headers, 'origin')
        if (origin !== undefined && cors(origin)) {
          reply.header('access-control-allow-origin', origin).header('vary', 'Origin').header('access-control-expose-headers', exposedHeaders)
        }
        if (request.method === 'OPTIONS') return preflight(request, reply, origin !== undefined && cors(origin))
        const url = request.raw.url ?? '/'
        target = parseTarget(url)
        const auth = await authenticate({ method: request.method, url, headers: request.headers }, deps.resolver, context.now())
        const query = new Map(splitUrl(url).query)
        const s3: S3Request = { method: request.method, ...target, query, raw: request.raw, headers: request.headers, auth, requestId }
        checkAccess(s3)
        const handler = route(s3)
        return await handler(context, s3, reply)
      } catch (err) {
        const error = fromGranary(err, target.key === '' ? 'bucket' : 'object')
        if (error.statusCode >= 500) deps.logger?.warn({ err, granaryCode: error.granaryCode, requestId }, 's3 request failed')
        return sendError(reply, request.method, error, target, requestId)
      }
    }
  })
  return app
}

// Path-style addressing: /BUCKET/KEY (the key may hold '/', kept as sent, a trailing one included).
function parseTarget (url: string): { bucket: string, key: string } {
  const { path } = splitUrl(url)
  const rest = path.startsWith('/') ? path.slice(1) : path
  const slash = rest.indexOf('/')
  if (slash === -1) return { bucket: decode(rest), key: '' }
  return { bucket: decode(rest.slice(0, slash)), key: decode(rest.slice(slash + 1)) }
}

// The signing key's limits: read-only keys only read; a key bound to a prefix ('/bucket' or '/bucket/dir')
// touches only paths under it (ListBuckets shows only its bucket).
function checkAccess (request: S3Request): void {
  const { key } = request.auth
  if (key.readOnly && !readMethods.has(request.method)) throw new S3Error('AccessDenied', 'this access key is read-only')
  if (key.prefix === null || request.bucket === '') return
  const path = request.key === '' ? `/${request.bucket}` : `/${request.bucket}/${request.key}`
  const prefix = key.prefix.endsWith('/') ? key.prefix.slice(0, -1) : key.prefix
  const under = path === prefix || path.startsWith(`${prefix}/`)
  // Listing a bucket with a prefix inside the key's prefix is allowed: the listing is cut to it below.
  const listingInside = request.key === '' && prefix.startsWith(`${path}/`) && readMethods.has(request.method) &&
    (`/${request.bucket}/${request.query.get('prefix') ?? ''}`).startsWith(`${prefix}/`)
  if (!under && !listingInside) throw new S3Error('AccessDenied', `this access key is limited to ${key.prefix}`)
}

// S3's operation from method, target and query subresource.
function route (request: S3Request): Handler {
  const { method, bucket, key, query } = request
  const has = (name: string): boolean => query.has(name)
  if (bucket === '') {
    if (method === 'GET') return buckets.listBuckets
    throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.')
  }
  if (key === '') {
    switch (method) {
      case 'GET':
        if (has('location')) return buckets.getBucketLocation
        if (has('versioning')) return buckets.getBucketVersioning
        if (has('uploads')) return multipart.listMultipartUploads
        if (has('versions')) return buckets.listObjectVersions
        if (query.get('list-type') === '2') return buckets.listObjectsV2
        for (const name of ['acl', 'policy', 'cors', 'lifecycle', 'tagging', 'website', 'encryption', 'replication', 'logging', 'notification', 'object-lock', 'ownershipControls', 'publicAccessBlock', 'accelerate', 'requestPayment']) {
          if (has(name)) return unsupported(name)
        }
        return buckets.listObjectsV1
      case 'HEAD': return buckets.headBucket
      case 'PUT':
        if (query.size > 0) return unsupported([...query.keys()][0] as string)
        return buckets.createBucket
      case 'DELETE':
        if (query.size > 0) return unsupported([...query.keys()][0] as string)
        return buckets.deleteBucket
      case 'POST':
        if (has('delete')) return buckets.deleteObjects
        break
    }
    throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.')
  }
  switch (method) {
    case 'GET':
      if (has('uploadId')) return multipart.listParts
      if (has('acl') || has('tagging') || has('attributes') || has('retention') || has('legal-hold')) return unsupported([...query.keys()][0] as string)
      return objects.getObject
    case 'HEAD': return objects.headObject
    case 'PUT':
      if (has('uploadId') && has('partNumber')) return request.headers['x-amz-copy-source'] !== undefined ? multipart.uploadPartCopy : multipart.uploadPart
      if (has('acl') || has('tagging') || has('retention') || has('legal-hold')) return unsupported([...query.keys()][0] as string)
      return request.headers['x-amz-copy-source'] !== undefined ? objects.copyObject : objects.putObject
    case 'POST':
      if (has('uploads')) return multipart.createMultipartUpload
      if (has('uploadId')) return multipart.completeMultipartUpload
      break
    case 'DELETE':
      if (has('uploadId')) return multipart.abortMultipartUpload
      return objects.deleteObject
  }
  throw new S3Error('MethodNotAllowed', 'The specified method is not allowed against this resource.')
}

// CORS, so a page on another origin can use presigned URLs (a browser PUT or GET) and signed requests. Every
// request but the preflight is signed, so allowing an origin grants nothing a signature does not.
const exposedHeaders = 'ETag, x-amz-request-id, x-amz-version-id, x-amz-checksum-crc32, x-amz-checksum-crc32c, x-amz-checksum-sha1, x-amz-checksum-sha256, Content-Range, Content-Length, Last-Modified'

function corsPolicy (origins: string): (origin: string) => boolean {
  if (origins === '*') return () => true
  const allowed = new Set(origins.split(',').map((o) => o.trim()).filter((o) => o !== ''))
  return (origin) => allowed.has(origin)
}

function preflight (request: FastifyRequest, reply: FastifyReply, allowed: boolean): FastifyReply {
  const method = headerValue(request.headers, 'access-control-request-method')
  if (!allowed || method === undefined || !['GET', 'HEAD', 'PUT', 'POST', 'DELETE'].includes(method)) {
    throw new S3Error('AccessForbidden', 'CORSResponse: This CORS request is not allowed.')
  }
  const headers = headerValue(request.headers, 'access-control-request-headers')
  reply.header('access-control-allow-methods', 'GET, HEAD, PUT, POST, DELETE').header('access-control-max-age', String(corsMaxAgeSeconds))
  if (headers !== undefined) reply.header('access-control-allow-headers', headers)
  return reply.code(200).send()
}

function unsupported (name: string): Handler {
  return async () => { throw new S3Error('NotImplemented', `the ${name} subresource is not supported by the Granary gateway`) }
}

export function sendXml (reply: FastifyReply, statusCode: number, body: string): FastifyReply {
  return reply.code(statusCode).header('content-type', 'application/xml').send(body)
}

function sendError (reply: FastifyReply, method: string, error: S3Error, target: { bucket: string, key: string }, requestId: string): FastifyReply {
  if (reply.sent || reply.raw.headersSent) {
    reply.raw.destroy(error)
    return reply
  }
  reply.code(error.statusCode)
  if (method === 'HEAD') return reply.send()
  const extra: XmlNode[] = []
  if (target.key !== '') extra.push(['Key', target.key])
  if (target.bucket !== '') extra.push(['BucketName', target.bucket])
  extra.push(['Resource', `/${target.bucket}${target.key === '' ? '' : `/${target.key}`}`], ['RequestId', requestId])
  return reply.header('content-type', 'application/xml').send(errorDocument(error.code, error.message, extra))
}
