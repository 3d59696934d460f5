// The one check in front of every /chunks route: a valid chunk token for exactly this handle, version and
// mode, signed in a master term no older than the newest this server has seen (fencing: a deposed master's
// tokens stop working as soon as any chunkserver hears of the new term, from a token or a heartbeat reply).
import type { FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import { verifyToken, type TokenMode } from '../shared/token.js'
import { tokenHeader, type ChunkQuery } from '../shared/protocol.js'
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
    await deps.store.observeTerm(claims.term)
  }
}
