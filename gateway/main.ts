// `granary s3`: the S3 gateway process. A client of the store like any other (the public library, no
// privileged path into the master), so it scales by running more of them. Config, key pair, client, HTTP
// server, listen, one ready line ({"msg":"ready","port":…,"url":…}) like every other role.
import type { AddressInfo } from 'node:net'
import { advertisedUrl, checkAddress, configFromArgv, parseMasterList, resolveConfig } from '../shared/config.js'
import { GranaryError } from '../shared/errors.js'
import { createLogger, readyMessage, type Logger } from '../shared/log.js'
import { watchLifeline } from '../shared/lifeline.js'
import { connect, type GranaryClient } from '../client/index.js'
import { buildGateway } from './server.js'
import { StaticKeyResolver, type KeyResolver } from './sigv4.js'

export const gatewayDefaults = {
  host: '127.0.0.1',                   // the address to bind; a wildcard (0.0.0.0, ::) needs advertiseUrl
  port: 9300,                          // 0 = any free port (logged in the ready line)
  advertiseUrl: '',                    // the endpoint clients are told; '' = http://HOST:PORT
  masters: 'http://127.0.0.1:9000',    // comma-separated master (and shadow) URLs
  region: 'us-east-1',                 // what GetBucketLocation answers; signatures for any region are accepted
  accessKeyId: '',                     // the static key pair (or GRANARY_S3_ACCESS_KEY_ID / GRANARY_S3_SECRET_ACCESS_KEY)
  secretAccessKey: '',
  chunkSizeBytes: 0,                   // chunk size of the files the gateway writes; 0 = the client default
  replication: 0,                      // replication of the files the gateway writes; 0 = the client default
  corsOrigins: '*',                    // browser origins allowed (comma-separated), '*' any, '' none: every request is signed anyway
  logLevel: 'info' as 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent',
}
export type GatewayConfig = typeof gatewayDefaults

export function resolveGatewayConfig (given: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const config = resolveConfig('s3', gatewayDefaults, given)
  if (config.accessKeyId === '') config.accessKeyId = env.GRANARY_S3_ACCESS_KEY_ID ?? ''
  if (config.secretAccessKey === '') config.secretAccessKey = env.GRANARY_S3_SECRET_ACCESS_KEY ?? ''
  if (config.accessKeyId === '' || config.secretAccessKey === '') {
    throw new GranaryError('GRN_INVALID_ARGUMENT', ['s3 needs a key pair: --access-key-id and --secret-access-key (or GRANARY_S3_ACCESS_KEY_ID and GRANARY_S3_SECRET_ACCESS_KEY)'])
  }
  if (!/^[A-Za-z0-9]{3,128}$/.test(config.accessKeyId)) throw new GranaryError('GRN_INVALID_ARGUMENT', ['s3 --access-key-id must be 3-128 letters and digits'])
  if (config.secretAccessKey.length < 8) throw new GranaryError('GRN_INVALID_ARGUMENT', ['s3 --secret-access-key must be at least 8 characters'])
  if (config.port > 65535) throw new GranaryError('GRN_INVALID_ARGUMENT', ["s3 option 'port' must be at most 65535"])
  if (!/^[a-z0-9-]{1,32}$/.test(config.region)) throw new GranaryError('GRN_INVALID_ARGUMENT', ['s3 --region must be a region name like us-east-1'])
  checkAddress('s3', config.host, config.advertiseUrl)
  parseMasterList(config.masters)
  return config
}

export interface RunningGateway { url: string, port: number, client: GranaryClient, close: () => Promise<void> }

export interface GatewayOptions { logger?: Logger, resolver?: KeyResolver, now?: () => number }

export async function startGateway (config: GatewayConfig, options: GatewayOptions = {}): Promise<RunningGateway> {
  const log = options.logger ?? createLogger('s3', config.logLevel)
  const client = connect({
    masters: config.masters,
    ...(config.chunkSizeBytes > 0 ? { chunkSizeBytes: config.chunkSizeBytes } : {}),
    ...(config.replication > 0 ? { replication: config.replication } : {}),
    // A gateway serves many requests at once for a long time: the default per-call budget, pooled connections kept.
  })
  const resolver = options.resolver ?? new StaticKeyResolver(config.accessKeyId, config.secretAccessKey)
  const app = buildGateway({ client, resolver, region: config.region, logger: log, now: options.now, corsOrigins: config.corsOrigins })
  await app.listen({ host: config.host, port: config.port })
  const port = (app.server.address() as AddressInfo).port
  const url = advertisedUrl(config.host, port, config.advertiseUrl)
  log.info({ port, url, role: 's3', masters: config.masters, region: config.region }, readyMessage)
  return {
    url, port, client,
    close: async () => {
      await app.close()
      await client.close()
    }
  }
}

export async function runGateway (argv: string[]): Promise<void> {
  const config = resolveGatewayConfig(configFromArgv('s3', gatewayDefaults, argv))
  const log = createLogger('s3', config.logLevel)
  const gateway = await startGateway(config, { logger: log })
  const stop = (signal: NodeJS.Signals | 'lifeline'): void => {
    log.info({ signal }, 'stopping')
    gateway.close().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, 'close failed')
      process.exit(1)
    })
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  watchLifeline(() => stop('lifeline'))
}
