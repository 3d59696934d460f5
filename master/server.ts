// The master's HTTP server: every route in one block below (path, schema, body limit, handler), the error
// handler that turns every failure into { statusCode, code, error, message }, and no listen(): main.ts
// listens, tests call inject(). The route table is written out here, not hidden in plugins, so one screen
// answers "what does the master serve and with which schema".
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify'
import { AssertionError } from '../shared/assert.js'
import type { MasterConfig } from '../shared/config.js'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import { createLogger, type Logger } from '../shared/log.js'
import { fastifyTimeoutOptions, masterServerTimeouts, type ServerTimeouts } from '../shared/server-timeouts.js'
import * as p from '../shared/protocol.js'
import { notMasterError, type CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import type { OplogFeed } from './oplog-feed.js'
import type { Registry } from './registry.js'
import { clientHandlers } from './routes-client.js'
import { fsck } from './fsck.js'
import { normalizePath } from '../shared/paths.js'
import { heartbeatHandler } from './routes-chunkserver.js'
import { shadowHandlers } from './routes-shadow.js'
import { SafeMode, StartupFence } from './safe-mode.js'
import { lazySchemaController } from './lazy-schemas.js'
import type { ShadowTracker } from './shadow-tracker.js'

export interface MasterDeps {
  db: Db
  queue: CommitQueue
  registry: Registry
  secret: Buffer
  config: MasterConfig
  logger?: Logger
  now?: () => number                          // injectable clock (tests); default Date.now
  startedAtMs?: number
  onFatal?: (err: Error) => void              // default: log.fatal, then exit(1) — the supervisor restarts us
  shadows: ShadowTracker                      // the shadows following this master (retention, report)
  feed: OplogFeed                             // parked oplog long polls
  snapshotDir: string                         // temporary online backups for bootstrapping shadows
  // A shadow only (main.ts startShadow): the master it follows, and its Follower's report and promote.
  follower?: { masterUrl: string, report: (nowMs: number) => p.FollowReport, promote: (force: boolean) => Promise<p.PromoteReply> }
  serverTimeouts?: ServerTimeouts             // default masterServerTimeouts (tests shrink them)
}

export function buildMasterServer (deps: MasterDeps): FastifyInstance {
  const logger = deps.logger ?? createLogger('master', deps.config.logLevel)
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: limits.jsonBodyBytesMax,
    ...fastifyTimeoutOptions(deps.serverTimeouts ?? masterServerTimeouts),   // a half-sent request is cut, not held open
    logController: new LogController({ disableRequestLogging: true }),   // one line per request at debug instead (onResponse below)
    ajv: { customOptions: { removeAdditional: false } },  // additionalProperties: false refuses, not strips
    schemaController: lazySchemaController()              // each route's schema compiles on its first request: a restart listens sooner
  }) as unknown as FastifyInstance
  const now = deps.now ?? Date.now
  const onFatal = deps.onFatal ?? ((err: Error) => { logger.fatal({ err }, 'assertion failed; exiting'); process.exit(1) })
  app.setErrorHandler(errorHandler(onFatal))
  app.setNotFoundHandler((request, reply) => {
    const err = new GranaryError('GRN_NOT_FOUND', [`route ${request.method} ${request.url.split('?')[0] ?? ''}`])
    void reply.code(err.statusCode).send(err.toBody())
  })
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug({ method: request.method, url: request.url, statusCode: reply.statusCode, durationMs: reply.elapsedTime }, 'request completed')
  })
  app.addHook('preClose', async () => { deps.feed.close() })   // parked long polls answer now, not at their timeout

  const startedAtMs = deps.startedAtMs ?? now()
  const safeMode = new SafeMode({ db: deps.db, registry: deps.registry, startedAtMs, deadAfterMs: deps.config.deadAfterMs })
  const fence = new StartupFence({ db: deps.db, startedAtMs, deadAfterMs: deps.config.deadAfterMs })
  const c = clientHandlers({
    db: deps.db, queue: deps.queue, registry: deps.registry, secret: deps.secret, now,
    leaseTtlMs: deps.config.leaseTtlMs, tokenTtlMs: deps.config.tokenTtlMs, trashRetentionMs: deps.config.trashRetentionMs, deadAfterMs: deps.config.deadAfterMs,
    startedAtMs, safeMode, shadows: deps.shadows, follower: deps.follower
  })
  const masterUrl = deps.follower?.masterUrl ?? null
  const heartbeat = heartbeatHandler({
    db: deps.db, queue: deps.queue, registry: deps.registry, heartbeatIntervalMs: deps.config.heartbeatIntervalMs, now, masterUrl, safeMode, fence,
    onNewerTerm: (term) => {
      if (deps.queue.mode === 'master' && deps.queue.depose(term)) {
        logger.error({ term: deps.queue.term, newerTerm: term }, 'a newer master term exists: this master is deposed and refuses every request but health and report')
      }
    }
  })
  const s = shadowHandlers({
    db: deps.db, queue: deps.queue, shadows: deps.shadows, feed: deps.feed, snapshotDir: deps.snapshotDir, masterUrl,
    promote: deps.follower?.promote ?? null, now
  })
  // Gates (preHandler: after the schema): a shadow or a deposed master takes no mutation; a deposed master
  // serves no read either (its copy is stale, and a client falls over to the next URL on GRN_NOT_MASTER).
  // A master just restarted also waits for a chunkserver to confirm no newer term exists (StartupFence): a
  // client told GRN_NOT_MASTER tries the next URL, which is the promoted shadow if there is one.
  const mutation = {
    preHandler: async () => {
      if (deps.queue.mode !== 'master') throw notMasterError(deps.queue, masterUrl)
      if (!fence.open(now())) {
        throw new GranaryError('GRN_NOT_MASTER', [`master of term ${deps.queue.term} that has just started and no chunkserver has yet confirmed no newer master exists`, 'unknown to it'],
          { role: 'master', masterUrl: null, term: deps.queue.term, fencedByTerm: null })
      }
    }
  }
  const read = { preHandler: async () => { if (deps.queue.mode === 'deposed') throw notMasterError(deps.queue, masterUrl) } }

  // client → master: namespace
  app.post(p.mkdirPath, { schema: p.mkdirSchema, ...mutation }, c.mkdir)
  app.get(p.statPath, { schema: p.statSchema, ...read }, c.stat)
  app.get(p.listPath, { schema: p.listSchema, ...read }, c.list)
  app.post(p.renamePath, { schema: p.renameSchema, ...mutation }, c.rename)
  app.post(p.deletePath, { schema: p.deleteSchema, ...mutation }, c.remove)
  app.post(p.restorePath, { schema: p.restoreSchema, ...mutation }, c.restore)
  app.get(p.duPath, { schema: p.duSchema, ...read }, c.du)
  app.get(p.fsckPath, { schema: p.fsckSchema, ...read }, async (request) =>
    fsck(deps.db, normalizePath((request.query as p.FsckQuery).path), deps.registry.liveServerIds(now())))
  // client → master: writing a file
  app.post(p.createPath, { schema: p.createSchema, ...mutation }, c.create)
  app.post(p.allocatePath, { schema: p.allocateSchema, ...mutation }, c.allocate)
  app.post(p.commitPath, { schema: p.commitSchema, ...mutation }, c.commit)
  app.post(p.completePath, { schema: p.completeSchema, ...mutation }, c.complete)
  app.post(p.renewPath, { schema: p.renewSchema, ...mutation }, c.renew)
  app.post(p.abandonPath, { schema: p.abandonSchema, ...mutation }, c.abandon)
  // client → master: reading a file (a shadow serves these too)
  app.get(p.openPath, { schema: p.openSchema, ...read }, c.open)
  // anyone → master or shadow
  app.get(p.healthPath, c.health)
  app.get(p.reportPath, c.report)
  // chunkserver → master (a full report is far bigger than any client request); a shadow takes it for liveness
  app.post(p.heartbeatPath, { schema: p.heartbeatSchema, bodyLimit: limits.heartbeatBodyBytesMax }, heartbeat)
  // shadow → master: following the oplog (master only)
  app.get(p.oplogPath, { schema: p.oplogSchema }, s.oplog)
  app.get(p.snapshotPath, { schema: p.snapshotSchema }, s.snapshot)
  // operator → shadow
  app.post(p.promotePath, { schema: p.promoteSchema }, s.promote)

  return app
}

type ErrorHandler = Parameters<FastifyInstance['setErrorHandler']>[0]

function errorHandler (onFatal: (err: Error) => void): ErrorHandler {
  return function handle (err, request, reply) {
    const failure = toGranaryError(err as FastifyError, request.routeOptions.bodyLimit)
    if (err instanceof AssertionError) {
      request.log.fatal({ err }, 'assertion failed')
      onFatal(err)
    } else if (failure.code === 'GRN_INTERNAL') {
      request.log.error({ err }, 'request failed')
    } else {
      request.log.debug({ code: failure.code, message: failure.message }, 'request refused')
    }
    void reply.code(failure.statusCode).send(failure.toBody())
  }
}

// Every error a route can meet, mapped to a GranaryError by code — never by message.
function toGranaryError (err: FastifyError, bodyLimitBytes: number | undefined): GranaryError {
  if (err instanceof GranaryError) return err
  if (isGranaryError(err)) return new GranaryError(err.code, [], err.details, err.message)   // another copy of shared/
  if (err instanceof AssertionError) return new GranaryError('GRN_INTERNAL', [err.message])
  if (err.validation !== undefined) return new GranaryError('GRN_INVALID_ARGUMENT', [err.message])
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new GranaryError('GRN_LIMIT_EXCEEDED', ['request body', bodyLimitBytes ?? limits.jsonBodyBytesMax])
  // The rest of fastify's 4xx: malformed or empty JSON, wrong content type, bad content-length.
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new GranaryError('GRN_INVALID_ARGUMENT', [`${err.message} (${err.code})`])
  }
  return new GranaryError('GRN_INTERNAL', [err.message])
}
