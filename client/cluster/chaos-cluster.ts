// The cluster `granary chaos` runs against: a real `granary up` (its supervisor is what is being measured),
// started as a child process on a data folder of its own. Its stdout lines are timestamped as they arrive
// ("master (pid X) killed by SIGKILL; restarting" is the supervisor noticing), DATA/cluster.json names the
// processes, and the master's log gives the new process's own times (standby activation, ready). Only
// processes this file started are signalled, by pid.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { cliPath } from '../../shared/process.js'
import { GranaryError } from '../../shared/errors.js'

export interface UpOptions {
  dataDir: string
  chunkservers: number
  shadows: number
  heartbeatIntervalMs: number
  restartDelayMs: number
  startTimeoutMs: number
  s3Port?: number               // start granary up's S3 gateway on this port (0: any); default: no gateway
  env?: NodeJS.ProcessEnv       // added to granary up's environment (the gateway's key pair)
}

export interface StdoutLine { atMs: number, text: string }
export interface ClusterMember { name: string, role: string, url: string, pid: number, state: string, logPath: string, lastExit?: { pid: number, atMs: number, reason: string } }
interface ClusterFile { supervisorPid: number, processes: ClusterMember[] }

const linesKeptMax = 10_000       // supervisor lines remembered (it prints a few per restart)
const pollIntervalMs = 2
const stopGraceMs = 10_000
const reapWaitMs = 10_000         // stop(): how long members may take to be gone after the supervisor, before SIGKILL (and as long after)
const reapPollMs = 25
const startTimeSlackMs = 50       // processStartMs is computed from uptime at each call: the same process reads within a few ms

export class UpCluster {
  readonly #options: UpOptions
  readonly #lines: StdoutLine[] = []
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor (options: UpOptions) {
    this.#options = options
  }

  get lines (): readonly StdoutLine[] { return this.#lines }
  get logDir (): string { return join(this.#options.dataDir, 'logs') }
  get credentialsFile (): string { return join(this.#options.dataDir, 'credentials') }   // the admin key the master made (up.ts)

  async start (): Promise<void> {
    const o = this.#options
    const args = [cliPath, 'up', '--data', o.dataDir, '--port', '0', '--chunkservers', String(o.chunkservers),
      '--heartbeat-interval-ms', String(o.heartbeatIntervalMs), '--restart-delay-ms', String(o.restartDelayMs), '--shadows', String(o.shadows),
      ...(o.s3Port === undefined ? ['--no-s3'] : ['--s3-port', String(o.s3Port)])]
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env } })
    this.#child = child
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()))
    let partial = ''
    const onData = (data: Buffer): void => {
      const atMs = Date.now()
      const parts = (partial + data.toString()).split('\n')
      partial = parts.pop() ?? ''
      for (const text of parts) {
        if (this.#lines.length >= linesKeptMax) this.#lines.shift()
        this.#lines.push({ atMs, text })
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    await this.waitForLine((line) => line.includes('cluster up'), 0, o.startTimeoutMs, 'granary up to start the cluster')
  }

  // The first stdout line at or after index `from` that matches, waiting up to timeoutMs.
  async waitForLine (match: (text: string) => boolean, from: number, timeoutMs: number, what: string): Promise<StdoutLine & { index: number }> {
    const deadlineMs = Date.now() + timeoutMs
    for (let index = from; ; await sleep(pollIntervalMs)) {
      for (; index < this.#lines.length; index++) {
        const line = this.#lines[index] as StdoutLine
        if (match(line.text)) return { ...line, index }
      }
      if (this.#child?.exitCode !== null || Date.now() > deadlineMs) {
        throw new GranaryError('GRN_TIMEOUT', [what, timeoutMs], undefined, `${what}: not seen within ${timeoutMs} ms\n${this.#lines.slice(-20).map((l) => l.text).join('\n')}`)
      }
    }
  }

  master (): ClusterMember {
    const file = JSON.parse(readFileSync(join(this.#options.dataDir, 'cluster.json'), 'utf8')) as ClusterFile
    const master = file.processes.find((p) => p.role === 'master')
    if (master === undefined) throw new GranaryError('GRN_INTERNAL', ['cluster.json names no master'])
    return master
  }

  // The master's own log lines for one pid (pino JSON), for its ready and activation times.
  masterLogLines (logPath: string, pid: number): Array<{ time: number, msg: string }> {
    if (!existsSync(logPath)) return []
    const out: Array<{ time: number, msg: string }> = []
    for (const text of readFileSync(logPath, 'utf8').split('\n')) {
      if (!text.includes(`"pid":${pid}`)) continue
      try {
        const line = JSON.parse(text) as { time?: unknown, msg?: unknown, pid?: unknown }
        if (line.pid === pid && typeof line.time === 'number' && typeof line.msg === 'string') out.push({ time: line.time, msg: line.msg })
      } catch {}
    }
    return out
  }

  // Stops the supervisor, then makes sure every member it ran is gone before returning: a supervisor that did
  // not finish its own orderly stop within stopGraceMs (a member mid-restart waits for its launch to settle) is
  // SIGKILLed, and its members would go on writing into their data folders until their lifelines noticed, while
  // the caller deletes those folders (a CI teardown failed so: ENOTEMPTY on cs1).
  async stop (): Promise<void> {
    const child = this.#child
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const members = this.#memberProcesses(new Map())
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), stopGraceMs)
    await this.#exited
    clearTimeout(timer)
    await reap(this.#memberProcesses(members))
  }

  // The members' pids from cluster.json, each with its start time (so a pid the system reused is never
  // signalled), added to `known`; a member whose start time cannot be read is gone already.
  #memberProcesses (known: Map<number, number>): Map<number, number> {
    let file: ClusterFile
    try {
      file = JSON.parse(readFileSync(join(this.#options.dataDir, 'cluster.json'), 'utf8')) as ClusterFile
    } catch {
      return known
    }
    for (const member of file.processes) {
      if (!Number.isSafeInteger(member.pid) || member.pid <= 0 || known.has(member.pid)) continue
      const startedMs = processStartMs(member.pid)
      if (startedMs !== null) known.set(member.pid, startedMs)
    }
    return known
  }

  // For process 'exit' handlers: no await possible there.
  killSync (): void {
    if (this.#child !== undefined && this.#child.exitCode === null) this.#child.kill('SIGTERM')
  }
}

// Waits for each process (pid → start time) to be gone, up to reapWaitMs; SIGKILLs those still there (the same
// process: same start time), and waits for them as long again.
async function reap (processes: Map<number, number>): Promise<void> {
  const alive = (pid: number, startedMs: number): boolean => {
    const now = processStartMs(pid)
    return now !== null && Math.abs(now - startedMs) <= startTimeSlackMs
  }
  const waitGone = async (): Promise<number[]> => {
    const deadlineMs = Date.now() + reapWaitMs
    let left = [...processes].filter(([pid, startedMs]) => alive(pid, startedMs)).map(([pid]) => pid)
    while (left.length > 0 && Date.now() < deadlineMs) {
      await sleep(reapPollMs)
      left = left.filter((pid) => alive(pid, processes.get(pid) as number))
    }
    return left
  }
  const stragglers = await waitGone()
  for (const pid of stragglers) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
  if (stragglers.length > 0) await waitGone()
}

// When a process started, as epoch ms (Linux /proc; 10 ms resolution), or null elsewhere.
export function processStartMs (pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const startTicks = Number(fields[19])               // field 22 of /proc/PID/stat: start time in clock ticks since boot
    const uptimeMs = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000
    const bootMs = Date.now() - uptimeMs
    const ticksPerSecond = 100                            // USER_HZ on Linux
    return Number.isFinite(startTicks) && Number.isFinite(uptimeMs) ? Math.round(bootMs + startTicks * 1000 / ticksPerSecond) : null
  } catch {
    return null
  }
}
