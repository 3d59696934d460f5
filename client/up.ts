// `granary up`: a whole local cluster (master, a shadow, N chunkservers) on 127.0.0.1 from one command, with an
// embedded default data folder, and a supervisor that restarts any part that dies — at once, with a bounded
// restart rate so a process that cannot start does not hot-loop. DATA/cluster.json always names the role,
// url, pid and log of every process (temp file + rename, so a reader never sees half of it).
import { parseArgs } from 'node:util'
import { mkdirSync, writeFileSync, renameSync, existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { spawnRole, type ProcessRole, type SpawnedRole, type SpawnRoleOptions } from '../shared/process.js'
import { loadSecret } from '../shared/token.js'
import { GranaryError } from '../shared/errors.js'
import { masterDefaults } from '../shared/config.js'
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
}

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

  const supervisor = new Supervisor(dataDir, restartDelayMs)
  await supervisor.start({ port, chunkserverCount, shadowCount, heartbeatIntervalMs, deadAfterMs })
  await supervisor.stopped
}

// What the supervisor starts processes with; a test passes stand-ins (test/unit/client/up.test.ts).
export interface SupervisorDeps {
  spawnRole: (options: SpawnRoleOptions) => Promise<SpawnedRole>
  spare: Pick<SpareMaster, 'prepare' | 'take' | 'stop'>
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
  #resolveStopped: () => void = () => {}
  readonly stopped = new Promise<void>((resolve) => { this.#resolveStopped = resolve })

  constructor (dataDir: string, restartDelayMs: number, deps: SupervisorDeps = { spawnRole, spare: new SpareMaster() }) {
    this.#dataDir = dataDir
    this.#restartDelayMs = restartDelayMs
    this.#deps = deps
  }

  async start (options: { port: number, chunkserverCount: number, shadowCount: number, heartbeatIntervalMs: number, deadAfterMs: number }): Promise<void> {
    mkdirSync(join(this.#dataDir, 'logs'), { recursive: true })
    const secretFile = join(this.#dataDir, 'secret')
    loadSecret(secretFile, true)
    const previous = readPreviousPorts(join(this.#dataDir, 'cluster.json'))
    process.once('SIGINT', () => { void this.stop('SIGINT') })
    process.once('SIGTERM', () => { void this.stop('SIGTERM') })

    const master = this.#member('master', 'master', join(this.#dataDir, 'master'), options.port, [
      '--secret-file', secretFile, '--heartbeat-interval-ms', String(options.heartbeatIntervalMs), '--dead-after-ms', String(options.deadAfterMs)
    ])
    await this.#launch(master)
    // Shadows bootstrap from the master (so after it), and chunkservers heartbeat to them too (so before those).
    const shadows = Array.from({ length: options.shadowCount }, (_, i) => {
      const name = `shadow${i}`
      return this.#member(name, 'shadow', join(this.#dataDir, name), previous.get(name) ?? (options.port === 0 ? 0 : options.port + 1 + i), [
        '--secret-file', secretFile, '--master', master.url, '--heartbeat-interval-ms', String(options.heartbeatIntervalMs), '--dead-after-ms', String(options.deadAfterMs)
      ])
    })
    await Promise.all(shadows.map(async (member) => await this.#launchAnyPort(member)))
    const masters = [master, ...shadows].map((m) => m.url).join(',')
    await Promise.all(Array.from({ length: options.chunkserverCount }, async (_, i) => {
      const name = `chunkserver${i}`
      const member = this.#member(name, 'chunkserver', join(this.#dataDir, `cs${i}`), previous.get(name) ?? 0, [
        '--secret-file', secretFile, '--masters', masters, '--heartbeat-interval-ms', String(options.heartbeatIntervalMs)
      ])
      await this.#launchAnyPort(member)
    }))
    this.#writeClusterFile()
    this.#printSummary()
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
    const args = ['--data-dir', member.dataDir, '--port', String(member.port), ...member.args]
    // A master is restarted from its warm spare when there is one (up-standby.ts), else started cold.
    const spare = member.role === 'master' ? await this.#deps.spare.take({ args, logPath: member.logPath, readyTimeoutMs }).catch(() => undefined) : undefined
    const spawned = spare ?? await this.#deps.spawnRole({ role: member.role, args, logPath: member.logPath, readyTimeoutMs })
    member.spawned = spawned
    member.pid = spawned.pid
    member.port = spawned.ready.port   // keep the port across restarts: clients and peers keep their URLs
    member.url = spawned.ready.url
    member.state = 'running'
    if (member.role === 'master') {
      this.#deps.spare.prepare({ args: ['--data-dir', member.dataDir, '--port', String(member.port), ...member.args], logPath: member.logPath, readyTimeoutMs })
    }
    void spawned.exited.then((how) => {
      if (this.#stopping) return
      const restarting = this.#onExit(member, spawned, how).finally(() => { this.#restarting.delete(restarting) })
      this.#restarting.add(restarting)
    })
  }

  async #onExit (member: Member, spawned: SpawnedRole, how: { code: number | null, signal: NodeJS.Signals | null }): Promise<void> {
    if (this.#stopping || member.spawned !== spawned) return
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

  #printSummary (): void {
    const lines = [`granary: cluster up, data in ${this.#dataDir}`]
    for (const m of this.#members) lines.push(`  ${m.name.padEnd(13)} ${m.url.padEnd(24)} pid ${String(m.pid).padEnd(8)} log ${m.logPath}`)
    const masters = this.#members.filter((m) => m.role !== 'chunkserver').map((m) => m.url)
    if (masters.length > 1) lines.push(`Clients fall over to the shadow: export GRANARY_MASTER=${masters.join(',')}`)
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
