// The CLI's control flow: parse (usage errors exit 2), run one command against a connected client (a failed
// operation exits 1 with `granary: <CODE>: <sentence>` on stderr, no stack), close the client. Streams are
// passed in so tests run main() in-process; cli.ts hands it the real process streams.
import type { Readable, Writable } from 'node:stream'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import type { GranaryClient } from './index.js'
import { parseCommandLine, type OptionValues, type CommandSpec } from './cli-args.js'

export const exitCodes = { ok: 0, failed: 1, usage: 2 } as const

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
  signal: AbortSignal
  print: (text: string) => void
  printJson: (value: unknown) => void
}

// Every command's module is loaded only when that command runs: `granary master` must not pay for loading
// the client (undici) and the client commands must not pay for loading the master (SQLite, fastify). A
// restarted master's start-up time is part of every outage.
type ClientCommand = (context: CommandContext) => Promise<void>
const transfer = async (): Promise<typeof import('./cli-transfer.js')> => await import('./cli-transfer.js')
const namespace = async (): Promise<typeof import('./cli-namespace.js')> => await import('./cli-namespace.js')
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
  report: async () => (await namespace()).report,
  admin: async () => (await import('./cli-admin.js')).admin,
  fsck: async () => (await import('./cli-fsck.js')).fsckCommand,
}
// Loaded only when run: `granary ls` should not pay for loading the master (SQLite, fastify).
const serverCommands: Record<string, () => Promise<(argv: string[]) => Promise<void>>> = {
  up: async () => (await import('./up.js')).runUp,
  chaos: async () => (await import('./chaos.js')).runChaos,
  master: async () => (await import('../master/main.js')).runMaster,
  shadow: async () => {
    // The shadow is the master's code in another mode (master/); its entry point is looked up by name so
    // this file does not depend on how the master folder arranges it.
    const master = await import('../master/main.js') as { runShadow?: (argv: string[]) => Promise<void> }
    if (typeof master.runShadow !== 'function') throw new GranaryError('GRN_INTERNAL', ['this build has no shadow master (master/main.ts exports no runShadow)'])
    return master.runShadow
  },
  chunkserver: async () => (await import('../chunkserver/main.js')).runChunkserver,
  s3: async () => (await import('../gateway/main.js')).runGateway,
}

export async function main (argv: string[], io: CliIo): Promise<number> {
  let parsed: ReturnType<typeof parseCommandLine>
  try {
    parsed = parseCommandLine(argv, io.env)
  } catch (err) {
    printError(io, err)
    return exitCodes.usage
  }
  if (parsed.kind === 'help') {
    io.stdout.write(parsed.text)
    return exitCodes.ok
  }
  if (parsed.kind === 'server') return await runServer(parsed.spec, parsed.argv, io)
  const { spec, values, positionals, client: flags } = parsed
  const { connect } = await import('./index.js')
  const client = connect({ masters: flags.masters, deadlineMs: flags.deadlineMs, keepAliveTimeoutMs: 1_000 })
  const context: CommandContext = {
    client, io, values, positionals, json: flags.json, signal: io.signal ?? new AbortController().signal,
    print: (text) => { io.stdout.write(text) },
    printJson: (value) => { io.stdout.write(JSON.stringify(value, null, 2) + '\n') },
  }
  try {
    const load = clientCommands[spec.name]
    if (load === undefined) throw new Error(`command ${spec.name} has no implementation`)
    await (await load())(context)
    return exitCodes.ok
  } catch (err) {
    if (isBrokenPipe(err)) return exitCodes.ok    // `granary cat x | head`: the reader has all it wanted
    printError(io, err)
    return exitCodes.failed
  } finally {
    await client.close()
  }
}

async function runServer (spec: CommandSpec, argv: string[], io: CliIo): Promise<number> {
  const load = serverCommands[spec.name]
  try {
    if (load === undefined) throw new Error(`command ${spec.name} has no implementation`)
    const run = await load()
    await run(argv)
    return exitCodes.ok
  } catch (err) {
    printError(io, err)
    return exitCodes.failed
  }
}

// One line: `granary: GRN_NOT_FOUND: no such file or directory: /x`. Errors that are not Granary's (a bug)
// still get one line, with the error's own name; no stack unless GRANARY_DEBUG is set.
export function printError (io: CliIo, err: unknown): void {
  const code = isGranaryError(err) ? err.code : errorName(err)
  const message = err instanceof Error ? err.message : String(err)
  io.stderr.write(`granary: ${code}: ${oneLine(message)}\n`)
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
