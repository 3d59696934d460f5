// The master's HTTP server: every route in one block below (path, schema, body limit, handler), the error
// handler that turns every failure into { statusCode, code, error, message }, and no listen(): main.ts
// listens, tests call inject(). The route table is written out here, not hidden in plugins, so one screen
// answers "what does the master serve and with which schema".
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify'
import { AssertionError } from '../shared/assert.js'
import type { MasterConfig } from '../shared/config.js'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import { majorityOf } from '../shared/failover.js'
import { createLogger, type Logger } from '../shared/log.js'
import { fastifyTimeoutOptions, masterServerTimeouts, type ServerTimeouts } from '../shared/server-timeouts.js'
import * as p from '../shared/protocol.js'
import { notMasterError, type CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import type { OplogFeed } from './oplog-feed.js'
import type { Registry } from './registry.js'
import { clientHandlers } from './routes-client.js'
import { batchHandler, type BatchRoute } from './batch.js'
import { fsck } from './fsck.js'
import { normalizePath } from '../shared/paths.js'
import { heartbeatHandler } from './routes-chunkserver.js'
import { shadowHandlers } from './routes-shadow.js'
import { SafeMode } from './safe-mode.js'
import type { InSyncSet } from './isr.js'
import type { MasterLease } from './lease.js'
import { signRelease } from '../shared/token.js'
import { lazySchemaController } from './lazy-schemas.js'
import { advertisedUrl } from '../shared/config.js'
import { loadServerTls } from '../shared/tls.js'
import type { AddressInfo } from 'node:net'
import type { ShadowTracker } from './shadow-tracker.js'
import { accessKeyIdPattern, controlKey, equalSecrets, isLoopbackHost, RequestVerifier, sealSecret, sigV4SigningKey } from '../shared/auth.js'
import { installAuth, type RouteAccess } from '../shared/auth-server.js'
import { KeyCache, listKeys, operatorKeyHashes } from './keys.js'
import { registerOperatorRoutes } from '../shared/metrics.js'
import { MasterMetrics } from './metrics.js'
import { statusPageHtml } from './status-page.js'
import type { FailoverLog } from './failovers.js'

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
  follower?: {
    readonly masterUrl: string, report: (nowMs: number) => p.FollowReport, promote: (force: boolean) => Promise<p.PromoteReply>
    silentForMs: () => number | null          // since the last successful poll of the master (monotonic); null: none yet
    standing?: () => Promise<void> | null     // settles when the candidacy under way ends; null when not standing
  }
  lease: MasterLease                          // no ack and no master read without it (master/lease.ts)
  isr: InSyncSet                              // every ack waits for the in-sync shadows (master/isr.ts)
  safeMode?: SafeMode                         // shared with the replicator and restarted on promotion (main.ts)
  serverTimeouts?: ServerTimeouts             // default masterServerTimeouts (tests shrink them)
  metrics?: MasterMetrics                     // GET /metrics (default: a new one, bound by openMaster only)
  failovers?: FailoverLog                     // the failovers this process won (the report's `failovers`)
}

const handOverPollMs = 5                     // a hand-over's drain looks again this often (bounded by handOverDrainMsMax)
const settleWaitMsMax = limits.voteRoundMsMax // a mutation waits this long for a vote under way, or a new master's first echoes
const settlingMutationsMax = 1_024           // past this many waiting, a mutation is refused at once instead

export function buildMasterServer (deps: MasterDeps): FastifyInstance {
  const logger = deps.logger ?? createLogger('master', deps.config.logLevel)
  const tls = loadServerTls('master', deps.config.tlsCert, deps.config.tlsKey)
  const app = Fastify({
    ...(tls === null ? {} : { https: tls }),              // --tls-cert: https only (shared/tls.ts)
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
  // The position header (protocol.positionHeader): a read's is taken before it runs (its data is at least that
  // new), a mutation's when its reply is sent (after its commit and its in-sync confirmation).
  const positions = new WeakMap<FastifyRequest, string>()
  app.addHook('onRequest', async (request) => { positions.set(request, p.formatPosition(deps.queue)) })
  app.addHook('onSend', async (request, reply) => {
    reply.header(p.positionHeader, request.method === 'GET' ? positions.get(request) ?? p.formatPosition(deps.queue) : p.formatPosition(deps.queue))
  })
  // This server's advertised URL, once it listens (main.ts listens after building it).
  const ownUrl = (): string | null => {
    const address = app.server.address() as AddressInfo | null
    return address === null || typeof address !== 'object' ? null : advertisedUrl(deps.config.host, address.port, deps.config.advertiseUrl, tls !== null)
  }

  // Who may call what (shared/auth-server.ts): every route below has a line here, or it answers GRN_INTERNAL.
  const keyCache = new KeyCache(deps.db, deps.secret)
  // The wall clock, not deps.now (tests move that one): a signer stamps requests with its own wall clock.
  const verifier = deps.config.auth === 'on' ? new RequestVerifier({ clusterSecret: deps.secret, lookup: (id) => keyCache.lookup(id) }) : null
  installAuth(app, {
    verifier, routes: masterRouteAccess, controlKey: controlKey(deps.secret), loopbackOnly: isLoopbackHost(deps.config.host),
    plainKey: (id, secret) => {
      const record = accessKeyIdPattern.test(id) ? keyCache.lookup(id) : null
      return record !== null && typeof record.key === 'string' && equalSecrets(record.key, secret) ? record.principal : null
    }
  })

  const startedAtMs = deps.startedAtMs ?? now()
  const safeMode = deps.safeMode ?? new SafeMode({ db: deps.db, registry: deps.registry, startedAtMs, deadAfterMs: deps.config.deadAfterMs })
  const { lease, isr, queue } = deps
  // Who a refusal names as the master: a shadow's master, or the successor a chunkserver named to a deposed
  // master, or the shadow this master is handing over to.
  let successorUrl: string | null = null
  let handingOverTo: string | null = null
  let handOverAsked: string | null = null   // a hand-over waiting for the chunkservers to know its shadow in sync
  let mutationsInFlight = 0
  const refusalUrl = (): string | null => handingOverTo ?? successorUrl ?? (queue.mode === 'master' ? null : deps.follower?.masterUrl) ?? null
  const notLeased = (): GranaryError => new GranaryError('GRN_NOT_MASTER',
    [`master of term ${queue.term} without its lease (${lease.describe()})`, refusalUrl() ?? 'unknown to it'],
    { role: 'master', masterUrl: refusalUrl(), term: queue.term, fencedByTerm: queue.fencedByTerm, lease: false })
  const refuseUnlessLeased = (): void => {
    if (queue.mode !== 'master') throw notMasterError(queue, refusalUrl())
    if (!lease.held() || !lease.heardByMajority(queue.term)) throw notLeased()
  }
  const c = clientHandlers({
    db: deps.db, queue: deps.queue, registry: deps.registry, secret: deps.secret, now,
    leaseTtlMs: deps.config.leaseTtlMs, tokenTtlMs: deps.config.tokenTtlMs, trashRetentionMs: deps.config.trashRetentionMs, deadAfterMs: deps.config.deadAfterMs,
    startedAtMs, safeMode, shadows: deps.shadows, follower: deps.follower
  })
  const heartbeat = heartbeatHandler({
    db: deps.db, queue: deps.queue, registry: deps.registry, heartbeatIntervalMs: deps.config.heartbeatIntervalMs, now, masterUrl: refusalUrl, safeMode, lease, isr,
    onNewerTerm: (term, url) => {
      if (url !== undefined) successorUrl = url
      if (deps.queue.mode === 'master' && deps.queue.depose(term)) {
        isr.close(notMasterError(queue, refusalUrl()))
        logger.error({ term: deps.queue.term, newerTerm: term, successor: successorUrl }, 'a newer master term exists: this master is deposed and refuses every request but health and report')
      }
    }
  })
  // A planned hand-over (shadow → master): stop taking mutations, let the ones in flight be acknowledged, wait
  // for the shadow to have applied everything, release the lease, and hand the shadow a signed release.
  const handOver = async (request: p.HandOverRequest): Promise<p.HandOverReply> => {
    // Asked again by the same shadow after its vote failed: the same release (the lease is gone for good).
    if (handingOverTo === request.url && lease.released && queue.mode === 'master') {
      return { term: queue.term, seq: queue.seq, release: signRelease(deps.secret, { term: queue.term, shadowId: request.shadowId }) }
    }
    const underWay = handingOverTo ?? handOverAsked
    if (underWay !== null && underWay !== request.url) throw new GranaryError('GRN_VOTE_LOST', [`the master at term ${queue.term} is handing over to ${underWay}`], { masterUrl: underWay })
    if (underWay !== null) throw new GranaryError('GRN_INVALID_ARGUMENT', [`a hand-over to ${underWay} is already under way`])
    refuseUnlessLeased()
    // The lease is given up for good below: only to a shadow a chunkserver majority already knows as in sync,
    // so the vote that follows can be won. A shadow just admitted waits here (mutations still taken) for the
    // next heartbeats to carry the new in-sync set, within handOverDrainMsMax.
    const knownInSync = (): { ok: boolean, why: string } => {
      const announced = isr.announced()
      const echoedBy = lease.isrEchoes().filter((epoch) => epoch >= announced.epoch).length
      const ok = isr.members.includes(request.shadowId) && announced.isr.includes(request.shadowId) &&
        (lease.voterCount === 0 || echoedBy >= majorityOf(lease.voterCount))
      return { ok, why: `shadow ${request.shadowId} is not yet in the in-sync set that a majority of chunkservers know (${echoedBy} of ${lease.voterCount} echoed epoch ${announced.epoch}); try again in a moment` }
    }
    if (!isr.members.includes(request.shadowId)) throw new GranaryError('GRN_NOT_CAUGHT_UP', [knownInSync().why])
    handOverAsked = request.url
    const startedMs = Date.now()
    logger.info({ term: queue.term, to: request.url, shadowId: request.shadowId }, 'hand-over asked')
    try {
      for (let known = knownInSync(); !known.ok; known = knownInSync()) {
        if (Date.now() - startedMs >= limits.handOverDrainMsMax) throw new GranaryError('GRN_NOT_CAUGHT_UP', [known.why])
        await new Promise((resolve) => setTimeout(resolve, handOverPollMs))
      }
      refuseUnlessLeased()
      handingOverTo = request.url
      const drainStartedMs = Date.now()
      logger.info({ term: queue.term, to: request.url, knownMs: drainStartedMs - startedMs, mutationsInFlight, queued: queue.queuedCount }, 'hand-over: refusing mutations, draining')
      while (mutationsInFlight > 0 || queue.queuedCount > 0 || (isr.confirmedSeq(request.shadowId) ?? -1) < queue.seq) {
        if (Date.now() - drainStartedMs >= limits.handOverDrainMsMax) {
          throw new GranaryError('GRN_NOT_CAUGHT_UP', [`within ${limits.handOverDrainMsMax} ms: ${mutationsInFlight} mutations in flight, shadow applied ${String(isr.confirmedSeq(request.shadowId))} of ${queue.seq}`])
        }
        await new Promise((resolve) => setTimeout(resolve, handOverPollMs))
      }
      refuseUnlessLeased()
      lease.release()
    } catch (err) {
      handingOverTo = null
      throw err
    } finally {
      handOverAsked = null
    }
    logger.warn({ term: queue.term, seq: queue.seq, to: request.url, shadowId: request.shadowId, handOverMs: Date.now() - startedMs }, 'lease released: handing over to a shadow')
    return { term: queue.term, seq: queue.seq, release: signRelease(deps.secret, { term: queue.term, shadowId: request.shadowId }) }
  }
  const s = shadowHandlers({
    db: deps.db, queue: deps.queue, shadows: deps.shadows, feed: deps.feed, snapshotDir: deps.snapshotDir, masterUrl: refusalUrl,
    promote: deps.follower?.promote ?? null, now, isr, handOver
  })
  // Gates (preHandler: after the schema): a shadow or a deposed master takes no mutation; a deposed master
  // serves no read either (its copy is stale, and a client falls over to the next URL on GRN_NOT_MASTER).
  // A master just restarted also waits for a chunkserver to confirm no newer term exists (StartupFence): a
  // client told GRN_NOT_MASTER tries the next URL, which is the promoted shadow if there is one.
  // The lease replaces a start-up wait: a restarted master holds none until a majority echoed one of its own
  // replies, and a chunkserver that met a newer master deposes it instead.
  // A mutation that meets a shadow standing for election, or a master elected but not yet echoed by a chunkserver
  // majority, first waits for the outcome (at most settleWaitMsMax) instead of being refused at once: in a
  // hand-over the old master's refusal sends the client here a few ms before the vote ends, and every refusal
  // costs the client a retry and a backoff. It only waits: every check (refuseUnlessLeased, then the ack's) runs after.
  let settling = 0
  const untilSettled = async (): Promise<void> => {
    const standing = queue.mode === 'shadow' ? deps.follower?.standing?.() ?? null : null
    const electedUnheard = queue.mode === 'master' && lease.held() && !lease.heardByMajority(queue.term)
    if ((standing === null && !electedUnheard) || settling >= settlingMutationsMax) return
    settling += 1
    const timeout = new AbortController()
    try {
      const startedMs = Date.now()
      if (standing !== null) await Promise.race([standing, sleep(settleWaitMsMax, undefined, { signal: timeout.signal }).catch(() => {})])
      const leftMs = settleWaitMsMax - (Date.now() - startedMs)
      if (queue.mode === 'master' && lease.held()) await lease.untilHeardByMajority(queue.term, leftMs)
    } finally {
      timeout.abort()
      settling -= 1
    }
  }
  const mutation = {
    preHandler: async () => {
      await untilSettled()
      refuseUnlessLeased()
      if (handingOverTo !== null) {
        throw new GranaryError('GRN_NOT_MASTER', [`master of term ${queue.term} handing over`, handingOverTo], { role: 'master', masterUrl: handingOverTo, term: queue.term, fencedByTerm: null })
      }
    }
  }
  // A shadow that has not heard from its master for shadowReadStaleMsMax refuses reads (GRN_STALE, retryable)
  // unless the caller asks for stale ones: its copy may lack what a master that dropped it acknowledged since.
  const read = {
    preHandler: async (request: FastifyRequest) => {
      if (queue.mode === 'deposed') throw notMasterError(queue, refusalUrl())
      if (queue.mode === 'master' && !lease.held()) throw notLeased()
      if (queue.mode === 'shadow' && deps.follower !== undefined && request.headers[p.staleOkHeader] !== '1') {
        const silentMs = deps.follower.silentForMs()
        if (silentMs === null || silentMs > limits.shadowReadStaleMsMax) {
          throw new GranaryError('GRN_STALE', [`this shadow ${silentMs === null ? 'has not reached its master since it started' : `last heard from its master ${Math.round(silentMs)} ms ago (bound ${limits.shadowReadStaleMsMax} ms)`}; ask another server, or allow stale reads`],
            { role: 'shadow', masterUrl: deps.follower.masterUrl, silentMs })
        }
      }
    }
  }
  // Who a client should know: a master lists itself and the shadows that polled it lately; a shadow (or a
  // deposed master) its master and itself. Advertised URLs only.
  const metadataServers = (): string[] => {
    const self = ownUrl()
    const urls = queue.mode === 'master'
      ? [self, ...deps.shadows.urls(now())]
      : [refusalUrl(), self]
    return [...new Set(urls.filter((url): url is string => typeof url === 'string' && url !== ''))]
  }
  // An acknowledgement: committed here (the handler awaited the commit queue), then applied by every in-sync
  // shadow, then this master's clock is read once more — a master whose lease lapsed meanwhile (or that was
  // frozen and has just woken) refuses; the client retries elsewhere with the same request id.
  const acked = <R>(handler: (request: FastifyRequest) => Promise<R>) => async (request: FastifyRequest): Promise<R> => {
    mutationsInFlight += 1
    try {
      const result = await handler(request)
      await isr.waitConfirmed(queue.seq)
      refuseUnlessLeased()
      return result
    } finally {
      mutationsInFlight -= 1
    }
  }

  const serverMetrics = (deps.metrics ?? new MasterMetrics()).server
  // client → master: several of the calls below in one exchange, each checked and handled as it is alone
  // The client routes a batch may carry, each registered below from this same table (one schema, gate and
  // handler per route, whether it comes alone or in a batch): reads are GETs with a querystring, mutations POSTs
  // with a body, acknowledged through acked().
  const batchRoutes = new Map<string, BatchRoute>([
    [p.statPath, { kind: 'read', schema: p.statSchema.querystring, handle: c.stat }],
    [p.openPath, { kind: 'read', schema: p.openSchema.querystring, handle: c.open }],
    [p.mkdirPath, { kind: 'mutation', schema: p.mkdirSchema.body, handle: acked(c.mkdir) }],
    [p.createPath, { kind: 'mutation', schema: p.createSchema.body, handle: acked(c.create) }],
    [p.reservePath, { kind: 'mutation', schema: p.reserveSchema.body, handle: acked(c.reserve) }],
    [p.allocatePath, { kind: 'mutation', schema: p.allocateSchema.body, handle: acked(c.allocate) }],
    [p.commitPath, { kind: 'mutation', schema: p.commitSchema.body, handle: acked(c.commit) }],
    [p.completePath, { kind: 'mutation', schema: p.completeSchema.body, handle: acked(c.complete) }],
    [p.renewPath, { kind: 'mutation', schema: p.renewSchema.body, handle: acked(c.renew) }],
    [p.abandonPath, { kind: 'mutation', schema: p.abandonSchema.body, handle: acked(c.abandon) }],
    [p.renamePath, { kind: 'mutation', schema: p.renameSchema.body, handle: acked(c.rename) }],
    [p.deletePath, { kind: 'mutation', schema: p.deleteSchema.body, handle: acked(c.remove) }]
  ])
  for (const [path, route] of batchRoutes) {
    if (route.kind === 'read') app.get(path, { schema: { querystring: route.schema }, ...read }, route.handle)
    else app.post(path, { schema: { body: route.schema }, ...mutation }, route.handle)
  }
  app.post(p.batchPath, { schema: p.batchSchema, bodyLimit: limits.batchBodyBytesMax }, batchHandler({
    routes: batchRoutes,
    access: masterRouteAccess,
    gates: { read: read.preHandler, mutation: mutation.preHandler },
    readPosition: (request) => positions.get(request) ?? p.formatPosition(deps.queue),
    position: () => p.formatPosition(deps.queue),
    observe: (method, route, statusCode, seconds) => { serverMetrics.observeRequest(method, route, statusCode, seconds) },
    toError: (err, request) => {
      const failure = toGranaryError(err as FastifyError, undefined)
      if (err instanceof AssertionError) {
        request.log.fatal({ err }, 'assertion failed')
        onFatal(err)
      } else if (failure.code === 'GRN_INTERNAL') {
        request.log.error({ err }, 'batched call failed')
      }
      return failure
    }
  }))
  // client → master: the calls no batch carries (stat, open, mkdir, rename, delete and the write path are above)
  app.get(p.listPath, { schema: p.listSchema, ...read }, c.list)
  app.post(p.concatPath, { schema: p.concatSchema, ...mutation }, acked(c.concat))
  app.post(p.restorePath, { schema: p.restoreSchema, ...mutation }, acked(c.restore))
  app.get(p.duPath, { schema: p.duSchema, ...read }, c.du)
  app.get(p.fsckPath, { schema: p.fsckSchema, ...read }, async (request) =>
    ({ ...fsck(deps.db, normalizePath((request.query as p.FsckQuery).path), deps.registry.liveServerIds(now())), ...(queue.mode === 'master' ? { inSyncShadows: isr.members.length } : {}) }))
  // anyone → master or shadow
  app.get(p.healthPath, async (request: FastifyRequest): Promise<p.HealthReply> => ({ ...(await c.health(request)), metadataServers: metadataServers() }))
  app.get(p.reportPath, async (request: FastifyRequest): Promise<p.ClusterReport> => {
    const report = { ...await c.report(request), failovers: deps.failovers?.recent() ?? [] }
    if (queue.mode !== 'master') return report
    const remainingMs = Number.isFinite(lease.endsAtMs) ? Math.max(0, Math.round(lease.endsAtMs - lease.now())) : null
    return { ...report, isr: [...isr.members], lease: { held: lease.held() && lease.heardByMajority(queue.term), voters: lease.voterCount, remainingMs } }
  })
  // chunkserver → master (a full report is far bigger than any client request); a shadow takes it for liveness
  app.post(p.heartbeatPath, { schema: p.heartbeatSchema, bodyLimit: limits.heartbeatBodyBytesMax },
    async (request) => ({ ...(await heartbeat(request)), operatorKeys: operatorKeyHashes(deps.db, deps.secret) }))
  // shadow → master: following the oplog (master only)
  app.get(p.oplogPath, { schema: p.oplogSchema }, s.oplog)
  app.get(p.snapshotPath, { schema: p.snapshotSchema }, s.snapshot)
  app.post(p.handOverPath, { schema: p.handOverSchema }, s.handOver)
  // operator → shadow
  app.post(p.promotePath, { schema: p.promoteSchema }, s.promote)
  // admin → master: access keys (the list is a read: a shadow answers it too)
  app.post(p.keysPath, { schema: p.keyCreateSchema, ...mutation }, acked(async (request) => {
    const body = request.body as p.KeyCreateRequest
    const prefix = body.prefix === undefined ? null : normalizePath(body.prefix)
    return await queue.submit({
      type: 'keyCreate', accessKeyId: body.accessKeyId, name: body.name, sealedSecret: sealSecret(deps.secret, body.secretAccessKey),
      readOnly: body.readOnly ?? false, admin: body.admin ?? false, prefix: prefix === '/' ? null : prefix, createdAtMs: now()
    }, body.requestId)
  }))
  app.get(p.keysPath, { ...read }, async (): Promise<p.KeyListReply> => ({ keys: listKeys(deps.db) }))
  app.get(p.keySigningPath, { schema: p.keySigningSchema, ...read }, async (request): Promise<p.KeySigningReply> => {
    const q = request.query as p.KeySigningQuery
    const record = accessKeyIdPattern.test(q.accessKeyId) ? keyCache.lookup(q.accessKeyId) : null
    if (record === null || record.principal.kind !== 'key' || typeof record.key !== 'string') throw new GranaryError('GRN_NO_SUCH_KEY', [q.accessKeyId])
    const { readOnly, admin, prefix } = record.principal
    return { accessKeyId: q.accessKeyId, signingKey: sigV4SigningKey(record.key, q.date, q.region, q.service).toString('hex'), readOnly, admin, prefix }
  })
  app.post(p.keysRevokePath, { schema: p.keyRevokeSchema, ...mutation }, acked(async (request) => {
    const body = request.body as p.KeyRevokeRequest
    return await queue.submit({ type: 'keyRevoke', accessKeyId: body.accessKeyId, revokedAtMs: now() }, body.requestId)
  }))
  // operator → master or shadow: /metrics and the status page (GET /), behind one access rule
  registerOperatorRoutes(app, { metrics: serverMetrics, statusPage: statusPageHtml })

  return app
}

// Who may call each route. Paths are checked against a key's prefix after the schema (they are strings then).
const query = (request: FastifyRequest): { path?: string } => request.query as { path?: string }
const bodyOf = (request: FastifyRequest): Record<string, string | undefined> => (request.body ?? {}) as Record<string, string | undefined>
export const masterRouteAccess: ReadonlyMap<string, RouteAccess> = new Map<string, RouteAccess>([
  [p.healthPath, { who: 'anyone' }],
  // Each op in a batch is checked against its own route's rule below (master/batch.ts).
  [p.batchPath, { who: 'key', right: 'read' }],                  // liveness and the metadata server list: nothing secret
  [p.statPath, { who: 'key', right: 'read', paths: (r) => [query(r).path] }],
  [p.listPath, { who: 'key', right: 'read', paths: (r) => [query(r).path], operator: true }],   // the status page's namespace browser
  [p.duPath, { who: 'key', right: 'read', paths: (r) => [query(r).path] }],
  [p.openPath, { who: 'key', right: 'read', paths: (r) => [query(r).path] }],
  [p.mkdirPath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).path] }],
  [p.createPath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).path] }],
  [p.deletePath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).path] }],
  [p.renamePath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).source, bodyOf(r).target] }],
  [p.restorePath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).path, bodyOf(r).target] }],
  [p.concatPath, { who: 'key', right: 'write', paths: (r) => [bodyOf(r).target, ...((r.body as { sources?: string[] } | undefined)?.sources ?? [])] }],
  // A lease id is the capability here: only a create (or reserve) the key was allowed made it. A reserved file is
  // named at its complete, so the name a bind gives is checked like create's path.
  [p.reservePath, { who: 'key', right: 'write' }],
  [p.allocatePath, { who: 'key', right: 'write' }],
  [p.commitPath, { who: 'key', right: 'write', paths: (r) => [(r.body as { complete?: { bind?: { path?: string } } } | undefined)?.complete?.bind?.path] }],
  [p.completePath, { who: 'key', right: 'write', paths: (r) => [(r.body as { bind?: { path?: string } } | undefined)?.bind?.path] }],
  [p.renewPath, { who: 'key', right: 'write' }],
  [p.abandonPath, { who: 'key', right: 'write' }],
  [p.fsckPath, { who: 'key', right: 'admin' }],
  [p.reportPath, { who: 'key', right: 'admin', operator: true }],                                // and its numbers
  [p.metricsPath, { who: 'operator' }],
  [p.statusPagePath, { who: 'operator' }],
  [p.promotePath, { who: 'key', right: 'admin' }],
  [p.keysPath, { who: 'key', right: 'admin' }],
  [p.keysRevokePath, { who: 'key', right: 'admin' }],
  [p.keySigningPath, { who: 'key', right: 'admin' }],
  [p.heartbeatPath, { who: 'cluster' }],
  [p.oplogPath, { who: 'cluster' }],
  [p.snapshotPath, { who: 'cluster' }],
  [p.handOverPath, { who: 'cluster' }]
])

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
