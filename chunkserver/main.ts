// `granary chunkserver [flags]`: the process. Start-up order matters and is listed here:
//   1. config (checked once)   2. secret (tokens cannot be checked without it)   3. store: server id, term,
//   scan of the chunk folders (nothing is served before the index is complete)   4. listen (port 0 allowed)
//   5. the one 'ready' line (the supervisor and test harness wait for it)   6. heartbeats (they advertise the URL
//   learned in 4). Shutdown runs the other way: heartbeats, then the server, then the forwarding agent.
import { isLoopbackHost } from '../shared/auth.js'
import { watchLifeline } from '../shared/lifeline.js'
import { Agent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { loadCa, loadServerTls } from '../shared/tls.js'
import type { AddressInfo } from 'node:net'
import { advertisedUrl, configFromArgv, chunkserverDefaults, parseMasterList, resolveChunkserverConfig, type ChunkserverConfig } from '../shared/config.js'
import { createLogger, readyMessage, type Logger } from '../shared/log.js'
import { loadSecret } from '../shared/token.js'
import { connectionsPerOriginMax } from '../shared/limits.js'
import type { ServerId } from '../shared/ids.js'
import { ChunkStore } from './store.js'
import { buildChunkserverServer, keepAliveTimeoutMs } from './server.js'
import { Heartbeats } from './heartbeat.js'
import { ChunkReplicator } from './replicator.js'
import { Scrubber } from './scrubber.js'
import { Voter } from './voter.js'
import { ChunkserverMetrics } from './metrics.js'

export interface RunningChunkserver {
  url: string
  port: number
  serverId: ServerId
  close: () => Promise<void>
}

export interface StartOptions {
  log?: Logger                        // defaults to a pino logger on stdout at config.logLevel
  onFatal?: (err: Error) => void      // defaults to: log fatal, exit 70 (the supervisor restarts us)
}

const shutdownGraceMs = 5_000         // after a signal, exit even if some handle keeps the loop alive

export async function startChunkserver (config: ChunkserverConfig, options: StartOptions = {}): Promise<RunningChunkserver> {
  const log = options.log ?? createLogger('chunkserver', config.logLevel)
  const masters = parseMasterList(config.masters)
  const secret = loadSecret(config.secretFile, false)
  const tls = loadServerTls('chunkserver', config.tlsCert, config.tlsKey)
  const ca = loadCa('chunkserver', config.caFile)   // for every call this server makes: heartbeats, copies, next hops
  const store = await ChunkStore.open({ dataDir: config.dataDir, capacityBytes: config.capacityBytes, log: log.child({ component: 'store' }) })
  // `timeout` here is the idle timeout of free sockets; requests set their own (dataIdleTimeoutMs) in next-hop.ts.
  const agent = new Agent({ keepAlive: true, maxSockets: connectionsPerOriginMax, timeout: keepAliveTimeoutMs - 1000 })
  const tlsAgent = new HttpsAgent({ keepAlive: true, maxSockets: connectionsPerOriginMax, timeout: keepAliveTimeoutMs - 1000, ...(ca === undefined ? {} : { ca }) })
  let url = ''
  const onFatal = options.onFatal ?? ((err: Error) => {
    log.fatal({ err }, 'assertion failed')
    process.exit(70)
  })
  const later: { heartbeats?: Heartbeats } = {}   // votes may come before the heartbeat loops exist
  const voter = await Voter.open({ store, leaseMs: config.leaseMs, secret, onVoted: (url, term) => { later.heartbeats?.addMaster(url, term) }, log: log.child({ component: 'voter' }) })
  const metrics = new ChunkserverMetrics()
  const app = buildChunkserverServer({ store, secret, auth: config.auth === 'on', loopbackOnly: isLoopbackHost(config.host), operatorKey: (id, secret) => later.heartbeats?.operatorKey(id, secret) ?? null, agent, tlsAgent, tls, url: () => url, syncEveryBytes: config.syncEveryBytes, log, onFatal, voter, metrics })
  await app.listen({ host: config.host.replace(/^\[|\]$/g, ''), port: config.port })
  const port = (app.server.address() as AddressInfo).port
  url = advertisedUrl(config.host, port, config.advertiseUrl, tls !== null)
  log.info({ port, url, serverId: store.serverId }, readyMessage)
  // onCopied reaches `heartbeats` only after a copy, and copies come from heartbeat replies: it exists by then.
  const replicator = new ChunkReplicator({
    store, syncEveryBytes: config.syncEveryBytes, log: log.child({ component: 'replicator' }), onCopied: () => { heartbeats.beatSoon() }, ca
  })
  const heartbeats = new Heartbeats({
    store, secret, masters, intervalMs: config.heartbeatIntervalMs, url: () => url, log: log.child({ component: 'heartbeat' }),
    onReplicate: (command) => { replicator.enqueue(command) }, voter, ca
  })
  later.heartbeats = heartbeats
  heartbeats.start()
  const scrubber = new Scrubber({ store, log: log.child({ component: 'scrubber' }), bytesPerSecond: config.scrubBytesPerSecond, passGapMs: config.scrubPassGapMs })
  scrubber.start()
  metrics.bind({ store, replicator, scrubber })
  let closing: Promise<void> | null = null
  const close = async (): Promise<void> => {
    closing ??= (async () => {
      await heartbeats.stop()
      await scrubber.stop()
      await replicator.stop()
      await app.close()
      agent.destroy()
      tlsAgent.destroy()
    })()
    await closing
  }
  return { url, port, serverId: store.serverId, close }
}

// Every chunk write holds libuv's thread pool for its open, writes, fsync, close, rename and folder fsync; with
// the default 4 threads, 16 small writes in flight queue behind each other's fsyncs. Set before the pool's first
// use (it is created lazily); an operator's own UV_THREADPOOL_SIZE wins.
const chunkserverThreadPoolSize = 16

export async function runChunkserver (argv: string[]): Promise<void> {
  process.env.UV_THREADPOOL_SIZE ??= String(chunkserverThreadPoolSize)
  const config = resolveChunkserverConfig(configFromArgv('chunkserver', chunkserverDefaults, argv))
  const running = await startChunkserver(config)
  const onSignal = (): void => {
    setTimeout(() => process.exit(0), shutdownGraceMs).unref()
    running.close().then(() => { process.exitCode = 0 }, () => { process.exit(1) })
    process.off('SIGTERM', onSignal)
    process.off('SIGINT', onSignal)
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  watchLifeline(onSignal)   // spawned by granary up or the test kit: exit when the parent is gone
}
