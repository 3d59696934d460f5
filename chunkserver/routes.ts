// The chunkserver's routes (shared/protocol.ts, "the data path"): PUT streams a chunk down the pipeline,
// GET serves a verified byte range, /status answers health checks. The token/term check is a hook on the
// /chunks plugin only, so /status stays open.
import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Agent } from 'node:http'
import type { Agent as HttpsAgent } from 'node:https'
import { GranaryError } from '../shared/errors.js'
import {
  chunkLengthHeader, chunkQuerySchema, chunkRoutePath, chunkserverStatusPath, pipelineHeader, tokenHeader, votePath, voteSchema,
  type ChunkserverStatus, type VoteReply, type VoteRequest, type WriteChunkReply
} from '../shared/protocol.js'
import type { Logger } from '../shared/log.js'
import type { ChunkStore } from './store.js'
import type { Voter } from './voter.js'
import type { ChunkserverMetrics } from './metrics.js'
import { chunkAccessHook, parsePipeline, type ChunkRequest } from './access.js'
import { writeChunk } from './pipeline.js'
import { parseRangeHeader, readChunk, type ByteRange } from './chunk-reader.js'

export interface RoutesDeps {
  store: ChunkStore
  secret: Buffer
  agent: Agent
  tlsAgent?: HttpsAgent           // next hops with https:// URLs
  url: () => string
  syncEveryBytes: number
  log: Logger
  nowMs?: () => number
  metrics?: ChunkserverMetrics
}

export async function chunkRoutes (app: FastifyInstance, deps: RoutesDeps): Promise<void> {
  // Chunk bodies are streamed by the handler, never buffered: this parser leaves the body unread. Fastify does
  // not apply bodyLimit to such parsers, so writeChunk enforces chunkSizeBytesMax itself.
  app.addContentTypeParser('application/octet-stream', (_request, _payload, done) => { done(null) })
  app.addHook('preHandler', chunkAccessHook(deps))

  app.put(chunkRoutePath, { schema: chunkQuerySchema }, async (request: ChunkRequest, reply): Promise<WriteChunkReply> => {
    const { chunkHandle } = request.params
    const { version } = request.query
    try {
      return await writeChunk(deps, {
        source: request.raw,
        chunkHandle,
        version,
        token: request.headers[tokenHeader] as string,
        rest: parsePipeline(request.headers[pipelineHeader]),
        contentLength: parseContentLength(request.headers['content-length'])
      })
    } catch (err) {
      closeIfBodyUnread(reply, err)
      throw err
    }
  })

  app.get(chunkRoutePath, { schema: chunkQuerySchema }, async (request: ChunkRequest, reply) => {
    const { chunkHandle } = request.params
    const { version } = request.query
    const { lengthBytes: chunkLengthBytes } = deps.store.lookup(chunkHandle, version)
    const range: ByteRange = typeof request.headers.range === 'string'
      ? parseRangeHeader(request.headers.range, chunkLengthBytes)
      : { offsetBytes: request.query.offset ?? 0, lengthBytes: request.query.length ?? null }
    const read = await readChunk(deps.store, deps.log, chunkHandle, version, range)
    deps.metrics?.chunkBytesRead(read.lengthBytes)
    reply.header('content-type', 'application/octet-stream')
    reply.header('content-length', read.lengthBytes)
    reply.header(chunkLengthHeader, read.chunkLengthBytes)
    return reply.send(read.bytes ?? read.body ?? Buffer.alloc(0))
  })
}

export async function statusRoutes (app: FastifyInstance, deps: { store: ChunkStore }): Promise<void> {
  app.get(chunkserverStatusPath, async (): Promise<ChunkserverStatus> => {
    const { store } = deps
    return { role: 'chunkserver', serverId: store.serverId, term: store.term, chunkCount: store.chunkCount, freeBytes: await store.freeBytes(), activeWrites: store.activeWrites }
  })
}

// candidate shadow → chunkserver: one vote per term (voter.ts). Absent voter (a unit test's server): 404.
export async function voteRoutes (app: FastifyInstance, deps: { store: ChunkStore, voter: Voter }): Promise<void> {
  app.post(votePath, { schema: voteSchema }, async (request): Promise<VoteReply> => {
    const { term } = await deps.voter.vote(request.body as VoteRequest)
    return { granted: true, term, serverId: deps.store.serverId }
  })
}

export { parsePipeline } from './access.js'

function parseContentLength (header: string | undefined): number | null {
  if (header === undefined) return null
  const lengthBytes = Number(header)
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new GranaryError('GRN_INVALID_ARGUMENT', [`content-length ${JSON.stringify(header)}`])
  return lengthBytes
}

// A write refused for its size, or cut off by its upstream, leaves body bytes unread that would be taken for
// the next request: close the connection. Other failures either happen before the body is touched (Node then
// reads and drops it, so the client still gets our reply) or after it was read to the end.
function closeIfBodyUnread (reply: FastifyReply, err: unknown): void {
  const code = (err as GranaryError | undefined)?.code
  if (code === 'GRN_LIMIT_EXCEEDED' || code === 'GRN_ABORTED') reply.header('connection', 'close')
}
