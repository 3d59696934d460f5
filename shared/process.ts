// Spawning one Granary process (master, shadow or chunkserver) the way `granary up` and the test kit do:
// `node --single-threaded-gc dist/client/cli/cli.js <role> ...flags`, stdout and stderr appended to its own log
// file, readiness taken from its {"msg":"ready","port":…} log line with a deadline (no sleeps, no port races).
// The child's stdin is a lifeline: when the parent dies for any reason (even SIGKILL) the pipe closes and
// the child exits, so a crashed supervisor or test run cannot leave servers behind (shared/lifeline.ts).
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readSync, fstatSync, mkdirSync, readFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { GranaryError } from './errors.js'
import { readyMessage } from './log.js'

export type ProcessRole = 'master' | 'shadow' | 'chunkserver' | 's3'

// Compiled, this file is dist/shared/process.js and the CLI sits beside it; run from source (tap runs the
// .ts tests directly) it is shared/process.ts and the processes are the build in dist/ (npm test builds first).
const here = dirname(fileURLToPath(import.meta.url))
export const cliPath = existsSync(join(here, '..', 'client', 'cli', 'cli.js'))
  ? join(here, '..', 'client', 'cli', 'cli.js')
  : join(here, '..', 'dist', 'client', 'cli', 'cli.js')
export const logTailLinesMax = 40
const readyPollIntervalMs = 5   // a restarted master's ready line is part of every outage: poll often
const logScanBytesMax = 1024 * 1024

export interface ReadyLine { port: number, url: string, serverId?: string, [key: string]: unknown }

export interface SpawnedRole {
  child: ChildProcess
  pid: number
  ready: ReadyLine
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

export interface SpawnRoleOptions {
  role: ProcessRole
  args: string[]
  logPath: string
  readyTimeoutMs: number
  env?: NodeJS.ProcessEnv
  netns?: string              // run inside this network namespace (`ip netns exec`, which execs: the pid is node's)
}

export async function spawnRole (options: SpawnRoleOptions): Promise<SpawnedRole> {
  mkdirSync(dirname(options.logPath), { recursive: true })
  const logFd = openSync(options.logPath, 'a')
  const startOffset = fstatSync(logFd).size
  let child: ChildProcess
  try {
    // GRANARY_NODE_ARGS: extra node flags for every spawned server (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p` to
    // profile a bench's master; node refuses --cpu-prof in NODE_OPTIONS).
    const nodeArgs = (process.env.GRANARY_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '')
    const command = [process.execPath, '--single-threaded-gc', ...nodeArgs, cliPath, options.role, ...options.args]
    const [file, ...args] = options.netns === undefined ? command : ['ip', 'netns', 'exec', options.netns, ...command]
    child = spawn(file as string, args, {
      stdio: ['pipe', logFd, logFd],
      env: { ...process.env, ...options.env, GRANARY_LIFELINE: '1' }
    })
  } finally {
    closeSync(logFd)
  }
  // Never let the lifeline pipe's errors (EPIPE when the child dies) surface in the parent.
  child.stdin?.on('error', () => {})
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }))
  })
  const pid = child.pid
  if (pid === undefined) throw new GranaryError('GRN_UNAVAILABLE', [`granary ${options.role}`, 'spawn failed'])
  const ready = await waitForReady(options, child, exited, startOffset)
  return { child, pid, ready, exited }
}

async function waitForReady (options: SpawnRoleOptions, child: ChildProcess, exited: Promise<unknown>, startOffset: number): Promise<ReadyLine> {
  let gone = false
  void exited.then(() => { gone = true })
  return await waitForLogLine({
    logPath: options.logPath, fromOffset: startOffset, timeoutMs: options.readyTimeoutMs, what: `granary ${options.role}`,
    isGone: () => gone, match: parseReady, onTimeout: () => { child.kill('SIGKILL') }
  })
}

export interface WaitForLogLineOptions<T> {
  logPath: string
  fromOffset: number               // bytes of the log already there before the wait began
  timeoutMs: number
  what: string                     // for the error messages: 'granary master', 'the spare master'
  isGone: () => boolean            // the process exited: stop waiting
  match: (line: string) => T | undefined
  onTimeout?: () => void
}

// Follows a process's log file from an offset until a line matches, the process is gone, or the deadline
// passes; both failures carry the log's last lines. Polls (readyPollIntervalMs): no sleeps of guessed length.
export async function waitForLogLine<T> (options: WaitForLogLineOptions<T>): Promise<T> {
  const deadlineMs = Date.now() + options.timeoutMs
  let offset = options.fromOffset
  let partial = ''
  while (true) {
    const { text, nextOffset } = readFrom(options.logPath, offset)
    offset = nextOffset
    const lines = (partial + text).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      const found = options.match(line)
      if (found !== undefined) return found
    }
    if (options.isGone()) {
      throw new GranaryError('GRN_UNAVAILABLE', [options.what, `exited before it was ready\n${formatLogTail(options.logPath)}`])
    }
    if (Date.now() > deadlineMs) {
      options.onTimeout?.()
      throw new GranaryError('GRN_TIMEOUT', [`${options.what} readiness`, options.timeoutMs],
        undefined, `${options.what} was not ready within ${options.timeoutMs} ms\n${formatLogTail(options.logPath)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, readyPollIntervalMs))
  }
}

export function logSizeBytes (path: string): number {
  if (!existsSync(path)) return 0
  const fd = openSync(path, 'r')
  try { return fstatSync(fd).size } finally { closeSync(fd) }
}

export function readFrom (path: string, offset: number): { text: string, nextOffset: number } {
  const fd = openSync(path, 'r')
  try {
    const size = fstatSync(fd).size
    const length = Math.min(size - offset, logScanBytesMax)
    if (length <= 0) return { text: '', nextOffset: offset }
    const buf = Buffer.alloc(length)
    const got = readSync(fd, buf, 0, length, offset)
    return { text: buf.subarray(0, got).toString('utf8'), nextOffset: offset + got }
  } finally {
    closeSync(fd)
  }
}

function parseReady (line: string): ReadyLine | undefined {
  if (!line.includes(`"msg":"${readyMessage}"`)) return undefined
  try {
    const parsed = JSON.parse(line) as { msg?: string, port?: unknown, url?: unknown }
    if (parsed.msg === readyMessage && typeof parsed.port === 'number' && typeof parsed.url === 'string') return parsed as ReadyLine
  } catch {}
  return undefined
}

// The last lines of a log file, for failure messages (SeaweedFS's harness prints 40).
export function logTail (path: string, lines = logTailLinesMax): string[] {
  if (!existsSync(path)) return []
  const text = readFileSync(path, 'utf8')
  return text.split('\n').filter((l) => l.length > 0).slice(-lines)
}

export function formatLogTail (path: string, lines = logTailLinesMax): string {
  const tail = logTail(path, lines)
  return `--- last ${tail.length} lines of ${path} ---\n${tail.join('\n')}`
}

// True while a process with this pid exists (and is not a zombie we already reaped).
export function isAlive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
}
