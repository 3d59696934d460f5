// The supervisor's warm spare for the master (master/standby.ts): a `granary master` process started with
// GRANARY_STANDBY=1 that has loaded everything and waits for "go" on its stdin. When the master dies, take()
// writes "go" and waits for the spare's ready line: the restart is then an open of the database and a
// listen, not a Node start. A new spare is prepared spareDelayMs after each launch (not at once: loading
// one competes for the CPU with a master that has just come back to a backlog of retried requests). If no
// spare is alive, take() returns undefined and the supervisor starts a master cold.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { cliPath, readFrom, logSizeBytes, waitForLogLine, type ReadyLine, type SpawnedRole } from '../../shared/process.js'
import { readyMessage } from '../../shared/log.js'

export const spareDelayMs = 1_000
const standbyEnvName = 'GRANARY_STANDBY'       // master/standby.ts (not imported: the CLI must not load the master)

export interface SpareOptions { args: string[], logPath: string, readyTimeoutMs: number }

interface Spare {
  child: ChildProcess
  pid: number
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  gone: boolean
}

export class SpareMaster {
  #spare: Spare | undefined
  #timer: NodeJS.Timeout | undefined
  #stopped = false

  // Replaces any spare with a new one, started after delayMs, for these exact arguments (port, data folder).
  prepare (options: SpareOptions, delayMs = spareDelayMs): void {
    this.discard()
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      if (!this.#stopped) this.#spare = spawnSpare(options)
    }, delayMs)
    this.#timer.unref()
  }

  // Activates the spare: resolves with it running as the master, or undefined when there is no live spare.
  async take (options: SpareOptions): Promise<SpawnedRole | undefined> {
    if (this.#timer !== undefined) clearTimeout(this.#timer)   // not yet started: the caller starts one cold
    this.#timer = undefined
    const spare = this.#spare
    this.#spare = undefined
    if (spare === undefined || spare.gone || spare.child.stdin === null) return undefined
    const fromOffset = logSizeBytes(options.logPath)
    spare.child.stdin.write('go\n')
    try {
      const ready = await waitForLogLine({
        logPath: options.logPath, fromOffset, timeoutMs: options.readyTimeoutMs, what: 'the spare master',
        isGone: () => spare.gone, match: (line) => isReadyLine(line, spare.pid)
      })
      return { child: spare.child, pid: spare.pid, ready, exited: spare.exited }
    } catch (err) {
      spare.child.kill('SIGKILL')
      throw err
    }
  }

  discard (): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#spare !== undefined && !this.#spare.gone) this.#spare.child.kill('SIGKILL')
    this.#spare = undefined
  }

  stop (): void {
    this.#stopped = true
    this.discard()
  }
}

function spawnSpare (options: SpareOptions): Spare | undefined {
  const logFd = openSync(options.logPath, 'a')
  let child: ChildProcess
  try {
    child = spawn(process.execPath, ['--single-threaded-gc', cliPath, 'master', ...options.args], {
      stdio: ['pipe', logFd, logFd],
      env: { ...process.env, GRANARY_LIFELINE: '1', [standbyEnvName]: '1' }
    })
  } catch {
    return undefined
  } finally {
    closeSync(logFd)
  }
  child.stdin?.on('error', () => {})
  if (child.pid === undefined) return undefined
  const spare: Spare = { child, pid: child.pid, exited: new Promise((resolve) => { child.once('exit', (code, signal) => resolve({ code, signal })) }), gone: false }
  void spare.exited.then(() => { spare.gone = true })
  return spare
}

function isReadyLine (line: string, pid: number): ReadyLine | undefined {
  if (!line.includes(`"msg":"${readyMessage}"`)) return undefined
  try {
    const parsed = JSON.parse(line) as { msg?: string, pid?: unknown, port?: unknown, url?: unknown }
    if (parsed.msg === readyMessage && parsed.pid === pid && typeof parsed.port === 'number' && typeof parsed.url === 'string') return parsed as ReadyLine
  } catch {}
  return undefined
}

// Why a process died, for the supervisor's line: the signal or exit code, and for an exit, the last fatal or
// error message in its log (an assertion, a database that cannot open).
export function exitReason (how: { code: number | null, signal: NodeJS.Signals | null }, logPath: string): string {
  if (how.signal !== null) return `killed by ${how.signal}`
  const last = lastErrorMessage(logPath)
  return `exited with code ${String(how.code)}${last === undefined ? '' : ` (${last})`}`
}

export function lastErrorMessage (logPath: string): string | undefined {
  if (!existsSync(logPath)) return undefined
  const size = logSizeBytes(logPath)
  const { text } = readFrom(logPath, Math.max(0, size - 64 * 1024))
  for (const line of text.split('\n').reverse()) {
    // The CLI's own one-line error (a start-up failure: `granary: GRN_X: ...`) or a pino fatal/error line.
    if (line.startsWith('granary: ')) return line.slice('granary: '.length)
    try {
      const parsed = JSON.parse(line) as { level?: number, msg?: string, err?: { message?: string } }
      if (typeof parsed.level === 'number' && parsed.level >= 50) return [parsed.msg, parsed.err?.message].filter((s) => s !== undefined).join(': ')
    } catch {}
  }
  return undefined
}
