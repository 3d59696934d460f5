// `granary master` and `granary shadow`: config, secret, database, subsystems in a listed order, listen, one
// ready line. A shadow is the same process code in another role: it bootstraps its database from a snapshot
// of the master's, then follows the master's oplog (shadow.ts), serves reads, and can be promoted in place.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import type { AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import type { AssertionError } from '../shared/assert.js'
import {
  advertisedUrl, configFromArgv, masterDefaults, resolveMasterConfig, resolveShadowConfig, shadowDefaults, type MasterConfig, type ShadowConfig
} from '../shared/config.js'
import type { ShadowId } from '../shared/ids.js'
import { GranaryError } from '../shared/errors.js'
import type * as p from '../shared/protocol.js'
import { watchLifeline } from '../shared/lifeline.js'
import { createLogger, readyMessage, type Logger } from '../shared/log.js'
import type { ServerTimeouts } from '../shared/server-timeouts.js'
import { loadSecret } from '../shared/token.js'
import { loadCa } from '../shared/tls.js'
import { countKeys } from './keys.js'
import { credentialsFileName, newCredentials, parseCredentials, sealSecret, type Credentials } from '../shared/auth.js'
import { CommitQueue, notMasterError } from './commit-queue.js'
import { dbFileName, openMasterDb, readMeta, type Db } from './db.js'
import { Checkpointer } from './checkpointer.js'
import { OplogFeed } from './oplog-feed.js'
import type { RetentionBounds } from './oplog.js'
import { Registry } from './registry.js'
import { Replicator } from './replicator.js'
import { SafeMode } from './safe-mode.js'
import { buildMasterServer } from './server.js'
import { bootstrapWaitMsMax, fetchSnapshot, Follower, loadShadowId, type FollowOutcome } from './shadow.js'
import { ShadowTracker } from './shadow-tracker.js'
import { installSnapshot } from './snapshot.js'
import { isStandby, waitForActivation } from './standby.js'
import { defaultRetention, Ticker } from './tick.js'
import { Election } from './election.js'
import { InSyncSet } from './isr.js'
import { MasterLease } from './lease.js'
import { MasterMetrics } from './metrics.js'
import { FailoverLog } from './failovers.js'

export interface MasterOptions {
  logger?: Logger
  now?: () => number                 // tests move time by hand
  monoNow?: () => number             // the lease's monotonic clock (default performance.now)
  onFatal?: (err: Error) => void     // default: log.fatal, exit(1)
  tick?: boolean                     // run the background tick on its timer (default true; tests call tick())
  secret?: Buffer                    // instead of reading config.secretFile
  retention?: Partial<RetentionBounds>   // oplog retention (tests shrink it); default the limits.ts bounds
  shadow?: ShadowRole                // open as a shadow following shadow.masterUrl (startShadow sets this)
  serverTimeouts?: ServerTimeouts    // the HTTP server's timeouts (tests shrink them); default masterServerTimeouts
  metrics?: MasterMetrics            // one per process (a shadow's re-bootstrap keeps its counters); default a new one
  failovers?: FailoverLog            // likewise: the failovers this process won
}

export interface ShadowRole { masterUrl: string, shadowId: ShadowId, pollWaitMs: number, bootstrapCount: number, bootstrappedAtMono?: number }

export interface Master {
  app: FastifyInstance
  db: Db
  queue: CommitQueue
  registry: Registry
  ticker: Ticker
  replicator: Replicator             // re-replication and over-replication trims (master/replicator.ts)
  shadows: ShadowTracker
  feed: OplogFeed
  follower: Follower | null          // a shadow's tail loop (started by startShadow once it listens)
  election: Election | null          // a shadow's candidacy (started with the follower)
  lease: MasterLease
  isr: InSyncSet
  log: Logger
  metrics: MasterMetrics
  failovers: FailoverLog
  close: () => Promise<void>
}

// Everything but listen(). Start-up order, each step needing the ones above it (MooseFS's RunTab):
//   1. secret         signs chunk tokens; refuse to start without one
//   2. database       open + pragmas + schema; reads only `meta` (no namespace scan, no oplog replay)
//   3. registry       empty: every chunkserver must send a full report to this master before it is used
//   4. commit queue   reads term and seq from meta; its dropped replicas become the registry's delete commands;
//                     a shadow's queue takes replayed records only, until promoted
//   5. shadow state   the tracker of this master's shadows, the long-poll feed, and (a shadow) its follower
//   6. HTTP server    routes, schemas, error handler
//   7. tick           lease expiry, oplog trim (after the queue it submits to)
export function openMaster (config: MasterConfig, options: MasterOptions = {}): Master {
  const log = options.logger ?? createLogger('master', config.logLevel)
  const now = options.now ?? Date.now
  const onFatal = options.onFatal ?? ((err: Error) => { log.fatal({ err }, 'assertion failed; exiting'); process.exit(1) })
  const secret = options.secret ?? loadSecret(config.secretFile, config.createSecret)
  const ca = loadCa('master', config.caFile)   // trusted for the calls a shadow makes: polls, snapshots, votes, hand-over
  const db = openMasterDb(config.dataDir, config.syncMode)
  const checkpointer = Checkpointer.start(db, log.child({ component: 'checkpointer' }))
  const snapshotDir = join(config.dataDir, 'snapshots')
  rmSync(snapshotDir, { recursive: true, force: true })   // backups a crash left half-streamed
  const registry = new Registry({ deadAfterMs: config.deadAfterMs, allocationHalfLifeMs: config.heartbeatIntervalMs })
  const masterUrl = options.shadow?.masterUrl ?? null
  const feed = new OplogFeed(readMeta(db).seq)
  const metrics = options.metrics ?? new MasterMetrics()
  const failovers = options.failovers ?? new FailoverLog()
  const queue: CommitQueue = new CommitQueue(db, {
    mode: options.shadow === undefined ? 'master' : 'shadow',
    onApplied: (applied) => { for (const r of applied.dropped) registry.queueDelete(r.serverId, r.chunkHandle, r.version) },
    onFatal: (err: AssertionError) => onFatal(err),
    onCommitted: (seq) => feed.notify(seq),
    refusal: () => notMasterError(queue, masterUrl),
    onBatch: (opCount, transactionSeconds, commitSeconds) => { metrics.observeBatch(opCount, transactionSeconds, commitSeconds) }
  })
  const retention = { ...defaultRetention, ...options.retention }
  const shadows = new ShadowTracker(retention.recordAgeMsMax)
  const follower = options.shadow === undefined
    ? null
    : new Follower({ db, queue, secret, ...options.shadow, leaseMs: config.leaseMs, log: log.child({ component: 'follower' }), now, onFatal, ca })
  const monoNow = options.monoNow ?? (() => performance.now())
  const lease = new MasterLease({ db, leaseMs: config.leaseMs, now: monoNow, log: log.child({ component: 'lease' }) })
  const isr = new InSyncSet({ dataDir: config.dataDir, term: queue.term, log: log.child({ component: 'isr' }), echoes: () => ({ epochs: lease.isrEchoes(), voterCount: lease.voterCount }) })
  // One safe-mode view for the heartbeat handler and the replicator: nothing is copied, trimmed or deleted on
  // replica counts a restart (or a promotion) left stale.
  const safeMode = new SafeMode({ db, registry, startedAtMs: now(), deadAfterMs: config.deadAfterMs })
  const election = follower === null || options.shadow === undefined
    ? null
    : new Election({
      db, queue, secret, shadowId: options.shadow.shadowId, url: () => follower.url, leaseMs: config.leaseMs, autoPromote: config.autoPromote,
      log: log.child({ component: 'election' }), now: monoNow, ca,
      masterSilentForMs: (nowMs) => follower.masterSilentForMs(nowMs), inSync: () => follower.inSync, masterUrl: () => follower.masterUrl,
      takeOver: async (term, voterIds, sentAtMs) => {
        await follower.takeOver(term)
        isr.reset(term)
        lease.refreshVoters()
        lease.onVotes(voterIds, sentAtMs)
        safeMode.restart(now())
      },
      onElected: (event) => {
        failovers.record(event)
        metrics.observeFailover(event)
        log.warn({ ...event }, 'failover measured')
      }
    })
  const app = buildMasterServer({
    db, queue, registry, secret, config, logger: log, now, startedAtMs: now(), onFatal, shadows, feed, snapshotDir, serverTimeouts: options.serverTimeouts,
    lease, isr, safeMode, metrics, failovers,
    ...(follower === null || election === null
      ? {}
      : {
          follower: {
            get masterUrl () { return follower.masterUrl },
            report: (nowMs: number) => follower.report(nowMs),
            silentForMs: () => follower.staleForMs(performance.now()),
            standing: () => election.standing(),
            promote: async (force: boolean): Promise<p.PromoteReply> => {
              const lagRecords = follower.lagRecords()
              if (!force && queue.mode === 'shadow') follower.checkCaughtUp()   // GRN_NOT_CAUGHT_UP naming the lag, before asking the master
              const won = await election.promote(force)
              return { term: won.term, seq: won.seq, lagRecords, forced: force }
            }
          }
        })
  })
  const ticker = new Ticker({ db, queue, registry, log: log.child({ component: 'tick' }), now, onFatal, shadows, retention, trashRetentionMs: config.trashRetentionMs })
  if (options.tick !== false) ticker.start(config.tickIntervalMs)
  // Its own safe-mode view (same inputs as the server's, so the same answer): nothing is copied or trimmed on
  // replica counts a restart left stale.
  const replicator = new Replicator({
    db, queue, registry, secret, tokenTtlMs: config.tokenTtlMs, log: log.child({ component: 'replication' }), now, onFatal, safeMode
  })
  if (options.tick !== false) replicator.start(config.tickIntervalMs)
  metrics.bind({ db, queue, lease, isr, registry, shadows, replicator, safeMode, follower, now })
  let closing: Promise<void> | null = null
  const close = (): Promise<void> => {
    // Reverse order: stop following, stop new work, let requests finish, commit what is queued, close the file.
    closing ??= (async () => {
      await election?.stop()
      await follower?.stop()
      isr.close(new GranaryError('GRN_UNAVAILABLE', ['the master', 'it is shutting down']))
      await replicator.stop()
      await ticker.stop()
      await app.close()
      queue.close()
      await checkpointer?.close()
      db.close()
    })()
    return closing
  }
  return { app, db, queue, registry, ticker, replicator, shadows, feed, follower, election, lease, isr, log, metrics, failovers, close }
}

export async function startMaster (config: MasterConfig, options: MasterOptions = {}): Promise<{ url: string, port: number, master: Master, close(): Promise<void> }> {
  const master = openMaster(config, options)
  // No key at all: an empty data folder, or a database from before access keys (an upgrade would lock everyone out).
  if (options.shadow === undefined && countKeys(master.db) === 0) {
    try {
      await bootstrapAdminKey(master, config, options.secret ?? loadSecret(config.secretFile, false))
    } catch (err) {
      await master.close()
      throw err
    }
  }
  const { port, url } = await listen(master, config, config.port)
  master.log.info({ port, url, term: master.queue.term, seq: master.queue.seq }, readyMessage)
  return { url, port, master, close: master.close }
}

// A master whose database has no access key at all (an empty data folder, or one from before keys) makes the first admin access key, as `granary up`
// makes the cluster secret: its credentials file is imported when it exists (a test kit, an operator's own key),
// else made (mode 0600). The key is an op like any other, so shadows get it through the oplog.
async function bootstrapAdminKey (master: Master, config: MasterConfig, secret: Buffer): Promise<void> {
  const file = config.credentialsFile === '' ? join(config.dataDir, credentialsFileName) : config.credentialsFile
  let credentials: Credentials
  if (existsSync(file)) {
    credentials = parseCredentials(readFileSync(file, 'utf8'), file)
  } else {
    credentials = newCredentials()
    mkdirSync(dirname(file), { recursive: true })
    const temp = `${file}.${process.pid}.tmp`
    writeFileSync(temp, JSON.stringify(credentials, null, 2) + '\n', { mode: 0o600 })
    renameSync(temp, file)
  }
  await master.queue.submit({
    type: 'keyCreate', accessKeyId: credentials.accessKeyId, name: 'admin (made at first start)', sealedSecret: sealSecret(secret, credentials.secretAccessKey),
    readOnly: false, admin: true, prefix: null, createdAtMs: Date.now()
  })
  master.log.info({ accessKeyId: credentials.accessKeyId, file }, 'made the first admin access key')
}

async function listen (node: Master, config: MasterConfig, port: number): Promise<{ port: number, url: string }> {
  try {
    await node.app.listen({ host: config.host.replace(/^\[|\]$/g, ''), port })
  } catch (err) {
    await node.close()
    throw err
  }
  const bound = (node.app.server.address() as AddressInfo).port
  return { port: bound, url: advertisedUrl(config.host, bound, config.advertiseUrl, config.tlsCert !== '') }
}

export async function runMaster (argv: string[]): Promise<void> {
  const config = resolveMasterConfig(configFromArgv('master', masterDefaults, argv))
  const log = createLogger('master', config.logLevel)
  if (isStandby()) await waitForActivation(log)   // a warm spare of granary up (standby.ts): wait for "go"
  const master = await startMaster(config, { logger: log })
  stopOnSignals(log, master.close)
}

export interface RunningShadow {
  url: string
  port: number
  shadowId: ShadowId
  readonly node: Master              // the current one: a re-bootstrap replaces it (same port)
  close: () => Promise<void>
}

// `granary shadow`: 1. config and secret   2. shadow id   3. bootstrap from a snapshot when there is no database
// yet   4. openMaster as a shadow   5. listen, ready line   6. follow the oplog. When the master says this
// shadow fell behind its retention (or diverged), fetch a new snapshot while still serving, then swap the
// database under a fresh server on the same port. A promoted shadow simply stays up as the master.
export async function startShadow (config: ShadowConfig, options: MasterOptions = {}): Promise<RunningShadow> {
  const log = options.logger ?? createLogger('shadow', config.logLevel)
  const secret = options.secret ?? loadSecret(config.secretFile, config.createSecret)
  const shadowId = loadShadowId(config.dataDir)
  let bootstrapCount = 0
  let bootstrappedAtMono: number | undefined
  let masterUrl = config.master   // the master followed: moves when a refusal or a failover names a newer one
  if (!existsSync(join(config.dataDir, dbFileName))) {
    masterUrl = await bootstrap(config, secret, shadowId, undefined, 0, log)
    bootstrapCount += 1
    bootstrappedAtMono = performance.now()
  }
  const metrics = options.metrics ?? new MasterMetrics()     // one per process: they outlive a re-bootstrap
  const failovers = options.failovers ?? new FailoverLog()
  const open = (): Master => openMaster(config, {
    ...options, logger: log, secret, metrics, failovers, shadow: { masterUrl, shadowId, pollWaitMs: config.pollWaitMs, bootstrapCount, bootstrappedAtMono }
  })
  let node = open()
  const { port, url } = await listen(node, config, config.port)
  node.follower?.start(url)
  node.election?.start()
  log.info({ port, url, role: 'shadow', master: masterUrl, shadowId, term: node.queue.term, seq: node.queue.seq }, readyMessage)
  let closing = false
  const follow = async (): Promise<void> => {
    let outcome: FollowOutcome = await (node.follower as Follower).finished
    while (outcome === 'snapshot-required' && !closing) {
      const made = await fetchSnapshot({ secret, masterUrl: node.follower?.masterUrl ?? masterUrl, shadowId, url, dir: join(config.dataDir, 'bootstrap'), log, waitMsMax: bootstrapWaitMsMax, termAtLeast: node.queue.term, ca: loadCa('shadow', config.caFile) })
      masterUrl = made.masterUrl
      await node.close()
      if (closing) return
      installSnapshot(config.dataDir, made.file)
      bootstrapCount += 1
      bootstrappedAtMono = performance.now()
      node = open()
      await listen(node, config, port)
      node.follower?.start(url)
      node.election?.start()
      log.warn({ seq: node.queue.seq, term: node.queue.term, bootstrapCount }, 'shadow re-bootstrapped from a snapshot')
      outcome = await (node.follower as Follower).finished
    }
  }
  const following = follow().catch((err: unknown) => {
    if (closing) return
    log.fatal({ err }, 'shadow could not re-bootstrap; exiting')
    ;(options.onFatal ?? (() => process.exit(1)))(err as Error)
  })
  return {
    url, port, shadowId,
    get node () { return node },
    close: async () => {
      closing = true
      await node.close()
      await following
    }
  }
}

// Returns the URL of the master the copy came from (the one named, or the master it named).
async function bootstrap (config: ShadowConfig, secret: Buffer, shadowId: ShadowId, url: string | undefined, termAtLeast: number, log: Logger): Promise<string> {
  const startedMs = Date.now()
  const made = await fetchSnapshot({ secret, masterUrl: config.master, shadowId, url, dir: join(config.dataDir, 'bootstrap'), log, waitMsMax: bootstrapWaitMsMax, termAtLeast, ca: loadCa('shadow', config.caFile) })
  installSnapshot(config.dataDir, made.file)
  log.info({ seq: made.manifest.seq, term: made.manifest.term, sizeBytes: made.manifest.sizeBytes, durationMs: Date.now() - startedMs, master: made.masterUrl }, 'bootstrapped from a snapshot')
  return made.masterUrl
}

export async function runShadow (argv: string[]): Promise<void> {
  // `--data DIR` is the spelling; every other flag is a master flag or --master / --promote / --force.
  const args = argv.map((arg) => arg === '--data' ? '--data-dir' : arg.startsWith('--data=') ? `--data-dir=${arg.slice('--data='.length)}` : arg)
  const config = resolveShadowConfig(configFromArgv('shadow', shadowDefaults, args))
  const log = createLogger('shadow', config.logLevel)
  const shadow = await startShadow(config, { logger: log })
  stopOnSignals(log, shadow.close)
  if (config.promote) void promoteWhenCaughtUp(shadow, config.force, log)
}

// `granary shadow --promote [--force]`: wait (bounded) for the first polls to catch up, then promote.
const promoteCatchUpWaitMs = 10_000
async function promoteWhenCaughtUp (shadow: RunningShadow, force: boolean, log: Logger): Promise<void> {
  const deadlineMs = Date.now() + promoteCatchUpWaitMs
  while (Date.now() < deadlineMs && shadow.node.follower?.lagRecords() !== 0) await new Promise((resolve) => setTimeout(resolve, 25))
  try {
    await shadow.node.election?.promote(force)
  } catch (err) {
    log.error({ err }, 'promotion refused; still a shadow')
  }
}

function stopOnSignals (log: Logger, close: () => Promise<void>): void {
  const stop = (signal: NodeJS.Signals | 'lifeline'): void => {
    log.info({ signal }, 'stopping')
    close().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'close failed')
      process.exit(1)
    })
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  watchLifeline(() => stop('lifeline'))   // spawned by granary up or the test kit: exit when the parent is gone
}
