// What an operator can change. One defaults literal per process (pino's defaultOptions), checked once at
// start-up with precise messages (undici's constructor checks). Unknown keys are refused; relations are
// asserted. docs/CONFIG.md lists every option. Flags use the same words in kebab-case (--heartbeat-interval-ms).
import { GranaryError } from './errors.js'
import * as limits from './limits.js'
import { isLoopbackHost } from './auth.js'
import { checkTlsFiles } from './tls.js'

export const masterDefaults = {
  host: '127.0.0.1',                              // the address to bind; a wildcard (0.0.0.0, ::) needs advertiseUrl
  port: 9000,                                     // 0 = any free port (logged in the ready line)
  advertiseUrl: '',                               // the URL others are told to use; '' = http://HOST:PORT (https:// with TLS)
  // TLS (shared/tls.ts): both or neither; with them the server speaks only https. caFile: the CA this server
  // trusts when it calls other servers (shadow → master, votes, hand-over); '' = the system's CAs.
  tlsCert: '',
  tlsKey: '',
  caFile: '',
  dataDir: 'granary-data/master',
  secretFile: 'granary-data/secret',
  createSecret: false,                            // make the secret file if missing (granary up does)
  // Every control-plane request signed (shared/auth.ts): chunkservers and shadows with the cluster secret, clients
  // with an access key. 'off' only on a server bound to loopback (tests, demos); elsewhere refused at start.
  auth: 'on' as 'on' | 'off',
  // A master on an empty data folder makes an admin access key and writes it here (mode 0600); if the file exists
  // already (a test kit, an operator's pre-made key), that key is imported instead. '' = DATA_DIR/credentials.
  credentialsFile: '',
  syncMode: 'normal' as 'normal' | 'full',        // SQLite synchronous: normal survives kill -9, full also power loss
  heartbeatIntervalMs: 250,                       // told to chunkservers; each reply renews the master lease
  leaseMs: limits.leaseMsDefault,                 // the master lease (shared/failover.ts); chunkservers must use the same
  autoPromote: true,                              // a shadow: stand for election when the master's lease lapses
  // Silence before a chunkserver counts as dead and its chunks are copied. 6 s = 6 heartbeats: it rides out one
  // lost heartbeat exchange (the chunkserver gives one up after 3 s and retries at once, a ~4 s gap) plus ~2 s
  // of stall (the worst gap measured on a loaded 2-core box during a 1 GiB write was 1.9 s), and a chunkserver
  // restarted by a supervisor is usually back before it. A false death costs copies bounded per server
  // (replicationsAssignedPerServerMax) that are trimmed when it returns; a long timeout costs time at reduced
  // redundancy for every real one. HDFS waits 10.5 min (heartbeats every 3 s) because its nodes hold tens of TB
  // and most outages are reboots; see docs/OPERATIONS.md.
  deadAfterMs: 6_000,
  leaseTtlMs: 60_000,                             // writer lease; renewed by every allocate/commit/renew
  tokenTtlMs: 10 * 60_000,                        // chunk tokens
  tickIntervalMs: 500,                            // background work (lease expiry, oplog trim, trash purge)
  trashRetentionMs: 24 * 60 * 60_000,             // a deleted entry stays restorable in /.trash this long; 0 = no trash
  logLevel: 'info' as 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent',
}
export type MasterConfig = typeof masterDefaults

// `granary shadow`: the master's code following a master's oplog (master/shadow.ts). Every master option,
// plus where the master is. The data folder holds the shadow's own copy of master.db.
export const shadowDefaults = {
  ...masterDefaults,
  port: 9001,
  dataDir: 'granary-data/shadow',
  master: 'http://127.0.0.1:9000',                // the master to follow (one URL)
  pollWaitMs: 1000,                               // a long poll parks this long at the master when nothing is new
  promote: false,                                 // promote this shadow to master once it has caught up
  force: false,                                   // with promote: promote even if not caught up (what it lacks is lost)
}
export type ShadowConfig = typeof shadowDefaults

export const chunkserverDefaults = {
  host: '127.0.0.1',                              // the address to bind; a wildcard (0.0.0.0, ::) needs advertiseUrl
  port: 0,
  advertiseUrl: '',                               // the URL clients and peers are told to use; '' = http://HOST:PORT (https:// with TLS)
  // TLS, as the master's. caFile: trusted for heartbeats, copies and pipeline forwarding; '' = the system's CAs.
  tlsCert: '',
  tlsKey: '',
  caFile: '',
  dataDir: 'granary-data/cs0',
  secretFile: 'granary-data/secret',
  auth: 'on' as 'on' | 'off',                     // as the master's: 'off' only bound to loopback
  masters: 'http://127.0.0.1:9000',               // comma-separated master (and shadow) URLs
  heartbeatIntervalMs: 250,
  leaseMs: limits.leaseMsDefault,                 // promised to the master with each echoed reply; no vote before it lapses
  capacityBytes: 0,                               // 0 = the file system's free space
  syncEveryBytes: limits.syncEveryBytesDefault,   // fdatasync while streaming a chunk
  scrubBytesPerSecond: 8 * limits.MiB,            // background scrubber read rate (chunkserver/scrubber.ts); 0 = off
  scrubPassGapMs: 60_000,                         // pause between two scrubber passes over every chunk
  logLevel: 'info' as MasterConfig['logLevel'],
}
export type ChunkserverConfig = typeof chunkserverDefaults

export const clientDefaults = {
  masters: 'http://127.0.0.1:9000',               // comma-separated; first is the master, the rest shadows
  deadlineMs: 10_000,                             // every operation's whole budget, retries included
  requestTimeoutMs: 5_000,                        // one HTTP exchange with the master (reads) or a chunkserver
  // One mutation's exchange with a master: a master frozen this long has lost its lease (1 s) and a shadow is
  // taking over, so the retry goes to the next URL (same request id: a slow master's reply is not applied twice).
  mutationTimeoutMs: 1_500,
  retryDelayMsMin: 25,
  retryDelayMsMax: 250,                           // a failover is ~1-2 s of refusals: retry often enough to see its end
  replication: limits.replicationDefault,
  chunkSizeBytes: limits.chunkSizeBytesDefault,
  keepAliveTimeoutMs: 4_000,                      // idle pooled connections close after this (tests use ~10)
  staleReads: false,                              // accept a shadow's reads however long it has not heard from its master
  batching: true,                                 // calls to one server that queue up travel in one request (client/batch.ts)
  reserveFiles: true,                             // writeFile of bytes that fit one chunk uses a file reserved ahead: one master call (client/reservations.ts)
  caFile: '',                                     // PEM CA trusted for https:// masters and chunkservers; '' = $GRANARY_CA_FILE or the system's CAs
}
export type ClientConfig = typeof clientDefaults

const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

// Merges `given` over `defaults`, refusing unknown keys and values of the wrong type; numbers must be
// non-negative integers. Strings given for number options (from flags or env) are parsed.
export function resolveConfig<T extends Record<string, unknown>> (what: string, defaults: T, given: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...defaults }
  for (const [key, raw] of Object.entries(given)) {
    if (raw === undefined) continue
    if (!Object.hasOwn(defaults, key)) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown ${what} option '${key}' (known: ${Object.keys(defaults).join(', ')})`])
    }
    const want = typeof defaults[key]
    let value: unknown = raw
    if (want === 'number' && typeof raw === 'string' && /^\d+$/.test(raw)) value = Number(raw)
    if (want === 'boolean' && typeof raw === 'string' && (raw === 'true' || raw === 'false')) value = raw === 'true'
    if (typeof value !== want) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} option '${key}' must be a ${want}, got ${JSON.stringify(raw)}`])
    if (want === 'number' && (!Number.isSafeInteger(value) || (value as number) < 0)) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} option '${key}' must be a non-negative integer, got ${JSON.stringify(raw)}`])
    }
    out[key] = value
  }
  if ('logLevel' in out && !logLevels.includes(out.logLevel as string)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} option 'logLevel' must be one of ${logLevels.join(', ')}`])
  }
  return out as T
}

export function resolveMasterConfig (given: Record<string, unknown>): MasterConfig {
  const config = resolveConfig('master', masterDefaults, given)
  if (config.syncMode !== 'normal' && config.syncMode !== 'full') throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'syncMode' must be 'normal' or 'full'"])
  if (config.port > 65535) throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'port' must be at most 65535"])
  checkTlsFiles('master', config.tlsCert, config.tlsKey, config.caFile)
  checkAddress('master', config.host, config.advertiseUrl, config.tlsCert !== '')
  checkAuth('master', config.auth, config.host)
  if (config.heartbeatIntervalMs < 10) throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'heartbeatIntervalMs' must be at least 10"])
  if (config.deadAfterMs < 3 * config.heartbeatIntervalMs) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`master option 'deadAfterMs' (${config.deadAfterMs}) must be at least 3 × heartbeatIntervalMs (${3 * config.heartbeatIntervalMs})`])
  }
  if (config.leaseMs < limits.leaseMsMin) throw new GranaryError('GRN_INVALID_ARGUMENT', [`master option 'leaseMs' must be at least ${limits.leaseMsMin}`])
  if (config.leaseTtlMs < 1000) throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'leaseTtlMs' must be at least 1000"])
  if (config.tokenTtlMs < 1000) throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'tokenTtlMs' must be at least 1000"])
  if (config.tickIntervalMs < 10) throw new GranaryError('GRN_INVALID_ARGUMENT', ["master option 'tickIntervalMs' must be at least 10"])
  if (!Number.isSafeInteger(config.trashRetentionMs) || config.trashRetentionMs < 0 || config.trashRetentionMs > limits.trashRetentionMsMax) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`master option 'trashRetentionMs' must be 0 (no trash) up to ${limits.trashRetentionMsMax} (10 years)`])
  }
  return config
}

export function resolveShadowConfig (given: Record<string, unknown>): ShadowConfig {
  const config = resolveConfig('shadow', shadowDefaults, given)
  const { master, pollWaitMs, promote, force, ...masterPart } = config
  resolveMasterConfig(masterPart)   // every master check holds for a shadow too
  if (parseMasterList(master).length !== 1) throw new GranaryError('GRN_INVALID_ARGUMENT', ["shadow option 'master' must be one URL"])
  if (pollWaitMs < 1 || pollWaitMs > limits.oplogPollWaitMsMax) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`shadow option 'pollWaitMs' must be 1..${limits.oplogPollWaitMsMax}`])
  }
  if (force && !promote) throw new GranaryError('GRN_INVALID_ARGUMENT', ["shadow option 'force' only applies with 'promote'"])
  return { ...config, master: parseMasterList(master)[0] as string }
}

export function resolveChunkserverConfig (given: Record<string, unknown>): ChunkserverConfig {
  const config = resolveConfig('chunkserver', chunkserverDefaults, given)
  if (config.port > 65535) throw new GranaryError('GRN_INVALID_ARGUMENT', ["chunkserver option 'port' must be at most 65535"])
  checkTlsFiles('chunkserver', config.tlsCert, config.tlsKey, config.caFile)
  checkAddress('chunkserver', config.host, config.advertiseUrl, config.tlsCert !== '')
  checkAuth('chunkserver', config.auth, config.host)
  if (config.heartbeatIntervalMs < 10) throw new GranaryError('GRN_INVALID_ARGUMENT', ["chunkserver option 'heartbeatIntervalMs' must be at least 10"])
  if (config.syncEveryBytes % limits.blockSizeBytes !== 0 || config.syncEveryBytes === 0) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunkserver option 'syncEveryBytes' must be a positive multiple of ${limits.blockSizeBytes}`])
  }
  parseMasterList(config.masters)
  return config
}

export function resolveClientConfig (given: Record<string, unknown>): ClientConfig {
  const config = resolveConfig('client', clientDefaults, given)
  parseMasterList(config.masters)
  if (config.caFile !== '') checkTlsFiles('client', '', '', config.caFile)
  if (config.replication < limits.replicationMin || config.replication > limits.replicationMax) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`client option 'replication' must be ${limits.replicationMin}..${limits.replicationMax}`])
  }
  checkChunkSize(config.chunkSizeBytes)
  if (config.retryDelayMsMin > config.retryDelayMsMax) throw new GranaryError('GRN_INVALID_ARGUMENT', ["client option 'retryDelayMsMin' must not exceed 'retryDelayMsMax'"])
  if (config.mutationTimeoutMs < 1) throw new GranaryError('GRN_INVALID_ARGUMENT', ["client option 'mutationTimeoutMs' must be positive"])
  if (config.deadlineMs < 1) throw new GranaryError('GRN_INVALID_ARGUMENT', ["client option 'deadlineMs' must be positive"])
  return config
}

export function checkChunkSize (chunkSizeBytes: number): void {
  if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < limits.chunkSizeBytesMin || chunkSizeBytes > limits.chunkSizeBytesMax ||
      chunkSizeBytes % limits.blockSizeBytes !== 0) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunkSizeBytes must be a multiple of ${limits.blockSizeBytes} between ${limits.chunkSizeBytesMin} and ${limits.chunkSizeBytesMax}, got ${chunkSizeBytes}`])
  }
}

// Authentication may be off only where nobody else can connect: a server bound to a loopback address.
export function checkAuth (what: string, auth: string, host: string): void {
  if (auth !== 'on' && auth !== 'off') throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} --auth must be 'on' or 'off', got ${JSON.stringify(auth)}`])
  if (auth === 'off' && !isLoopbackHost(host)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} --auth off is refused on --host ${host}: only a server bound to a loopback address (127.0.0.1, ::1) may run without authentication`])
  }
}

// ---- addresses: what a server binds (host) and what others are told (advertiseUrl) -------------------------
// A server bound to a wildcard would otherwise tell the master, and through it every client, to connect to
// 0.0.0.0 (the WebHDFS ecosystem's most common failure: redirects to an address the client cannot reach).
const wildcardHosts = new Set(['0.0.0.0', '::', '[::]', '::0', '0:0:0:0:0:0:0:0'])
const unroutableHosts = new Set([...wildcardHosts, '255.255.255.255'])

function isWildcard (host: string): boolean {
  return wildcardHosts.has(host.toLowerCase())
}

// Refuses at start-up, naming the flag: a host that is not an address, a wildcard bind with nothing to
// advertise, an advertised URL others cannot use (not http(s), credentials, a path, a wildcard, port 0), or
// one whose scheme is not what the server speaks (https:// exactly when --tls-cert is given).
export function checkAddress (what: string, host: string, advertiseUrl: string, tls = false): void {
  if (host.trim() === '' || /[\s/]/.test(host)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} --host must be an address to bind (e.g. 127.0.0.1, 0.0.0.0, ::1), got ${JSON.stringify(host)}`])
  if (advertiseUrl === '') {
    if (isWildcard(host)) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} --host ${host} binds every address, so it cannot say which one others should use: give --advertise-url ${tls ? 'https' : 'http'}://ADDRESS:PORT (an address clients and the other servers reach)`])
    }
    return
  }
  advertisedOrigin(what, advertiseUrl, tls)
}

function advertisedOrigin (what: string, advertiseUrl: string, tls: boolean): string {
  const refuse = (why: string): never => { throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} --advertise-url ${JSON.stringify(advertiseUrl)} ${why}`]) }
  let parsed: URL
  try { parsed = new URL(advertiseUrl) } catch { return refuse(`is not a URL (want ${tls ? 'https' : 'http'}://ADDRESS:PORT; a port must be 1..65535)`) }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') refuse('must use http: or https:')
  if (parsed.protocol === 'https:' && !tls) refuse('is https: but this server has no TLS: give --tls-cert and --tls-key, or advertise http:')
  if (parsed.protocol === 'http:' && tls) refuse('is http: but this server speaks TLS (--tls-cert): advertise https:')
  if (parsed.username !== '' || parsed.password !== '') refuse('must not carry credentials')
  if (parsed.pathname !== '/' || /[?#]/.test(advertiseUrl)) refuse('must be an origin only: no path, query or fragment')
  const hostname = parsed.hostname.replace(/^\[|\]$/g, '')
  if (unroutableHosts.has(hostname) || unroutableHosts.has(parsed.hostname)) refuse('names an address nobody can connect to (a wildcard or broadcast address)')
  if (parsed.port === '0') refuse('must name a port others can connect to, not 0')
  return parsed.origin
}

// The URL a server hands out: the advertised one when given, else http://HOST:PORT (https:// with TLS) with
// the bound port (IPv6 literals in brackets).
export function advertisedUrl (host: string, port: number, advertiseUrl: string, tls = false): string {
  if (advertiseUrl !== '') return advertisedOrigin('server', advertiseUrl, tls)
  const bare = host.replace(/^\[|\]$/g, '')
  return `${tls ? 'https' : 'http'}://${bare.includes(':') ? `[${bare}]` : bare}:${port}`
}

// 'http://a:1,https://b:2' → ['http://a:1', 'https://b:2'], each checked to be an http(s) URL; only the origin is kept.
export function parseMasterList (masters: string | readonly string[]): string[] {
  const list = (typeof masters === 'string' ? masters.split(',') : [...masters]).map((s) => s.trim()).filter((s) => s.length > 0)
  if (list.length === 0) throw new GranaryError('GRN_INVALID_ARGUMENT', ['no master URL given'])
  if (list.length > 8) throw new GranaryError('GRN_INVALID_ARGUMENT', ['more than 8 master URLs given'])
  return list.map((url) => {
    let parsed: URL
    try { parsed = new URL(url) } catch { throw new GranaryError('GRN_INVALID_ARGUMENT', [`master URL ${JSON.stringify(url)} is not a URL`]) }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new GranaryError('GRN_INVALID_ARGUMENT', [`master URL ${url} must use http: or https:`])
    return parsed.origin
  })
}

// Turns '--heartbeat-interval-ms 100 --sync-mode=full' into { heartbeatIntervalMs: '100', syncMode: 'full' }
// for the keys of `defaults`; an unknown flag is refused with the list of known ones. Boolean options take
// no value (--create-secret) and --no-NAME turns one off. resolveConfig then checks types.
export function configFromArgv (what: string, defaults: Record<string, unknown>, argv: readonly string[]): Record<string, unknown> {
  const byFlag = new Map(Object.keys(defaults).map((key) => [kebab(key), key]))
  const out: Record<string, unknown> = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (!arg.startsWith('--')) throw new GranaryError('GRN_INVALID_ARGUMENT', [`unexpected argument '${arg}' for ${what}`])
    const eq = arg.indexOf('=')
    const flag = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    // --no-FLAG turns a boolean option off (--no-auto-promote).
    const negated = eq === -1 && flag.startsWith('no-') ? byFlag.get(flag.slice(3)) : undefined
    if (negated !== undefined && typeof defaults[negated] === 'boolean') { out[negated] = false; continue }
    const key = byFlag.get(flag)
    if (key === undefined) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown ${what} flag --${flag} (known: ${[...byFlag.keys()].map((f) => `--${f}`).join(' ')})`])
    }
    if (typeof defaults[key] === 'boolean' && eq === -1) { out[key] = true; continue }
    const value = eq === -1 ? argv[++i] : arg.slice(eq + 1)
    if (value === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} flag --${flag} needs a value`])
    out[key] = value
  }
  return out
}

export function kebab (key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}
