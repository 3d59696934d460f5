// granary/testing: start a real Granary cluster inside a test and kill, hang or restart any part of it.
// The same kit runs Granary's own cluster tests, so it is exercised on every CI run.
//
//   import { startCluster } from 'granary/testing'
//   const cluster = await startCluster({ chunkservers: 3, test: t })    // tap's t or node:test's t
//   const fs = cluster.client()
//   await cluster.master.kill()                                          // SIGKILL by pid
//   await cluster.master.start()                                         // same data folder, same port
//
// Real processes on 127.0.0.1 with free ports, each with its own data folder and log file under one temp
// folder; readiness is each process's {"msg":"ready"} log line, awaited with a deadline (no sleeps). stop()
// kills every process by pid and removes the folder unless the test failed or GRANARY_KEEP_TEST_DIRS=1.
// A forgotten stop() cannot leave processes behind: they are killed when the test process exits, and each
// one also exits by itself when its parent's lifeline pipe closes (even if the test process was SIGKILLed).
import { mkdtempSync, mkdirSync, rmSync, readdirSync, openSync, readSync, writeSync, closeSync, existsSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { NamespaceNetwork } from './netns.js'
import { spawnRole, formatLogTail, isAlive, type ProcessRole, type SpawnedRole } from '../shared/process.js'
import { GranaryError } from '../shared/errors.js'
import { randomBytes } from 'node:crypto'
import { connect, type GranaryClient } from '../client/index.js'
import { reportPath, type ClusterReport } from '../shared/protocol.js'
import { newCredentials, signClient, type Credentials } from '../shared/auth.js'
import { readCredentialsFile } from '../client/credentials.js'

export interface TestContextLike {
  teardown?: (fn: () => unknown) => void   // tap
  after?: (fn: () => unknown) => void      // node:test
  passing?: () => boolean                  // tap: keep the folders of a failed test
}

// One chunkserver's own flags, after chunkserverArgs (e.g. a small --capacity-bytes for a disk-full test).
export interface ChunkserverSpec { args?: string[] }

export const startClusterDefaults = {
  chunkservers: 3 as number | ChunkserverSpec[],
  shadow: false,
  // Hosts: 0 = every process on 127.0.0.1. N = N hosts (host0 = 127.0.0.2, host1 = 127.0.0.3, ...) and the
  // processes placed round-robin in the order master, shadow, chunkserver0, chunkserver1, ... An array names
  // each host's processes: [['master'], ['shadow'], ['chunkserver0', 'chunkserver1'], ...]. Each process binds
  // its host's address and advertises it; cluster.host(name) kills, freezes or restarts a host as a unit.
  hosts: 0 as number | string[][],
  // 'namespaces': each host in a network namespace of its own (testing/netns.ts) so host.cut() can take its
  // link away, not just freeze it; needs root and `ip netns` (networkNamespacesUnavailable() says why not).
  network: 'loopback' as 'loopback' | 'namespaces',
  dataDir: '',                       // '' = a new folder under the OS temp dir
  chunkSizeBytes: 1024 * 1024,       // the client() default: small, so tests span many chunks
  replication: 3,
  heartbeatIntervalMs: 200,
  deadAfterMs: 2_000,
  leaseTtlMs: 60_000,
  readyTimeoutMs: 20_000,
  capacityBytes: 0,                  // per chunkserver; 0 = the disk's free space
  masterArgs: [] as string[],        // extra flags for `granary master`
  shadowArgs: [] as string[],        // extra flags for `granary shadow` (e.g. --no-auto-promote)
  chunkserverArgs: [] as string[],   // extra flags for every `granary chunkserver`
  // The CA of servers started with --tls-cert (in the *Args above): report() and client() trust it. '' = none.
  caFile: '',
  keepDirs: false,
  // 'on': every request signed (issue 12). The kit's admin key (kitCredentials(): $GRANARY_CREDENTIALS, made once
  // per test process when unset) is the master's first key, so connect() and spawned CLIs find it unchanged.
  auth: 'on' as 'on' | 'off',
  test: undefined as TestContextLike | undefined
}
export type StartClusterOptions = Partial<typeof startClusterDefaults>

// The admin key of every cluster this process starts: $GRANARY_CREDENTIALS when set (the caller's own key),
// else one made here and put in $GRANARY_CREDENTIALS, so connect() and spawned CLIs use it without being told.
let kitKey: ({ file: string } & Credentials) | null = null
export function kitCredentials (): { file: string } & Credentials {
  if (kitKey !== null) return kitKey
  const given = process.env.GRANARY_CREDENTIALS
  if (given !== undefined && given !== '') {
    kitKey = { file: given, ...readCredentialsFile(given) }
  } else {
    const folder = mkdtempSync(join(tmpdir(), 'granary-kit-key-'))
    const file = join(folder, 'credentials')
    const made = newCredentials()
    writeFileSync(file, JSON.stringify(made) + '\n', { mode: 0o600 })
    // An admin key does not outlive the process that made it (every test file made one and left it in tmpdir:
    // 1,048 of them on this machine). Its clusters are killed on exit too (installExitHook).
    process.once('exit', () => { rmSync(folder, { recursive: true, force: true }) })
    process.env.GRANARY_CREDENTIALS = file
    kitKey = { file, ...made }
  }
  return kitKey
}

const liveClusters = new Set<Cluster>()
let exitHookInstalled = false

export async function startCluster (options: StartClusterOptions = {}): Promise<Cluster> {
  const config = checkOptions(options)
  const cluster = new Cluster(config)
  liveClusters.add(cluster)
  installExitHook()
  config.test?.teardown?.(async () => await cluster.stop())
  if (config.test?.teardown === undefined) config.test?.after?.(async () => await cluster.stop())
  try {
    await cluster.start()
  } catch (err) {
    await cluster.stop({ keepDirs: true })
    throw err
  }
  return cluster
}

function checkOptions (options: StartClusterOptions): typeof startClusterDefaults {
  for (const key of Object.keys(options)) {
    if (!Object.hasOwn(startClusterDefaults, key)) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown startCluster option '${key}' (known: ${Object.keys(startClusterDefaults).join(', ')})`])
    }
  }
  const config = { ...startClusterDefaults, ...options }
  const chunkserverCount = Array.isArray(config.chunkservers) ? config.chunkservers.length : config.chunkservers
  const counts: Array<[string, number, number, number]> = [
    ['chunkservers', chunkserverCount, 1, 32], ['replication', config.replication, 1, 8],
    ['heartbeatIntervalMs', config.heartbeatIntervalMs, 10, 60_000], ['deadAfterMs', config.deadAfterMs, 30, 3_600_000],
    ['readyTimeoutMs', config.readyTimeoutMs, 100, 600_000], ['leaseTtlMs', config.leaseTtlMs, 1000, 3_600_000]
  ]
  for (const [name, value, min, max] of counts) {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option '${name}' must be an integer from ${min} to ${max}, got ${String(value)}`])
    }
  }
  if (config.deadAfterMs < 3 * config.heartbeatIntervalMs) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'deadAfterMs' must be at least 3 × heartbeatIntervalMs`])
  }
  if (typeof config.hosts === 'number' && (!Number.isInteger(config.hosts) || config.hosts < 0 || config.hosts > hostsMax)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'hosts' must be 0 (all on 127.0.0.1) to ${hostsMax}, or a list of process names per host`])
  }
  if (config.network !== 'loopback' && config.network !== 'namespaces') {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'network' must be 'loopback' or 'namespaces', got ${String(config.network)}`])
  }
  if (config.network === 'namespaces' && config.hosts === 0) throw new GranaryError('GRN_INVALID_ARGUMENT', ["startCluster option network: 'namespaces' needs hosts"])
  if (Array.isArray(config.hosts) && (config.hosts.length < 1 || config.hosts.length > hostsMax)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'hosts' lists ${config.hosts.length} hosts; 1 to ${hostsMax} are allowed`])
  }
  return config
}

const hostsMax = 250                 // 127.0.0.2 .. 127.0.0.251

// Which host each process runs on: process name → host index. Every process is placed exactly once.
function placeProcesses (hosts: number | string[][], names: readonly string[]): Map<string, number> {
  const placed = new Map<string, number>()
  if (typeof hosts === 'number') {
    if (hosts > 0) names.forEach((name, i) => placed.set(name, i % hosts))
    return placed
  }
  hosts.forEach((members, index) => {
    for (const name of members) {
      if (!names.includes(name)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'hosts' names '${name}', which is not a process of this cluster (${names.join(', ')})`])
      if (placed.has(name)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'hosts' places '${name}' on two hosts`])
      placed.set(name, index)
    }
  })
  const missing = names.filter((name) => !placed.has(name))
  if (missing.length > 0) throw new GranaryError('GRN_INVALID_ARGUMENT', [`startCluster option 'hosts' places no host for ${missing.join(', ')}`])
  return placed
}

interface HostNetwork { net: NamespaceNetwork, index: number, hostIndexOf: (host: ClusterHost) => number }

// A "host": its loopback address and the processes on it, handled as one machine.
export class ClusterHost {
  readonly name: string
  readonly address: string
  readonly processes: ClusterProcess[]
  readonly #network: HostNetwork | null

  constructor (name: string, address: string, processes: ClusterProcess[], network: HostNetwork | null = null) {
    this.name = name
    this.address = address
    this.processes = processes
    this.#network = network
  }

  // A cut link (network: 'namespaces' only): from everyone, or from the hosts listed only (a partial partition:
  // the rest, and the test process, still reach it). The processes keep running and keep their clocks.
  cut (from?: ClusterHost[]): void {
    const network = this.#needsNetwork('cut')
    network.net.cut(network.index, from?.map((host) => network.hostIndexOf(host)))
  }

  heal (): void {
    const network = this.#needsNetwork('heal')
    network.net.heal(network.index)
  }

  #needsNetwork (what: string): HostNetwork {
    if (this.#network === null) throw new GranaryError('GRN_INVALID_ARGUMENT', [`host.${what}() needs startCluster({ network: 'namespaces' })`])
    return this.#network
  }

  // Host death: SIGKILL every process of this host, nothing restarts them.
  async kill (): Promise<void> {
    await Promise.all(this.processes.filter((p) => p.alive).map(async (p) => await p.kill('SIGKILL')))
  }

  // A hung host: SIGSTOP every process (sockets stay open, nothing answers), and SIGCONT to thaw.
  freeze (): void {
    for (const p of this.processes) if (p.alive && !p.hung) p.hang()
  }

  thaw (): void {
    for (const p of this.processes) if (p.alive && p.hung) p.resume()
  }

  // A reboot: kill what runs, then start every process again on its data folder and port.
  async restart (): Promise<void> {
    await this.kill()
    for (const p of this.processes) await p.start()
  }
}

function installExitHook (): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const cluster of liveClusters) cluster.killAllSync()
  })
}

export class ClusterProcess {
  readonly name: string
  readonly role: ProcessRole
  readonly dataDir: string
  readonly logPath: string
  #args: () => string[]
  #readyTimeoutMs: number
  #spawned: SpawnedRole | undefined
  #port = 0
  #url = ''
  #hung = false
  #host: string | null = null
  #netns: string | undefined

  constructor (name: string, role: ProcessRole, dataDir: string, logPath: string, args: () => string[], readyTimeoutMs: number) {
    this.name = name
    this.role = role
    this.dataDir = dataDir
    this.logPath = logPath
    this.#args = args
    this.#readyTimeoutMs = readyTimeoutMs
  }

  get pid (): number { return this.#spawned?.pid ?? 0 }
  get url (): string { return this.#url }
  get port (): number { return this.#port }
  get serverId (): string | undefined { return this.#spawned?.ready.serverId }
  get alive (): boolean { return this.#spawned !== undefined && this.#spawned.child.exitCode === null && this.#spawned.child.signalCode === null }
  get hung (): boolean { return this.#hung }

  get host (): string { return this.#host ?? '127.0.0.1' }

  // Runs the process on a host's address (bound and advertised); before the first start.
  bindTo (address: string, netns?: string): void {
    if (this.#spawned !== undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} has started; its host is fixed`])
    this.#host = address
    this.#netns = netns
  }

  // Starts the process (again): the same data folder, and after the first start the same port.
  async start (): Promise<void> {
    if (this.alive) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is already running (pid ${this.pid})`])
    const args = this.startArgs
    this.#spawned = await spawnRole({ role: this.role, args, logPath: this.logPath, readyTimeoutMs: this.#readyTimeoutMs, netns: this.#netns })
    this.#port = this.#spawned.ready.port
    this.#url = this.#spawned.ready.url
    this.#hung = false
  }

  // The arguments start() runs the process with (a supervisor's warm spare is started with the same ones).
  get startArgs (): string[] {
    return ['--data-dir', this.dataDir, '--port', String(this.#port), ...(this.#host === null ? [] : ['--host', this.#host]), ...this.#args()]
  }

  // Takes over a process started elsewhere as this one: testing/supervise.ts's warm spare, once activated.
  adopt (spawned: SpawnedRole): void {
    if (this.alive) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is already running (pid ${this.pid})`])
    this.#spawned = spawned
    this.#port = spawned.ready.port
    this.#url = spawned.ready.url
    this.#hung = false
  }

  // Sends a signal by pid and, for killing signals, waits until the process is gone.
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const spawned = this.#spawned
    if (spawned === undefined || !this.alive) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is not running; it cannot be killed`])
    if (this.#hung && signal !== 'SIGKILL') process.kill(spawned.pid, 'SIGCONT')
    process.kill(spawned.pid, signal)
    await spawned.exited
    this.#hung = false
  }

  // SIGSTOP: the process stays, its sockets stay open, it answers nothing — a hung server, not a dead one.
  hang (): void {
    if (!this.alive) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is not running; it cannot hang`])
    if (this.#hung) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is already hung`])
    process.kill(this.pid, 'SIGSTOP')
    this.#hung = true
  }

  resume (): void {
    if (!this.alive || !this.#hung) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${this.name} is not hung; nothing to resume`])
    process.kill(this.pid, 'SIGCONT')
    this.#hung = false
  }

  // Kill (SIGKILL) if running, then start again on the same data folder and port.
  async restart (): Promise<void> {
    if (this.alive) await this.kill('SIGKILL')
    await this.start()
  }

  killSync (): void {
    if (this.#spawned !== undefined && isAlive(this.#spawned.pid) && this.alive) {
      try { process.kill(this.#spawned.pid, 'SIGKILL') } catch {}
    }
  }

  async waitExited (): Promise<void> { await this.#spawned?.exited }
}

export class Cluster {
  readonly dir: string
  readonly master: ClusterProcess
  readonly chunkservers: ClusterProcess[]
  readonly shadow: ClusterProcess | undefined
  readonly secretFile: string
  readonly credentials: { file: string } & Credentials   // the admin key every cluster of this test process starts with
  readonly hosts: ClusterHost[]
  readonly #config: typeof startClusterDefaults
  readonly #clients: GranaryClient[] = []
  #reportAgent: Agent | undefined
  #network: NamespaceNetwork | null = null
  #stopped = false

  constructor (config: typeof startClusterDefaults) {
    this.#config = config
    this.dir = config.dataDir !== '' ? config.dataDir : mkdtempSync(join(tmpdir(), 'granary-test-'))
    mkdirSync(join(this.dir, 'logs'), { recursive: true })
    this.secretFile = join(this.dir, 'secret')
    if (!existsSync(this.secretFile)) writeFileSync(this.secretFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 })
    const common = ['--secret-file', this.secretFile, '--heartbeat-interval-ms', String(config.heartbeatIntervalMs), '--auth', config.auth]
    this.credentials = kitCredentials()
    this.master = this.#process('master', 'master', () => [
      ...common, '--credentials-file', this.credentials.file, '--dead-after-ms', String(config.deadAfterMs), '--lease-ttl-ms', String(config.leaseTtlMs), ...config.masterArgs
    ])
    this.shadow = config.shadow
      ? this.#process('shadow', 'shadow', () => [...common, '--dead-after-ms', String(config.deadAfterMs), '--master', this.master.url, ...config.shadowArgs])
      : undefined
    const specs: ChunkserverSpec[] = Array.isArray(config.chunkservers) ? config.chunkservers : Array.from({ length: config.chunkservers }, () => ({}))
    this.chunkservers = specs.map((spec, i) => this.#process(`chunkserver${i}`, 'chunkserver', () => [
      ...common, '--masters', this.masters.join(','),
      ...(config.capacityBytes > 0 ? ['--capacity-bytes', String(config.capacityBytes)] : []), ...config.chunkserverArgs, ...(spec.args ?? [])
    ]))
    const all = [this.master, ...(this.shadow !== undefined ? [this.shadow] : []), ...this.chunkservers]
    const placed = placeProcesses(config.hosts, all.map((p) => p.name))
    const hostCount = typeof config.hosts === 'number' ? config.hosts : config.hosts.length
    if (config.network === 'namespaces') {
      const net = this.#network = new NamespaceNetwork(hostCount)
      const hostIndexOf = (host: ClusterHost): number => this.hosts.indexOf(host)
      this.hosts = net.hosts.map((h, i) => new ClusterHost(`host${i}`, h.address, all.filter((p) => placed.get(p.name) === i), { net, index: i, hostIndexOf }))
    } else {
      this.hosts = Array.from({ length: hostCount }, (_, i) => new ClusterHost(`host${i}`, `127.0.0.${i + 2}`, all.filter((p) => placed.get(p.name) === i)))
    }
    this.hosts.forEach((host, i) => { for (const p of host.processes) p.bindTo(host.address, this.#network?.host(i).namespace) })
  }

  #process (name: string, role: ProcessRole, args: () => string[]): ClusterProcess {
    return new ClusterProcess(name, role, join(this.dir, name), join(this.dir, 'logs', `${name}.log`), args, this.#config.readyTimeoutMs)
  }

  // The host named `name` (host0, host1, ...), or the host a process runs on.
  host (name: string | ClusterProcess): ClusterHost {
    const found = this.hosts.find((h) => typeof name === 'string' ? h.name === name : h.processes.includes(name))
    if (found === undefined) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`no host ${typeof name === 'string' ? name : `runs ${name.name}`} in this cluster (${this.hosts.length === 0 ? 'started without hosts' : this.hosts.map((h) => h.name).join(', ')})`])
    }
    return found
  }

  get processes (): ClusterProcess[] {
    return [this.master, ...(this.shadow !== undefined ? [this.shadow] : []), ...this.chunkservers]
  }

  // URLs for connect({ masters }): the master first, then the shadow.
  get masters (): string[] {
    return [this.master.url, ...(this.shadow !== undefined ? [this.shadow.url] : [])]
  }

  async start (): Promise<void> {
    this.#network?.create()
    await this.master.start()
    if (this.shadow !== undefined) await this.shadow.start()
    // allSettled: when one fails to start, the others have finished starting (and can be stopped) before the
    // failure reaches startCluster's stop(); else a chunkserver still starting would outlive the cluster.
    const started = await Promise.allSettled(this.chunkservers.map(async (cs) => await cs.start()))
    const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure !== undefined) throw failure.reason
    await this.waitForChunkservers(this.chunkservers.length)
    await this.waitForLease()
  }

  // Waits until the master holds its lease from a chunkserver majority: a master that has counted its
  // chunkservers may not yet have heard a majority echo its lease, and refuses mutations until it has.
  async waitForLease (timeoutMs = this.#config.readyTimeoutMs): Promise<void> {
    await this.waitFor(async () => {
      const report = await this.report().catch(() => undefined)
      return report !== undefined && report.role === 'master' && report.lease?.held === true
    }, { timeoutMs, what: 'the master\'s lease from a chunkserver majority' })
  }

  // A connected client; closed by stop().
  client (options: Record<string, unknown> = {}): GranaryClient {
    const client = connect({
      masters: this.masters, chunkSizeBytes: this.#config.chunkSizeBytes, replication: this.#config.replication, ...(this.#config.caFile === '' ? {} : { caFile: this.#config.caFile }), ...options
    })
    this.#clients.push(client)
    return client
  }

  async report (): Promise<ClusterReport> {
    if (this.#config.caFile !== '') this.#reportAgent ??= new Agent({ connect: { ca: readFileSync(this.#config.caFile) } })
    const response = await request(`${this.master.url}${reportPath}`, {
      headersTimeout: 5000, bodyTimeout: 5000, headers: signClient(this.credentials, 'GET', reportPath, null), ...(this.#reportAgent === undefined ? {} : { dispatcher: this.#reportAgent })
    })
    if (response.statusCode !== 200) { await response.body.dump(); throw new GranaryError('GRN_UNAVAILABLE', [this.master.url, `report answered ${response.statusCode}`]) }
    return await response.body.json() as ClusterReport
  }

  // Waits until the master counts `count` live chunkservers that have sent their full report.
  async waitForChunkservers (count = this.chunkservers.filter((cs) => cs.alive).length, timeoutMs = this.#config.readyTimeoutMs): Promise<void> {
    await this.waitFor(async () => {
      const report = await this.report().catch(() => undefined)
      return report !== undefined && report.servers.filter((s) => s.alive).length >= count
    }, { timeoutMs, what: `${count} live chunkservers` })
  }

  // Polls `predicate` until it returns true; on timeout the error carries the last 40 log lines of every process.
  async waitFor (predicate: () => boolean | Promise<boolean>, options: { timeoutMs?: number, intervalMs?: number, what?: string } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 10_000
    const intervalMs = options.intervalMs ?? 25
    const deadlineMs = Date.now() + timeoutMs
    while (true) {
      if (await predicate()) return
      if (Date.now() > deadlineMs) {
        throw new GranaryError('GRN_TIMEOUT', [options.what ?? 'waitFor', timeoutMs], undefined,
          `waitFor(${options.what ?? 'predicate'}) did not hold within ${timeoutMs} ms\n${this.logTails()}`)
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
  }

  logTails (): string {
    return this.processes.map((p) => formatLogTail(p.logPath)).join('\n')
  }

  // Every stored replica file of a chunk (or of all chunks) on chunkserver `serverIndex`.
  chunkFiles (serverIndex: number, chunkHandle?: string): string[] {
    const cs = this.chunkservers[serverIndex]
    if (cs === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`no chunkserver ${serverIndex}`])
    const root = join(cs.dataDir, 'chunks')
    if (!existsSync(root)) return []
    const files: string[] = []
    for (const sub of readdirSync(root)) {
      for (const name of readdirSync(join(root, sub))) {
        if (name.endsWith('.chunk') && (chunkHandle === undefined || name.startsWith(`${chunkHandle}_`))) files.push(join(root, sub, name))
      }
    }
    return files.sort()
  }

  // Flips one byte of a stored replica (data starts at byte 0 of a chunk file): bit rot on demand.
  corruptChunkReplica (options: { serverIndex: number, chunkHandle?: string, offsetBytes?: number }): string {
    const file = this.chunkFiles(options.serverIndex, options.chunkHandle)[0]
    if (file === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`chunkserver ${options.serverIndex} stores no chunk ${options.chunkHandle ?? ''}`])
    const offset = options.offsetBytes ?? 0
    const fd = openSync(file, 'r+')
    try {
      const byte = Buffer.alloc(1)
      if (readSync(fd, byte, 0, 1, offset) !== 1) throw new GranaryError('GRN_INVALID_ARGUMENT', [`offset ${offset} is past the end of ${file}`])
      byte[0] = (byte[0] as number) ^ 0xff
      writeSync(fd, byte, 0, 1, offset)
    } finally {
      closeSync(fd)
    }
    return file
  }

  async stop (options: { keepDirs?: boolean } = {}): Promise<void> {
    if (this.#stopped) return
    this.#stopped = true
    await Promise.allSettled(this.#clients.map(async (c) => await c.close()))
    await this.#reportAgent?.close()
    for (const p of this.processes) {
      if (p.hung) p.resume()
      p.killSync()
    }
    await Promise.all(this.processes.map(async (p) => await p.waitExited()))
    this.#network?.destroy()
    liveClusters.delete(this)
    const failed = this.#config.test?.passing !== undefined && !this.#config.test.passing()
    const keep = options.keepDirs === true || this.#config.keepDirs || failed || process.env.GRANARY_KEEP_TEST_DIRS === '1'
    if (!keep && this.#config.dataDir === '') rmSync(this.dir, { recursive: true, force: true })
  }

  async [Symbol.asyncDispose] (): Promise<void> { await this.stop() }

  killAllSync (): void {
    for (const p of this.processes) p.killSync()
    this.#network?.destroy()
  }
}

// undici's request, signed with the kit's admin key (shared/auth.ts) when its body is a string, a Buffer or
// absent: for tests that call a server's routes directly. Chunk routes ignore the signature (they check tokens).
export async function signedRequest (url: string | URL, options: Parameters<typeof request>[1] = {}, credentials: Credentials = kitCredentials()): ReturnType<typeof request> {
  const target = new URL(url)
  const body = (options as { body?: unknown }).body
  const signable = body === undefined || body === null || typeof body === 'string' || Buffer.isBuffer(body)
  const method = ((options as { method?: string }).method ?? 'GET').toUpperCase()
  const signature = signable ? signClient(credentials, method, target.pathname + target.search, (body ?? null) as string | Buffer | null) : {}
  return await request(url, { ...options, headers: { ...(options as { headers?: Record<string, string> }).headers, ...signature } } as Parameters<typeof request>[1])
}

// Part of granary/testing too (docs/TESTING.md): restart a process whenever it dies, as `granary up` does.
export { supervise, type Supervisor, type SuperviseOptions, type RestartRecord } from './supervise.js'
export { masterCallsDuring, type MasterCalls } from './master-calls.js'
