// The one check in front of every /chunks route: a valid chunk token for exactly this handle, version and
// mode, signed in a master term no older than the newest this server has seen (fencing: a deposed master's
// tokens stop working as soon as any chunkserver hears of the new term, from a token or a heartbeat reply).
// A write must also be where its token says: the token names the pipeline (shared/token.ts), this server must be
// the entry at its position (the one x-granary-pipeline leaves after it), and the rest of the header must be
// the URLs of the entries after it, in order. So a still-valid write token replayed to a server it does not
// name writes nothing there, and no hop forwards to a server the master did not choose.
import type { FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import { verifyToken, type TokenClaims, type TokenMode } from '../shared/token.js'
import { pipelineLengthMax } from '../shared/limits.js'
import { pipelineHeader, tokenHeader, type ChunkQuery } from '../shared/protocol.js'
import type { ChunkHandle } from '../shared/ids.js'
import type { ChunkStore } from './store.js'

export interface AccessDeps { secret: Buffer, store: ChunkStore, nowMs?: () => number }

export type ChunkRequest = FastifyRequest<{ Params: { chunkHandle: ChunkHandle }, Querystring: ChunkQuery }>

// A preHandler: runs after schema validation, so params and query are already checked and typed.
export function chunkAccessHook (deps: AccessDeps): (request: FastifyRequest) => Promise<void> {
  const nowMs = deps.nowMs ?? Date.now
  return async (request: FastifyRequest): Promise<void> => {
    const { params, query } = request as ChunkRequest
    const mode: TokenMode = request.method === 'PUT' ? 'write' : 'read'
    const header = request.headers[tokenHeader]
    const claims = verifyToken(deps.secret, typeof header === 'string' ? header : undefined, nowMs())
    if (claims.chunkHandle !== params.chunkHandle) throw new GranaryError('GRN_TOKEN_INVALID', [`token is for chunk ${String(claims.chunkHandle)}, not ${params.chunkHandle}`])
    if (claims.version !== query.version) throw new GranaryError('GRN_TOKEN_INVALID', [`token is for version ${String(claims.version)}, not ${query.version}`])
    if (claims.mode !== mode) throw new GranaryError('GRN_TOKEN_INVALID', [`a ${String(claims.mode)} token cannot ${mode}`])
    if (!Number.isSafeInteger(claims.term) || claims.term < 0) throw new GranaryError('GRN_TOKEN_INVALID', ['malformed term'])
    if (claims.term < deps.store.term) throw new GranaryError('GRN_STALE_TERM', [claims.term, deps.store.term])
    if (mode === 'write') checkPipeline(claims, parsePipeline(request.headers[pipelineHeader]), deps.store.serverId)
    await deps.store.observeTerm(claims.term)
  }
}

function checkPipeline (claims: TokenClaims, rest: string[], serverId: string): void {
  const { pipeline } = claims
  if (pipeline === undefined) throw new GranaryError('GRN_TOKEN_INVALID', ['a write token must name its pipeline'])
  const position = pipeline.length - 1 - rest.length
  if (position < 0 || pipeline[position]?.serverId !== serverId) {
    throw new GranaryError('GRN_TOKEN_INVALID', [`this write token is for ${pipeline.map((entry) => entry.serverId).join(', ')}; this server (${serverId}) is not at position ${position + 1} of it`])
  }
  for (const [i, url] of rest.entries()) {
    const named = pipeline[position + 1 + i] as NonNullable<TokenClaims['pipeline']>[number]
    if (originOf(named.url) !== url) throw new GranaryError('GRN_TOKEN_INVALID', [`${pipelineHeader} names ${url} where the token names ${named.serverId} at ${named.url}`])
  }
}

function originOf (url: string): string | null {
  try { return new URL(url).origin } catch { return null }
}

// 'http://a:1,https://b:2' → ['http://a:1', 'https://b:2']; absent or empty → [] (this is the last replica).
export function parsePipeline (header: string | string[] | undefined): string[] {
  if (header === undefined) return []
  if (typeof header !== 'string') throw new GranaryError('GRN_INVALID_ARGUMENT', [`one ${pipelineHeader} header, not ${header.length}`])
  const urls = header.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
  if (urls.length > pipelineLengthMax - 1) throw new GranaryError('GRN_LIMIT_EXCEEDED', [pipelineHeader, pipelineLengthMax - 1])
  return urls.map((url) => {
    let parsed: URL
    try { parsed = new URL(url) } catch { throw new GranaryError('GRN_INVALID_ARGUMENT', [`${pipelineHeader} entry ${JSON.stringify(url)} is not a URL`]) }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new GranaryError('GRN_INVALID_ARGUMENT', [`${pipelineHeader} entry ${url} must use http: or https:`])
    return parsed.origin
  })
}
