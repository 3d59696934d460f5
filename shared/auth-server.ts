// Authentication on a fastify server, in one place for master, shadow and chunkserver: every route is listed in
// a table with who may call it (an unlisted route is refused, so a new route cannot be forgotten open), the
// signature is checked before the schema, the right after it (paths are then known to be strings), and a reply
// to a server (the cluster key) is signed so a chunkserver or shadow acts only on commands a peer really sent.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GranaryError } from './errors.js'
import { nonceHeader, replySignatureHeader, requireRight, signReply, type Principal, type RequestVerifier, type Right } from './auth.js'
import { normalizePath } from './paths.js'

// Who may call a route: anyone, servers only (the cluster key), or a key with a right on the paths it names.
export type RouteAccess =
  | { who: 'anyone' }
  | { who: 'cluster' }
  | { who: 'key', right: Right, paths?: (request: FastifyRequest) => Array<string | undefined> }

export interface AuthOptions {
  verifier: RequestVerifier | null              // null: authentication off (a loopback-only server, by choice)
  routes: ReadonlyMap<string, RouteAccess>      // by route pattern (request.routeOptions.url)
  controlKey: Buffer                            // signs replies to servers (shared/auth.ts controlKey)
}

const principals = new WeakMap<FastifyRequest, Principal>()
const rawBodies = new WeakMap<FastifyRequest, string>()

// Who sent this request (undefined when authentication is off).
export function principalOf (request: FastifyRequest): Principal | undefined {
  return principals.get(request)
}

export function installAuth (app: FastifyInstance, options: AuthOptions): void {
  const { verifier, routes } = options
  // The body as received, for its hash: JSON is parsed from the same string by fastify's own parser.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.removeContentTypeParser('text/plain')   // every control route takes JSON: anything else is 415, not a string body
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    rawBodies.set(request, body as string)
    parseJson(request, body as string, done)
  })
  app.addHook('preValidation', async (request) => {
    const access = accessOf(routes, request)
    if (access.who === 'anyone' || verifier === null) return
    const principal = verifier.verify(request.method, request.url, request.headers, rawBodies.get(request) ?? null)
    principals.set(request, principal)
    if (access.who === 'cluster' && principal.kind !== 'cluster') {
      throw new GranaryError('GRN_PERMISSION_DENIED', [`access key ${principal.accessKeyId}`, 'call', `${request.routeOptions.url ?? request.url} (servers only)`])
    }
  })
  app.addHook('preHandler', async (request) => {
    const access = accessOf(routes, request)
    const principal = principals.get(request)
    if (access.who !== 'key' || principal === undefined) return
    const paths = (access.paths?.(request) ?? []).filter((path): path is string => typeof path === 'string').map((path) => normalizePath(path))
    requireRight(principal, access.right, paths)
  })
  // Replies on server-only routes are signed whenever the request was signed, with authentication off too (a
  // chunkserver checks every reply it acts on). Streams (a snapshot) are not: see docs/ARCHITECTURE.md.
  app.addHook('onSend', async (request, reply, payload) => {
    const nonce = request.headers[nonceHeader]
    if (typeof nonce !== 'string' || request.routeOptions.url === undefined || routes.get(request.routeOptions.url)?.who !== 'cluster') return payload
    const principal = principals.get(request)
    if (verifier !== null && principal?.kind !== 'cluster') return payload   // refused before or at the signature: unsigned
    if (typeof payload === 'string' || Buffer.isBuffer(payload)) {
      reply.header(replySignatureHeader, signReply(options.controlKey, nonce, reply.statusCode, payload))
    }
    return payload
  })
}

function accessOf (routes: ReadonlyMap<string, RouteAccess>, request: FastifyRequest): RouteAccess {
  const pattern = request.routeOptions.url
  // No route matched: the not-found handler answers; nothing to protect.
  if (pattern === undefined) return { who: 'anyone' }
  const access = routes.get(pattern)
  if (access === undefined) throw new GranaryError('GRN_INTERNAL', [`route ${pattern} has no access rule (shared/auth-server.ts)`])
  return access
}
