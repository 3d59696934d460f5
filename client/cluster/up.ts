// `granary up`: a whole local cluster (master, a shadow, N chunkservers) on 127.0.0.1 from one command, with an
// embedded default data folder, and a supervisor that restarts any part that dies — at once, with a bounded
// restart rate so a process that cannot start does not hot-loop. DATA/cluster.json always names the role,
// url, pid and log of every process (temp file + rename, so a reader never sees half of it).
import { credentialsFileName } from '../../shared/auth.js'
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync, renameSync, existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { setTimeout as delay } from 'node:timers/promises'
import { spawnRole, type ProcessRole, type SpawnedRole, type SpawnRoleOptions } from '../../shared/process.js'
import { loadSecret } from '../../shared/token.js'
import { GranaryError } from '../../shared/errors.js'
import { masterDefaults } from '../../shared/config.js'
import { SpareMaster, exitReason, lastErrorMessage } from './up-standby.js'

export const upUsage = `Usage: granary up [options]

Starts a local Granary cluster on 127.0.0.1 and supervises it until Ctrl-C (SIGINT) or SIGTERM:
a master, a shadow master (serves reads while the master is down; can be promoted) and N chunkservers,
each with its own data folder and log under DATA. A process that dies is
restarted at once (at most ${5} times in ${30} s each); the master from a warm spare, a second master
process kept loaded and waiting, so a restart is an open of the database (docs/OPERATIONS.md).
DATA/cluster.json lists every process (role, url, pid, state, last exit and why, log).

Options:
  --data DIR               data folder (default: ./granary-data)
  --port P                 master port (default: 9000); chunkservers take free ports
  --chunkservers N         number of chunkservers (default: 3)
  --shadows N              number of shadow masters (default: 1; 0 for none); they take the ports after the master's
  --restart-delay-ms MS    wait this long before restarting a dead process (default: 0; for outage tests)
  --heartbeat-interval-ms MS   chunkserver heartbeat interval (default: ${masterDefaults.heartbeatIntervalMs})
  --dead-after-ms MS       silence before a chunkserver counts as dead (default: ${masterDefaults.deadAfterMs})
  --s3-port P              the S3 gateway's port (default: 9300; another free one if taken). Its key pair comes from
                           GRANARY_S3_ACCESS_KEY_ID / GRANARY_S3_SECRET_ACCESS_KEY, else DATA/s3-credentials (made once, mode 0600)
  --no-s3                  start no S3 gateway
  -h, --help               this text

Example:
  granary up --data /tmp/g --chunkservers 4
  granary put big.iso /isos/big.iso        # in another terminal
`

const restartsPerWindowMax = 5
const restartWindowMs = 30_000
const readyTimeoutMs = 30_000
const stopGraceMs = 5_000

interface Member {
  name: string
  role: ProcessRole
  args: string[]
  logPath: string
  dataDir: string
  port: number
  url: string
  pid: number
  spawned: SpawnedRole | undefined
  restartTimesMs: number[]
  restarts: number
  state: 'running' | 'restarting' | 'failed' | 'stopped'
  lastExit?: { pid: number, atMs: number, reason: string }   // when the supervisor saw it die, and why (cluster.json)
  // A metadata member (the master or a shadow): its flags for either role. Which role it has moves with
  // failovers; the supervisor follows (#watchRoles) and restarts it in the role it has now.
  meta?: { common: string[] }
  env?: NodeJS.ProcessEnv                 // the S3 gateway's key pair (kept off its command line)
}

// The S3 gateway's key pair: from the environment, else DATA/s3-credentials (generated once, mode 0600).
export function s3Keys (dataDir: string, env: NodeJS.ProcessEnv): { accessKeyId: string, secretAccessKey: string, file: string | null } {
  const given = { accessKeyId: env.GRANARY_S3_ACCESS_KEY_ID ?? '', secretAccessKey: env.GRANARY_S3_SECRET_ACCESS_KEY ?? '' }
  if (given.accessKeyId !== '' && given.secretAccessKey !== '') return { ...given, file: null }
  const file = join(dataDir, 's3-credentials')
  if (existsSync(file)) {
    const stored = JSON.parse(readFileSync(file, 'utf8')) as { accessKeyId?: unknown, secretAccessKey?: unknown }
    if (typeof stored.accessKeyId === 'string' && typeof stored.secretAccessKey === 'string') return { accessKeyId: stored.accessKeyId, secretAccessKey: stored.secretAccessKey, file }
  }
  const made = { accessKeyId: `GR${randomBytes(9).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64url') }
  mkdirSync(dataDir, { recursive: true })
  writeFileSync(file, JSON.stringify(made, null, 2) + '\n', { mode: 0o600 })
  return { ...made, file }
}

const roleWatchMs = 500                 // how often the supervisor asks the metadata members who is master
const roleWatchTimeoutMs = 1_000        // one /healthz answer within this, or that member's role is unknown

export async function runUp (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      data: { type: 'string', default: 'granary-data' },
      port: { type: 'string', default: '9000' },
      chunkservers: { type: 'string', default: '3' },
      shadows: { type: 'string', default: '1' },
      'restart-delay-ms': { type: 'string', default: '0' },
      'heartbeat-interval-ms': { type: 'string', default: String(masterDefaults.heartbeatIntervalMs) },
      'dead-after-ms': { type: 'string', default: String(masterDefaults.deadAfterMs) },
      's3-port': { type: 'string', default: '9300' },
      'no-s3': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false }
    },
    strict: true,
    allowPositionals: false
  })
  if (values.help === true) { process.stdout.write(upUsage); return }
  const dataDir = resolve(values.data)
  const port = wholeNumber('--port', values.port, 0, 65535)
  const chunkserverCount = wholeNumber('--chunkservers', values.chunkservers, 1, 64)
  const shadowCount = wholeNumber('--shadows', values.shadows, 0, 4)
  const restartDelayMs = wholeNumber('--restart-delay-ms', values['restart-delay-ms'], 0, 600_000)
  const heartbeatIntervalMs = wholeNumber('--heartbeat-interval-ms', values['heartbeat-interval-ms'], 10, 600_000)
  const deadAfterMs = wholeNumber('--dead-after-ms', values['dead-after-ms'], 30, 3_600_000)

  const s3Port = wholeNumber('--s3-port', values['s3-port'], 0, 65535)
  const s3 = values['no-s3'] === true ? undefined : { port: s3Port, keys: s3Keys(dataDir, process.env) }
  const supervisor = new Supervisor(dataDir, restartDelayMs)
  await supervisor.start({ port, chunkserverCount, shadowCount, heartbeatIntervalMs, deadAfterMs, s3 })
  await supervisor.stopped
}

// What the supervisor starts processes with; a test passes stand-ins (test/unit/client/up.test.ts).
export interface SupervisorDeps {
  spawnRole: (options: SpawnRoleOptions) => Promise<SpawnedRole>
  spare: Pick<SpareMaster, 'prepare' | 'take' | 'stop' | 'discard'>
}

export class Supervisor {
  readonly #dataDir: string
  readonly #restartDelayMs: number
  readonly #members: Member[] = []
  readonly #deps: SupervisorDeps
  #stopping = false
  // Aborted by stop(): a restart waiting out --restart-delay-ms (up to 10 min) gives up at once instead of
  // holding the process open, and stop() awaits the restarts under way (a launch is bounded by readyTimeoutMs).
  readonly #stop = new AbortController()
  readonly #restarting = new Set<Promise<void>>()
  #spareFor: Member | undefined          // the member the warm spare was prepared for (the master's data folder)
  #roleTimer: NodeJS.Timeout | undefined
  #watching = false
  #resolveStopped: () => void = () => {}
  readonly stopped = new Promise<void>((resolve) => { this.#resolveStopped = resolve })

  constructor (dataDir: string, restartDelayMs: number, deps: SupervisorDeps = { spawnRole, spare: new SpareMaster() }) {
    this.#dataDir = dataDir
    this.#restartDelayMs = restartDelayMs
    this.#deps = deps
  }

  async start (options: {
    port: number, chunkserverCount: number, shadowCount: number, heartbeatIntervalMs: number, deadAfterMs: number
    s3?: { port: number, keys: { accessKeyId: string, secretAccessKey: string, file: string | null } }   // the S3 gateway, if any
  }): Promise<void> {
    mkdirSync(join(this.#dataDir, 'logs'), { recursive: true })
    const secretFile = join(this.#dataDir, 'secret')
    loadSecret(secretFile, true)
    const previous = readPreviousPorts(join(this.#dataDir, 'cluster.json'))
    const previousMaster = readPreviousMaster(join(this.#dataDir, 'cluster.json'))
    process.once('SIGINT', () => { void this.stop('SIGINT') })
    process.once('SIGTERM', () => { void this.stop('SIGTERM') })

    // The first admin key goes to DATA/credentials, where the CLI run beside the data folder looks (client/credentials.ts).
    const common = ['--secret-file', secretFile, '--credentials-file', join(this.#dataDir, credentialsFileName), '--heartbeat-interval-ms', String(options.heartbeatIntervalMs), '--dead-after-ms', String(options.deadAfterMs)]
    const meta = [
      this.#member('master', 'master', join(this.#dataDir, 'master'), options.port, common),
      ...Array.from({ length: options.shadowCount }, (_, i) =>
        this.#member(`shadow${i}`, 'shadow', join(this.#dataDir, `shadow${i}`), previous.get(`shadow${i}`) ?? (options.port === 0 ? 0 : options.port + 1 + i), common))
    ]
    for (const member of meta) member.meta = { common }
    // The roles come back as they were: the member that was master when the cluster stopped (a promoted shadow,
    // after a failover) starts as master, and every other one as its shadow.
    const master = meta.find((m) => m.name === previousMaster) ?? meta[0] as Member
    if (master.name !== 'master') this.#say(`${master.name} was the master when the cluster stopped: it starts as the master again`)
    master.role = 'master'
    master.args = common
    if (master.name === 'master') await this.#launch(master)   // its port is the one users were told
    else await this.#launchAnyPort(master)
    // Shadows bootstrap from the master (so after it), and chunkservers heartbeat to them too (so before those).
    const shadows = meta.filter((m) => m !== master)
    for (const member of shadows) { member.role = 'shadow'; member.args = [...common, '--master', master.url] }
    await Promise.all(shadows.map(async (member) => await this.#launchAnyPort(member)))
    const masters = meta.map((m) => m.url).join(',')
    await Promise.all(Array.from({ length: options.chunkserverCount }, async (_, i) => {
      const name = `chunkserver${i}`
      const member = this.#member(name, 'chunkserver', join(this.#dataDir, `cs${i}`), previous.get(name) ?? 0, [
        '--secret-file', secretFile, '--masters', masters, '--heartbeat-interval-ms', String(options.heartbeatIntervalMs)
      ])
      await this.#launchAnyPort(member)
    }))
    if (options.s3 !== undefined) {
      const gateway = this.#member('s3', 's3', join(this.#dataDir, 's3'), options.s3.port, ['--masters', masters])
      // Its own calls are signed with the admin key the master made (DATA/credentials); S3 clients may use that pair,
      // any Granary access key, or the pair in DATA/s3-credentials.
      gateway.env = { GRANARY_S3_ACCESS_KEY_ID: options.s3.keys.accessKeyId, GRANARY_S3_SECRET_ACCESS_KEY: options.s3.keys.secretAccessKey, GRANARY_CREDENTIALS: join(this.#dataDir, credentialsFileName) }
      await this.#launchAnyPort(gateway)
    }
    this.#writeClusterFile()
    this.#printSummary(options.s3?.keys)
    if (shadows.length > 0) this.#watchRoles()
  }

  // Follows failovers: asks every running metadata member for its role. A member that says it is a deposed
  // master is restarted as a shadow of the member that is master now; cluster.json names the current roles.
  #watchRoles (): void {
    const round = async (): Promise<void> => {
      if (this.#stopping || this.#watching) return
      this.#watching = true
      try {
        const meta = this.#members.filter((m) => m.meta !== undefined && m.state === 'running' && m.url !== '')
        const healths = await Promise.all(meta.map(async (m) => await health(m.url)))
        const current = meta.filter((_, i) => healths[i]?.role === 'master' && healths[i]?.fencedByTerm === undefined)
          .sort((a, b) => (healthOf(healths, meta, b)?.term ?? 0) - (healthOf(healths, meta, a)?.term ?? 0))[0]
        let changed = false
        for (const [i, member] of meta.entries()) {
          const h = healths[i]
          if (h === undefined) continue
          if (h.role === 'master' && h.fencedByTerm === undefined && member.role !== 'master') {
            this.#say(`${member.name} is the master now (term ${h.term})`)
            member.role = 'master'
            member.args = member.meta?.common ?? member.args
            this.#deps.spare.prepare({ args: ['--data-dir', member.dataDir, '--port', String(member.port), ...member.args], logPath: member.logPath, readyTimeoutMs })
            this.#spareFor = member
            changed = true
          } else if (h.role === 'master' && h.fencedByTerm !== undefined && current !== undefined && current !== member && !this.#stopping) {
            this.#say(`${member.name} was deposed (term ${h.term}; term ${h.fencedByTerm} exists): restarting it as a shadow of ${current.name}`)
            member.role = 'shadow'
            member.args = [...(member.meta?.common ?? []), '--master', current.url]
            if (this.#spareFor === member) { this.#deps.spare.discard(); this.#spareFor = undefined }
            changed = true
            member.state = 'stopped'   // first: its exit handler then leaves it alone, and we start it here
            await stopMember(member)
            if (!this.#stopping) await this.#launch(member).catch((err: Error) => { this.#say(`${member.name} did not start as a shadow: ${err.message}`) })
          } else if (h.role === 'shadow' && member.role === 'master') {
            member.role = 'shadow'
            changed = true
          }
        }
        if (changed) this.#writeClusterFile()
      } finally {
        this.#watching = false
      }
    }
    this.#roleTimer = setInterval(() => { void round() }, roleWatchMs)
    this.#roleTimer.unref()
  }

  // Who a metadata member that died should come back as: a shadow of the member that is master now, if another
  // one is; else what it was (a master stays the master: a supervisor's restart beats the shadow's election).
  #roleOnRestart (member: Member): void {
    if (member.meta === undefined) return
    const other = this.#members.find((m) => m !== member && m.meta !== undefined && m.role === 'master' && m.state === 'running')
    if (other !== undefined) {
      member.role = 'shadow'
      member.args = [...member.meta.common, '--master', other.url]
    } else if (member.role === 'master') {
      member.args = member.meta.common
    }
  }

  #member (name: string, role: ProcessRole, dataDir: string, port: number, args: string[]): Member {
    const member: Member = {
      name, role, args, dataDir, port, url: '', pid: 0, spawned: undefined,
      logPath: join(this.#dataDir, 'logs', `${name}.log`), restartTimesMs: [], restarts: 0, state: 'running'
    }
    this.#members.push(member)
    return member
  }

  async #launchAnyPort (member: Member): Promise<void> {
    try {
      await this.#launch(member)
    } catch (err) {
      if (member.port === 0) throw err
      member.port = 0   // the port it had last time is taken: any free one will do
      await this.#launch(member)
    }
  }

  async #launch (member: Member): Promise<void> {
    // The S3 gateway keeps no data of its own: it takes no --data-dir.
    const args = [...(member.role === 's3' ? [] : ['--data-dir', member.dataDir]), '--port', String(member.port), ...member.args]
    // A master is restarted from its warm spare when there is one (up-standby.ts), else started cold.
    const useSpare = member.role === 'master' && (this.#spareFor === undefined || this.#spareFor === member)
    const spare = useSpare ? await this.#deps.spare.take({ args, logPath: member.logPath, readyTimeoutMs }).catch(() => undefined) : undefined
    const spawned = spare ?? await this.#deps.spawnRole({ role: member.role, args, logPath: member.logPath, readyTimeoutMs, ...(member.env === undefined ? {} : { env: member.env }) })
    member.spawned = spawned
    member.pid = spawned.pid
    member.port = spawned.ready.port   // keep the port across restarts: clients and peers keep their URLs
    member.url = spawned.ready.url
    member.state = 'running'
    if (member.role === 'master') {
      this.#spareFor = member
      this.#deps.spare.prepare({ args: ['--data-dir', member.dataDir, '--port', String(member.port), ...member.args], logPath: member.logPath, readyTimeoutMs })
    }
    void spawned.exited.then((how) => {
      if (this.#stopping) return
      const restarting = this.#onExit(member, spawned, how).finally(() => { this.#restarting.delete(restarting) })
      this.#restarting.add(restarting)
    })
  }

  async #onExit (member: Member, spawned: SpawnedRole, how: { code: number | null, signal: NodeJS.Signals | null }): Promise<void> {
    if (this.#stopping || member.spawned !== spawned || member.state === 'stopped') return
    let reason = exitReason(how, member.logPath)
    member.lastExit = { pid: member.pid, atMs: Date.now(), reason }
    member.state = 'restarting'
    this.#writeClusterFile()
    // Bounded: every attempt counts against restartsPerWindowMax, so a master that cannot start stops trying.
    while (!this.#stopping) {
      const nowMs = Date.now()
      member.restartTimesMs = member.restartTimesMs.filter((t) => nowMs - t < restartWindowMs)
      if (member.restartTimesMs.length >= restartsPerWindowMax) {
        member.state = 'failed'
        this.#writeClusterFile()   // before the line: whoever reads the line finds cluster.json already saying so
        this.#say(`${member.name} (pid ${member.pid}) ${reason}; restarted ${restartsPerWindowMax} times in ${restartWindowMs / 1000} s already, giving up on it — see ${member.logPath}`)
        break
      }
      member.restartTimesMs.push(nowMs)
      this.#say(`${member.name} (pid ${member.pid}) ${reason}; restarting`)
      if (this.#restartDelayMs > 0) await delay(this.#restartDelayMs, undefined, { signal: this.#stop.signal }).catch(() => {})
      if (this.#stopping) break
      this.#roleOnRestart(member)
      try {
        await this.#launch(member)
        member.restarts++
        this.#writeClusterFile()
        this.#say(`${member.name} restarted as pid ${member.pid} at ${member.url}`)
        break
      } catch (err) {
        const last = lastErrorMessage(member.logPath)
        reason = `failed to restart: ${(err as Error).message.split('\n')[0] ?? ''}${last === undefined ? '' : ` (${last})`}`
      }
    }
    if (this.#stopping && member.state === 'restarting') member.state = 'stopped'   // stop() came during the delay
    this.#writeClusterFile()
  }

  // Stops what runs now at once, and what a restart under way starts once that launch settles (a restart
  // waiting out its delay gives up at once: #stop is aborted).
  async stop (signal: string): Promise<void> {
    if (this.#stopping) return
    this.#stopping = true
    this.#stop.abort()
    if (this.#roleTimer !== undefined) clearInterval(this.#roleTimer)
    this.#deps.spare.stop()
    this.#say(`${signal}: stopping the cluster`)
    const live = (m: Member): boolean => m.spawned !== undefined && m.spawned.child.exitCode === null && m.spawned.child.signalCode === null
    const running = this.#members.filter(live)
    const stopping = running.map(async (member) => { await stopMember(member) })
    await Promise.all(this.#restarting)
    const late = this.#members.filter((m) => live(m) && !running.includes(m))
    await Promise.all([...stopping, ...late.map(async (member) => { await stopMember(member) })])
    this.#writeClusterFile()
    this.#resolveStopped()
  }

  #writeClusterFile (): void {
    const file = join(this.#dataDir, 'cluster.json')
    const body = {
      supervisorPid: process.pid,
      updatedAtMs: Date.now(),
      processes: this.#members.map((m) => ({
        name: m.name, role: m.role, url: m.url, pid: m.pid, state: m.state, restarts: m.restarts, dataDir: m.dataDir, logPath: m.logPath, lastExit: m.lastExit
      }))
    }
    const temp = `${file}.tmp-${process.pid}`
    writeFileSync(temp, JSON.stringify(body, null, 2) + '\n')
    renameSync(temp, file)
  }

  #printSummary (s3?: { accessKeyId: string, secretAccessKey: string, file: string | null }): void {
    const lines = [`granary: cluster up, data in ${this.#dataDir}`]
    for (const m of this.#members) lines.push(`  ${m.name.padEnd(13)} ${m.url.padEnd(24)} pid ${String(m.pid).padEnd(8)} log ${m.logPath}`)
    const masters = this.#members.filter((m) => m.meta !== undefined).map((m) => m.url)
    const gateway = this.#members.find((m) => m.role === 's3')
    if (gateway !== undefined && s3 !== undefined) {
      lines.push(`S3 endpoint ${gateway.url}  access key id ${s3.accessKeyId}  secret access key ${s3.secretAccessKey}${s3.file === null ? '' : `  (kept in ${s3.file})`}`)
    }
    if (masters.length > 1) lines.push(`Clients fall over to the shadow: export GRANARY_MASTER=${masters.join(',')}`)
    lines.push(`Admin access key: ${join(this.#dataDir, credentialsFileName)} (the CLI run beside ./granary-data finds it; elsewhere export GRANARY_CREDENTIALS=that file)`)
    lines.push(`Try: npx granary put <local file> /path   ·   npx granary ls /   ·   Ctrl-C stops the cluster`)
    process.stdout.write(lines.join('\n') + '\n')
  }

  #say (message: string): void {
    process.stdout.write(`granary up: ${message}\n`)
  }
}

// SIGTERM, then SIGKILL past stopGraceMs.
async function stopMember (member: Member): Promise<void> {
  const spawned = member.spawned as SpawnedRole
  spawned.child.kill('SIGTERM')
  const timer = setTimeout(() => spawned.child.kill('SIGKILL'), stopGraceMs)
  await spawned.exited
  clearTimeout(timer)
  member.state = 'stopped'
}

// The member cluster.json named as master when the cluster last ran (undefined: none, or the file is unreadable).
function readPreviousMaster (file: string): string | undefined {
  if (!existsSync(file)) return undefined
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { processes?: Array<{ name?: string, role?: string }> }
    return parsed.processes?.find((p) => p.role === 'master')?.name
  } catch {
    return undefined
  }
}

interface MetaHealth { role: string, term: number, fencedByTerm?: number }
async function health (url: string): Promise<MetaHealth | undefined> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(roleWatchTimeoutMs) })
    if (!res.ok) return undefined
    return await res.json() as MetaHealth
  } catch {
    return undefined
  }
}
function healthOf (healths: Array<MetaHealth | undefined>, members: Member[], member: Member): MetaHealth | undefined {
  return healths[members.indexOf(member)]
}

function readPreviousPorts (file: string): Map<string, number> {
  const ports = new Map<string, number>()
  if (!existsSync(file)) return ports
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { processes?: Array<{ name?: string, url?: string, role?: string }> }
    for (const p of parsed.processes ?? []) {
      if ((p.role === 'chunkserver' || p.role === 'shadow') && typeof p.name === 'string' && typeof p.url === 'string') {
        const port = Number(new URL(p.url).port)
        if (Number.isInteger(port) && port > 0) ports.set(p.name, port)
      }
    }
  } catch {}
  return ports
}

function wholeNumber (flag: string, raw: string | undefined, min: number, max: number): number {
  const value = Number(raw)
  if (raw === undefined || !/^\d+$/.test(raw) || value < min || value > max) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${flag} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`])
  }
  return value
}
