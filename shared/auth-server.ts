// Authentication on a fastify server, in one place for master, shadow and chunkserver: every route is listed in
// a table with who may call it (an unlisted route is refused, so a new route cannot be forgotten open), the
// signature is checked before the schema, the right after it (paths are then known to be strings), and a reply
// to a server (the cluster key) is signed so a chunkserver or shadow acts only on commands a peer really sent.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { GranaryError } from './errors.js'
import { nonceHeader, permitsAnyPath, replySignatureHeader, requireRight, signatureHeader, signReply, type Principal, type RequestVerifier, type Right } from './auth.js'
import { normalizePath } from './paths.js'

// Who may call a route: anyone, servers only (the cluster key), or a key with a right on the paths it names.
// operator: /metrics, the status page and the data it shows (issue 16): open on a server bound to loopback only
// (what `granary up` runs); elsewhere an admin key, signed, or as HTTP Basic/Bearer "ACCESS_KEY_ID:SECRET" so a
// browser or Prometheus can send it (in clear: use it on a private network).
export type RouteAccess =
  | { who: 'anyone' }
  | { who: 'cluster' }
  | { who: 'operator' }
  | { who: 'key', right: Right, paths?: (request: FastifyRequest) => Array<string | undefined>, operator?: true }

export interface AuthOptions {
  verifier: RequestVerifier | null              // null: authentication off (a loopback-only server, by choice)
  routes: ReadonlyMap<string, RouteAccess>      // by route pattern (request.routeOptions.url)
  controlKey: Buffer                            // signs replies to servers (shared/auth.ts controlKey)
  loopbackOnly: boolean                         // bound to a loopback address: operator routes need no key
  // An access key given in clear (Basic or Bearer "id:secret"), checked against its stored secret; null: none.
  plainKey?: (accessKeyId: string, secret: string) => Principal | null
}

// Kept on the request itself (fastify's decorateRequest: one shape for every request), not in WeakMaps: a
// WeakMap entry per request is an ephemeron the GC must trace, measurable at thousands of requests a second.
interface AuthState { granaryPrincipal: Principal | undefined, granaryRawBody: string | undefined }
const state = (request: FastifyRequest): AuthState => request as unknown as AuthState

// Who sent this request (undefined when authentication is off).
export function principalOf (request: FastifyRequest): Principal | undefined {
  return state(request).granaryPrincipal
}

export function installAuth (app: FastifyInstance, options: AuthOptions): void {
  const { verifier, routes } = options
  // The body as received, for its hash: JSON is parsed from the same string by fastify's own parser.
  app.decorateRequest('granaryPrincipal', undefined)
  app.decorateRequest('granaryRawBody', undefined)
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.removeContentTypeParser('text/plain')   // every control route takes JSON: anything else is 415, not a string body
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    state(request).granaryRawBody = body as string
    parseJson(request, body as string, done)
  })
  app.addHook('preValidation', async (request, reply) => {
    const access = accessOf(routes, request)
    if (access.who === 'anyone' || verifier === null) return
    const operator = access.who === 'operator' || (access.who === 'key' && access.operator === true)
    if (operator && options.loopbackOnly) return   // signed or not: a chunkserver could not check a client key anyway
    if (operator && request.headers[signatureHeader] === undefined) {
      const principal = plainPrincipal(request.headers.authorization, options.plainKey)
      if (principal === null || (principal.kind === 'key' && !principal.admin)) {
        void reply.header('www-authenticate', 'Basic realm="granary", charset="UTF-8"')
        throw new GranaryError(principal === null ? 'GRN_UNAUTHENTICATED' : 'GRN_PERMISSION_DENIED',
          principal === null ? ['an admin access key is needed here: sign the request, or send Authorization: Basic (id:secret) or Bearer id:secret'] : [`access key ${principal.accessKeyId}`, 'read', 'the operator pages (admin only)'])
      }
      state(request).granaryPrincipal = principal
      return
    }
    const principal = verifier.verify(request.method, request.url, request.headers, state(request).granaryRawBody ?? null)
    state(request).granaryPrincipal = principal
    if (access.who === 'operator' && principal.kind === 'key' && !principal.admin) {
      throw new GranaryError('GRN_PERMISSION_DENIED', [`access key ${principal.accessKeyId}`, 'read', 'the operator pages (admin only)'])
    }
    if (access.who === 'cluster' && principal.kind !== 'cluster') {
      throw new GranaryError('GRN_PERMISSION_DENIED', [`access key ${principal.accessKeyId}`, 'call', `${request.routeOptions.url ?? request.url} (servers only)`])
    }
  })
  app.addHook('preHandler', async (request) => {
    const access = accessOf(routes, request)
    const principal = state(request).granaryPrincipal
    if (access.who !== 'key' || principal === undefined || permitsAnyPath(principal, access.right)) return
    const paths = (access.paths?.(request) ?? []).filter((path): path is string => typeof path === 'string').map((path) => normalizePath(path))
    requireRight(principal, access.right, paths)
  })
  // Replies on server-only routes are signed whenever the request was signed, with authentication off too (a
  // chunkserver checks every reply it acts on). Streams (a snapshot) are not: see docs/ARCHITECTURE.md.
  app.addHook('onSend', async (request, reply, payload) => {
    const nonce = request.headers[nonceHeader]
    if (typeof nonce !== 'string' || request.routeOptions.url === undefined || routes.get(request.routeOptions.url)?.who !== 'cluster') return payload
    const principal = state(request).granaryPrincipal
    if (verifier !== null && principal?.kind !== 'cluster') return payload   // refused before or at the signature: unsigned
    if (typeof payload === 'string' || Buffer.isBuffer(payload)) {
      reply.header(replySignatureHeader, signReply(options.controlKey, nonce, reply.statusCode, payload))
    }
    return payload
  })
}

function plainPrincipal (header: string | undefined, check: AuthOptions['plainKey']): Principal | null {
  if (header === undefined || check === undefined) return null
  const match = /^(Basic|Bearer) +([A-Za-z0-9+/=_:.-]{1,512})$/.exec(header)
  if (match === null) return null
  const pair = match[1] === 'Basic' ? Buffer.from(match[2] as string, 'base64').toString('utf8') : match[2] as string
  const colon = pair.indexOf(':')
  return colon <= 0 ? null : check(pair.slice(0, colon), pair.slice(colon + 1))
}

function accessOf (routes: ReadonlyMap<string, RouteAccess>, request: FastifyRequest): RouteAccess {
  const pattern = request.routeOptions.url
  // No route matched: the not-found handler answers; nothing to protect.
  if (pattern === undefined) return { who: 'anyone' }
  const access = routes.get(pattern)
  if (access === undefined) throw new GranaryError('GRN_INTERNAL', [`route ${pattern} has no access rule (shared/auth-server.ts)`])
  return access
}
