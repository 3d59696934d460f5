// buildChunkserverServer(deps): the fastify instance with every route and hook, without listen(), so tests
// can inject() the small routes. main.ts owns the process: config, store, listen, heartbeats, signals.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify'
import type { Agent } from 'node:http'
import type { Agent as HttpsAgent } from 'node:https'
import type { ServerTls } from '../shared/tls.js'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import { AssertionError } from '../shared/assert.js'
import { dataIdleTimeoutMs, httpKeepAliveTimeoutMs, jsonBodyBytesMax } from '../shared/limits.js'
import type { Logger } from '../shared/log.js'
import { chunkserverServerTimeouts, fastifyTimeoutOptions, type ServerTimeouts } from '../shared/server-timeouts.js'
import type { ChunkStore } from './store.js'
import { chunkRoutes, statusRoutes, voteRoutes } from './routes.js'
import type { Voter } from './voter.js'
import { serverIdHeader } from './next-hop.js'
import { controlKey, RequestVerifier, type Principal } from '../shared/auth.js'
import { installAuth, type RouteAccess } from '../shared/auth-server.js'
import { chunkRoutePath, chunkserverStatusPath, metricsPath, votePath } from '../shared/protocol.js'
import { registerOperatorRoutes } from '../shared/metrics.js'
import { ChunkserverMetrics } from './metrics.js'

// Idle keep-alive connections close after this; the forwarding agent (main.ts) drops its idle sockets sooner,
// so it never reuses a socket at the moment the next hop closes it (a spurious pipeline failure).
export const keepAliveTimeoutMs = httpKeepAliveTimeoutMs

export interface ChunkserverDeps {
  store: ChunkStore
  secret: Buffer                 // the cluster secret that signs chunk tokens
  agent: Agent                   // node:http keep-alive agent for forwarding to the next hop
  url: () => string              // advertised URL (known only after listen)
  syncEveryBytes: number
  log: Logger
  onFatal: (err: Error) => void  // a failed assertion: our own bug; main logs fatal and exits
  nowMs?: () => number           // tests move the clock for token expiry
  serverTimeouts?: ServerTimeouts // default chunkserverServerTimeouts (tests shrink them)
  voter?: Voter                  // POST /vote (main.ts always passes one)
  tls?: ServerTls | null         // --tls-cert/--tls-key: serve https only (default: plain http)
  tlsAgent?: HttpsAgent          // node:https keep-alive agent for next hops with https:// URLs (carries --ca-file)
  auth?: boolean                 // check signatures on server-only routes (default true; config --auth)
  loopbackOnly?: boolean         // bound to loopback: /metrics needs no signature (default false)
  operatorKey?: (accessKeyId: string, secret: string) => Principal | null   // an admin's Basic/Bearer id:secret on /metrics
  metrics?: ChunkserverMetrics   // GET /metrics (main.ts binds its replicator and scrubber); default a new one
}

// Who may call each route (shared/auth-server.ts): chunk reads and writes carry the master's token instead.
export const chunkserverRouteAccess: ReadonlyMap<string, RouteAccess> = new Map<string, RouteAccess>([
  [chunkRoutePath, { who: 'anyone' }], [chunkserverStatusPath, { who: 'anyone' }], [votePath, { who: 'cluster' }],
  [metricsPath, { who: 'operator' }]   // off loopback: signed with the cluster secret (a chunkserver knows no access keys)
])

export function buildChunkserverServer (deps: ChunkserverDeps): FastifyInstance {
  const app = Fastify({
    ...(deps.tls === undefined || deps.tls === null ? {} : { https: deps.tls }),
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }), // per-request lines are noise on the data path
    bodyLimit: jsonBodyBytesMax,          // JSON only; chunk bodies bypass it and are limited in pipeline.ts
    connectionTimeout: dataIdleTimeoutMs, // idle socket timeout: a stalled upload is cut after this
    // The whole request: long enough for a 256 MiB chunk on a slow link (limits.chunkRequestTimeoutMs), so it cuts
    // only a body that trickles; headers and idle keep-alive connections have their own, shorter bounds.
    ...fastifyTimeoutOptions({ ...chunkserverServerTimeouts, keepAliveTimeoutMs, ...deps.serverTimeouts }),
    forceCloseConnections: true,          // close() ends streams in flight; their writers clean up their temp files
    return503OnClosing: true,
    exposeHeadRoutes: false
  })

  app.addHook('onSend', async (_request, reply) => { reply.header(serverIdHeader, deps.store.serverId) })

  app.setErrorHandler((err: FastifyError | GranaryError | AssertionError, request, reply) => {
    if (err instanceof AssertionError) {
      deps.onFatal(err)
      return reply.code(500).send(new GranaryError('GRN_INTERNAL', ['assertion failed']).toBody())
    }
    if (isGranaryError(err)) {
      if (err.statusCode >= 500) request.log.warn({ code: err.code, details: err.details, url: request.url }, err.message)
      else request.log.debug({ code: err.code, url: request.url }, err.message)
      return reply.code(err.statusCode).send(err.toBody())
    }
    const fastifyErr = err as FastifyError
    if (fastifyErr.validation !== undefined || (typeof fastifyErr.statusCode === 'number' && fastifyErr.statusCode < 500)) {
      return reply.code(400).send(new GranaryError('GRN_INVALID_ARGUMENT', [err.message]).toBody())
    }
    request.log.error({ err, url: request.url }, 'request failed')
    return reply.code(500).send(new GranaryError('GRN_INTERNAL', [err.message]).toBody())
  })

  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(new GranaryError('GRN_NOT_FOUND', [`${request.method} ${request.url.split('?')[0] ?? ''}`]).toBody())
  })

  // Chunk routes carry the master's signed token instead (access.ts); only a candidate shadow may ask for a vote.
  installAuth(app, {
    verifier: deps.auth === false ? null : new RequestVerifier({ clusterSecret: deps.secret, lookup: () => null }),
    routes: chunkserverRouteAccess,
    controlKey: controlKey(deps.secret),
    loopbackOnly: deps.loopbackOnly ?? false,
    ...(deps.operatorKey === undefined ? {} : { plainKey: deps.operatorKey })
  })
  const metrics = deps.metrics ?? new ChunkserverMetrics()
  metrics.bind({ store: deps.store })
  metrics.watch(app.server)
  registerOperatorRoutes(app, { metrics: metrics.server })   // GET /metrics, behind one access rule; no token needed
  void app.register(chunkRoutes, { ...deps, metrics })
  void app.register(statusRoutes, { store: deps.store })
  if (deps.voter !== undefined) void app.register(voteRoutes, { store: deps.store, voter: deps.voter })
  return app
}
