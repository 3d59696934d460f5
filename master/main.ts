// `granary master`: config, secret, database, subsystems in a listed order, listen, one ready line.
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import type { AssertionError } from '../shared/assert.js'
import { configFromArgv, masterDefaults, resolveMasterConfig, type MasterConfig } from '../shared/config.js'
import { createLogger, readyMessage, type Logger } from '../shared/log.js'
import { loadSecret } from '../shared/token.js'
import { CommitQueue } from './commit-queue.js'
import { openMasterDb, type Db } from './db.js'
import { Registry } from './registry.js'
import { buildMasterServer } from './server.js'
import { Ticker } from './tick.js'

export interface MasterOptions {
  logger?: Logger
  now?: () => number                 // tests move time by hand
  onFatal?: (err: Error) => void     // default: log.fatal, exit(1)
  tick?: boolean                     // run the background tick on its timer (default true; tests call tick())
  secret?: Buffer                    // instead of reading config.secretFile
}

export interface Master {
  app: FastifyInstance
  db: Db
  queue: CommitQueue
  registry: Registry
  ticker: Ticker
  log: Logger
  close: () => Promise<void>
}

// Everything but listen(). Start-up order, each step needing the ones above it (MooseFS's RunTab):
//   1. secret         signs chunk tokens; refuse to start without one
//   2. database       open + pragmas + schema; reads only `meta` (no namespace scan, no oplog replay)
//   3. registry       empty: every chunkserver must send a full report to this master before it is used
//   4. commit queue   reads term and seq from meta; its dropped replicas become the registry's delete commands
//   5. HTTP server    routes, schemas, error handler
//   6. tick           lease expiry, oplog trim (after the queue it submits to)
export function openMaster (config: MasterConfig, options: MasterOptions = {}): Master {
  const log = options.logger ?? createLogger('master', config.logLevel)
  const now = options.now ?? Date.now
  const onFatal = options.onFatal ?? ((err: Error) => { log.fatal({ err }, 'assertion failed; exiting'); process.exit(1) })
  const secret = options.secret ?? loadSecret(config.secretFile, config.createSecret)
  const db = openMasterDb(config.dataDir, config.syncMode)
  const registry = new Registry({ deadAfterMs: config.deadAfterMs, allocationHalfLifeMs: config.heartbeatIntervalMs })
  const queue = new CommitQueue(db, {
    onApplied: (applied) => { for (const r of applied.dropped) registry.queueDelete(r.serverId, r.chunkHandle, r.version) },
    onFatal: (err: AssertionError) => onFatal(err)
  })
  const app = buildMasterServer({ db, queue, registry, secret, config, logger: log, now, startedAtMs: now(), onFatal })
  const ticker = new Ticker({ db, queue, registry, log: log.child({ component: 'tick' }), now, onFatal })
  if (options.tick !== false) ticker.start(config.tickIntervalMs)
  let closing: Promise<void> | null = null
  const close = (): Promise<void> => {
    // Reverse order: stop new work, let requests finish, commit what is queued, then close the file.
    closing ??= (async () => {
      await ticker.stop()
      await app.close()
      queue.close()
      db.close()
    })()
    return closing
  }
  return { app, db, queue, registry, ticker, log, close }
}

export async function startMaster (config: MasterConfig, options: MasterOptions = {}): Promise<{ url: string, port: number, close(): Promise<void> }> {
  const master = openMaster(config, options)
  try {
    await master.app.listen({ host: config.host, port: config.port })
  } catch (err) {
    await master.close()
    throw err
  }
  const port = (master.app.server.address() as AddressInfo).port
  const url = `http://${config.host}:${port}`
  master.log.info({ port, url, term: master.queue.term, seq: master.queue.seq }, readyMessage)
  return { url, port, close: master.close }
}

export async function runMaster (argv: string[]): Promise<void> {
  const config = resolveMasterConfig(configFromArgv('master', masterDefaults, argv))
  const log = createLogger('master', config.logLevel)
  const master = await startMaster(config, { logger: log })
  const stop = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'stopping')
    master.close().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'close failed')
      process.exit(1)
    })
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}
