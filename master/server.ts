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
import * as p from '../shared/protocol.js'
import type { CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import type { Registry } from './registry.js'
import { clientHandlers } from './routes-client.js'
import { heartbeatHandler } from './routes-chunkserver.js'

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
}

export function buildMasterServer (deps: MasterDeps): FastifyInstance {
  const logger = deps.logger ?? createLogger('master', deps.config.logLevel)
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: limits.jsonBodyBytesMax,
    logController: new LogController({ disableRequestLogging: true }),   // one line per request at debug instead (onResponse below)
    ajv: { customOptions: { removeAdditional: false } }   // additionalProperties: false refuses, not strips
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

  const c = clientHandlers({
    db: deps.db, queue: deps.queue, registry: deps.registry, secret: deps.secret, now,
    leaseTtlMs: deps.config.leaseTtlMs, tokenTtlMs: deps.config.tokenTtlMs, deadAfterMs: deps.config.deadAfterMs,
    startedAtMs: deps.startedAtMs ?? now()
  })
  const heartbeat = heartbeatHandler({ db: deps.db, queue: deps.queue, registry: deps.registry, heartbeatIntervalMs: deps.config.heartbeatIntervalMs, now })

  // client → master: namespace
  app.post(p.mkdirPath, { schema: p.mkdirSchema }, c.mkdir)
  app.get(p.statPath, { schema: p.statSchema }, c.stat)
  app.get(p.listPath, { schema: p.listSchema }, c.list)
  app.post(p.renamePath, { schema: p.renameSchema }, c.rename)
  app.post(p.deletePath, { schema: p.deleteSchema }, c.remove)
  app.get(p.duPath, { schema: p.duSchema }, c.du)
  // client → master: writing a file
  app.post(p.createPath, { schema: p.createSchema }, c.create)
  app.post(p.allocatePath, { schema: p.allocateSchema }, c.allocate)
  app.post(p.commitPath, { schema: p.commitSchema }, c.commit)
  app.post(p.completePath, { schema: p.completeSchema }, c.complete)
  app.post(p.renewPath, { schema: p.renewSchema }, c.renew)
  app.post(p.abandonPath, { schema: p.abandonSchema }, c.abandon)
  // client → master: reading a file
  app.get(p.openPath, { schema: p.openSchema }, c.open)
  // anyone → master
  app.get(p.healthPath, c.health)
  app.get(p.reportPath, c.report)
  // chunkserver → master (a full report is far bigger than any client request)
  app.post(p.heartbeatPath, { schema: p.heartbeatSchema, bodyLimit: limits.heartbeatBodyBytesMax }, heartbeat)

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
