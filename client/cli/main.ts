// The CLI's control flow: parse (usage errors exit 2), run one command against a connected client (a failed
// operation exits with the status its error code maps to, `granary: <CODE>: <sentence>` on stderr, no stack;
// with --json the error is one JSON object on stderr instead), close the client. Streams are passed in so
// tests run main() in-process; cli.ts hands it the real process streams.
import { readFileSync } from 'node:fs'
import type { Credentials } from '../../shared/auth.js'
import type { Readable, Writable } from 'node:stream'
import { GranaryError, isGranaryError } from '../../shared/errors.js'
import type { GranaryClient } from '../index.js'
import { parseCommandLine, commands, type OptionValues, type CommandSpec } from './args.js'
import type { Progress } from './format.js'

// docs/API.md "Exit status" and args.ts exitStatuses say the same; scripts branch on these.
export const exitCodes = { ok: 0, failed: 1, usage: 2, notFound: 3, unavailable: 4, interrupted: 130 } as const

// Codes that mean the cluster could not be reached, or the call's deadline ran out retrying it.
const unavailableCodes: ReadonlySet<string> = new Set(['GRN_UNAVAILABLE', 'GRN_TIMEOUT', 'GRN_DEADLINE_EXCEEDED', 'GRN_NOT_MASTER', 'GRN_NO_CHUNKSERVERS', 'GRN_STALE'])

export function exitCodeOf (err: unknown, signal?: AbortSignal): number {
  const code = isGranaryError(err) ? err.code : (err as { code?: unknown } | null)?.code
  if (signal?.aborted === true || code === 'GRN_ABORTED' || code === 'ABORT_ERR') return exitCodes.interrupted
  if (code === 'GRN_NOT_FOUND' || code === 'ENOENT') return exitCodes.notFound   // ENOENT: a local path, from node:fs
  if (typeof code === 'string' && unavailableCodes.has(code)) return exitCodes.unavailable
  return exitCodes.failed
}

export interface CliIo {
  stdin: Readable
  stdout: Writable
  stderr: Writable & { isTTY?: boolean }
  env: NodeJS.ProcessEnv
  signal?: AbortSignal          // aborted on Ctrl-C: puts abandon, gets remove their temp file
}

export interface CommandContext {
  client: GranaryClient
  io: CliIo
  values: OptionValues
  positionals: string[]
  json: boolean
  quiet: boolean                // -q: data and errors only (no progress, summaries or notes)
  signal: AbortSignal
  print: (text: string) => void
  printJson: (value: unknown) => void
  credentials: Credentials | null   // the access key the client signs with (admin promote signs its own call)
  note: (text: string) => void  // a human remark on stdout: dropped by --json and -q
  progress: (label: string, totalBytes: number | null) => Progress | undefined   // a bar on a terminal's stderr, unless -q
}

// Every command's module is loaded only when that command runs: `granary master` must not pay for loading
// the client (undici) and the client commands must not pay for loading the master (SQLite, fastify). A
// restarted master's start-up time is part of every outage.
type ClientCommand = (context: CommandContext) => Promise<void>
const transfer = async (): Promise<typeof import('./transfer.js')> => await import('./transfer.js')
const namespace = async (): Promise<typeof import('./namespace.js')> => await import('./namespace.js')
const clientCommands: Record<string, () => Promise<ClientCommand>> = {
  put: async () => (await transfer()).put,
  get: async () => (await transfer()).get,
  cat: async () => (await transfer()).cat,
  ls: async () => (await namespace()).ls,
  stat: async () => (await namespace()).stat,
  mkdir: async () => (await namespace()).mkdir,
  mv: async () => (await namespace()).mv,
  rm: async () => (await namespace()).rm,
  restore: async () => (await namespace()).restore,
  du: async () => (await namespace()).du,
  checksum: async () => (await namespace()).checksum,
  cp: async () => (await import('./copy.js')).cp,
  sync: async () => (await import('./sync.js')).sync,
  report: async () => (await namespace()).report,
  admin: async () => (await import('./admin.js')).admin,
  fsck: async () => (await import('./fsck.js')).fsckCommand,
}
// Loaded only when run: `granary ls` should not pay for loading the master (SQLite, fastify).
const serverCommands: Record<string, () => Promise<(argv: string[]) => Promise<void>>> = {
  up: async () => (await import('../cluster/up.js')).runUp,
  chaos: async () => (await import('../cluster/chaos.js')).runChaos,
  master: async () => (await import('../../master/main.js')).runMaster,
  shadow: async () => {
    // The shadow is the master's code in another mode (master/); its entry point is looked up by name so
    // this file does not depend on how the master folder arranges it.
    const master = await import('../../master/main.js') as { runShadow?: (argv: string[]) => Promise<void> }
    if (typeof master.runShadow !== 'function') throw new GranaryError('GRN_INTERNAL', ['this build has no shadow master (master/main.ts exports no runShadow)'])
    return master.runShadow
  },
  chunkserver: async () => (await import('../../chunkserver/main.js')).runChunkserver,
  s3: async () => (await import('../../gateway/main.js')).runGateway,
}

// Every command's name: bundle.ts keys its code cache by the commands that have run (each compiles its own code).
export const commandNames: ReadonlySet<string> = new Set(commands.map((c) => c.name))

export async function main (argv: string[], io: CliIo): Promise<number> {
  // --json is looked for before parsing, so a usage error is JSON too when it was asked for.
  const jsonErrors = argv.includes('--json')
  let parsed: ReturnType<typeof parseCommandLine>
  try {
    parsed = parseCommandLine(argv, io.env)
  } catch (err) {
    printError(io, err, jsonErrors, exitCodes.usage)
    return exitCodes.usage
  }
  if (parsed.kind === 'help') {
    io.stdout.write(parsed.text)
    return exitCodes.ok
  }
  if (parsed.kind === 'version') {
    io.stdout.write(`granary ${packageVersion()} (node ${process.version})\n`)
    return exitCodes.ok
  }
  if (parsed.kind === 'server') return await runServer(parsed.spec, parsed.argv, io)
  const { spec, values, positionals, client: flags } = parsed
  const signal = io.signal ?? new AbortController().signal
  if (parsed.kind === 'local') {
    const { completion } = await import('./completion.js')
    io.stdout.write(completion(positionals[0] as 'bash' | 'zsh' | 'fish'))
    return exitCodes.ok
  }
  const { connect } = await import('../index.js')
  const client = connect({ masters: flags.masters, deadlineMs: flags.deadlineMs, keepAliveTimeoutMs: 1_000, credentials: flags.credentials, caFile: flags.caFile })
  // The members ask goes out before the command's code loads (tens of ms in a fresh process): by the first read,
  // a master that has not answered while another server has is known to be hung, and the read races it at once.
  void client.discoverMasters()
  const { Progress } = await import('./format.js')
  const context: CommandContext = {
    client, io, values, positionals, json: flags.json, quiet: flags.quiet, credentials: client.credentials, signal,
    print: (text) => { io.stdout.write(text) },
    printJson: (value) => { io.stdout.write(JSON.stringify(value, null, 2) + '\n') },
    note: (text) => { if (!flags.json && !flags.quiet) io.stdout.write(text) },
    progress: (label, totalBytes) => flags.quiet ? undefined : Progress.start(io.stderr, label, totalBytes),
  }
  try {
    const load = clientCommands[spec.name]
    if (load === undefined) throw new Error(`command ${spec.name} has no implementation`)
    await (await load())(context)
    return exitCodes.ok
  } catch (err) {
    if (isBrokenPipe(err)) return exitCodes.ok    // `granary cat x | head`: the reader has all it wanted
    const status = exitCodeOf(err, signal)
    printError(io, err, flags.json, status)
    return status
  } finally {
    await client.close()
  }
}

// Server commands check their flags before they start anything: a bad flag or value (GRN_INVALID_ARGUMENT from
// shared/config.ts, or node's ERR_PARSE_ARGS_* from up and chaos) is a usage error, exit 2, in our words.
async function runServer (spec: CommandSpec, argv: string[], io: CliIo): Promise<number> {
  const load = serverCommands[spec.name]
  try {
    if (load === undefined) throw new Error(`command ${spec.name} has no implementation`)
    const run = await load()
    await run(argv)
    return exitCodes.ok
  } catch (err) {
    const usage = serverUsageError(spec.name, err)
    const status = usage === undefined ? exitCodeOf(err) : exitCodes.usage
    printError(io, usage ?? err, argv.includes('--json'), status)
    return status
  }
}

function serverUsageError (command: string, err: unknown): GranaryError | undefined {
  const code = (err as { code?: unknown } | null)?.code
  const hint = `see 'granary ${command} --help'`
  if (code === 'GRN_INVALID_ARGUMENT') return new GranaryError('GRN_INVALID_ARGUMENT', [], undefined, `${(err as Error).message} (${hint})`)
  if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_')) {
    const text = (err as Error).message.replace(/\.\s.*$/s, '').replace(/^Unknown option/, 'unknown option')
    return new GranaryError('GRN_INVALID_ARGUMENT', [], undefined, `${command}: ${text} (${hint})`)
  }
  return undefined
}

// The package's version, from the package.json above this file (dist/client/ in the repo and when installed).
function packageVersion (): string {
  for (let up = 1; up <= 4; up++) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(`${'../'.repeat(up)}package.json`, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'granary' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  return 'unknown'
}

// One line: `granary: GRN_NOT_FOUND: no such file or directory: /x`. Errors that are not Granary's (a bug)
// still get one line, with the error's own name; no stack unless GRANARY_DEBUG is set. With --json, one JSON
// object instead: { code, message, exitCode, statusCode?, retryable?, details? }.
export function printError (io: CliIo, err: unknown, json = false, exitCode: number = exitCodes.failed): void {
  const code = isGranaryError(err) ? err.code : errorName(err)
  const message = oneLine(err instanceof Error ? err.message : String(err))
  if (json) {
    const body: Record<string, unknown> = { code, message, exitCode }
    if (isGranaryError(err)) {
      body.statusCode = err.statusCode
      body.retryable = err.retryable
      if (err.details !== undefined) body.details = err.details
    }
    io.stderr.write(JSON.stringify(body) + '\n')
  } else {
    io.stderr.write(`granary: ${code}: ${message}\n`)
  }
  if (io.env.GRANARY_DEBUG !== undefined && err instanceof Error && err.stack !== undefined) io.stderr.write(`${err.stack}\n`)
}

function errorName (err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') return code
  return err instanceof Error ? err.name : 'Error'
}

function oneLine (message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim()
}

export function isBrokenPipe (err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'EPIPE'
}
