// The CLI commands that move bytes: put, get, cat. A failed put leaves nothing visible in Granary (the
// master abandons the unfinished file); a failed get leaves nothing on disk (temp file, fsynced, renamed at
// the end, then the folder fsynced: after a power cut the target is the old file or the whole new one).
import { createReadStream, createWriteStream } from 'node:fs'
import { open, stat as localStat, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import type { Readable, Writable } from 'node:stream'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import { normalizePath, parentPath, joinPath, baseName } from '../shared/paths.js'
import { parseReplication, parseSize } from './cli-args.js'
import { Progress } from './cli-format.js'
import type { CommandContext } from './cli-main.js'
import { putTree, getTree } from './cli-tree.js'
import { namesDirectory } from './cli-namespace.js'

export async function put (context: CommandContext): Promise<void> {
  if (context.values.recursive === true) { await putTree(context); return }
  const { client, io, values, positionals } = context
  const [sourceArg, targetArg] = positionals as [string, string]
  const fromStdin = sourceArg === '-'
  const localSize = fromStdin ? null : await localFileSize(sourceArg)
  const target = await resolvePutTarget(context, sourceArg, targetArg)
  const parent = parentPath(target)
  if (parent !== '/') await client.mkdir(parent, { recursive: true, signal: context.signal })

  const startMs = Date.now()
  const progress = Progress.start(io.stderr, `put ${target}`, localSize)
  const source: Readable = fromStdin ? io.stdin : createReadStream(sourceArg)
  const output = client.createWriteStream(target, {
    overwrite: values.force === true,
    replication: values.replication === undefined ? undefined : parseReplication(values.replication as string),
    chunkSizeBytes: values['chunk-size'] === undefined ? undefined : parseSize(values['chunk-size'] as string),
    signal: context.signal,
  })
  try {
    await (progress === undefined ? pipeline(source, output) : pipeline(source, progress.counter(), output))
  } catch (err) {
    throw explainPutError(err, sourceArg, target)
  } finally {
    progress?.stop()
  }
  const stat = output.stat
  if (context.json && stat !== undefined) {
    const elapsedMs = Date.now() - startMs
    context.printJson({ path: stat.path, sizeBytes: stat.sizeBytes, chunkCount: stat.chunkCount, replication: stat.replication, elapsedMs, bytesPerSecond: rate(stat.sizeBytes, elapsedMs) })
  }
}

// 'dir/' or an existing directory receives the file under its local name.
async function resolvePutTarget (context: CommandContext, sourceArg: string, targetArg: string): Promise<string> {
  const target = normalizePath(targetArg)
  if (!await namesDirectory(context, targetArg)) return target
  if (sourceArg === '-') throw new GranaryError('GRN_INVALID_ARGUMENT', [`${targetArg} is a directory; reading stdin needs a file name to write to`])
  return joinPath(target, basename(sourceArg))
}

function explainPutError (err: unknown, sourceArg: string, target: string): unknown {
  if (isGranaryError(err) && err.code === 'GRN_EXISTS') {
    return new GranaryError('GRN_EXISTS', [], err.details, `${target} already exists (use --force to replace it)`)
  }
  return localError(err, sourceArg)
}

export async function get (context: CommandContext): Promise<void> {
  if (context.values.recursive === true) { await getTree(context); return }
  const { client, io, positionals } = context
  const source = normalizePath(positionals[0] as string)
  const stat = await client.stat(source, { signal: context.signal })
  if (stat.type === 'dir') throw new GranaryError('GRN_IS_DIR', [source])
  const startMs = Date.now()
  const localArg = positionals[1] ?? baseName(source)
  if (localArg === '-') {
    await toStdout(context, source, stat.sizeBytes)
    return
  }
  const target = await resolveGetTarget(localArg, baseName(source), context.values.force === true)
  const temp = join(dirname(target), `.${basename(target)}.granary-${process.pid}-${randomBytes(4).toString('hex')}.tmp`)
  const progress = Progress.start(io.stderr, `get ${source}`, stat.sizeBytes)
  try {
    const input = client.createReadStream(source, { signal: context.signal })
    const output = createWriteStream(temp, { flags: 'wx' })
    await (progress === undefined ? pipeline(input, output) : pipeline(input, progress.counter(), output))
    // The data reaches the disk before the name points at it: renamed unsynced, a power cut can leave the
    // target empty (the rename journaled, the data not yet written). fsync acts on the file, whatever the fd.
    await syncFile(temp)
    await rename(temp, target)
    await syncDirectory(dirname(target))   // and the rename itself
  } catch (err) {
    await rm(temp, { force: true })
    throw localError(err, target)
  } finally {
    progress?.stop()
  }
  if (context.json) {
    const elapsedMs = Date.now() - startMs
    context.printJson({ path: source, target, sizeBytes: stat.sizeBytes, elapsedMs, bytesPerSecond: rate(stat.sizeBytes, elapsedMs) })
  }
}

async function syncFile (path: string): Promise<void> {
  const file = await open(path, 'r+')
  try {
    await file.sync()
  } finally {
    await file.close()
  }
}

// A rename is on disk once its folder is: fsync the folder (POSIX). Where a folder cannot be opened or
// fsynced (Windows: EISDIR or EPERM; some network and FUSE file systems: EINVAL; a folder we may write but
// not read: EACCES), the rename is as durable as that file system makes it; the get itself succeeded.
async function syncDirectory (path: string): Promise<void> {
  const unsupported = (err: unknown): boolean => ['EISDIR', 'EPERM', 'EINVAL', 'EACCES'].includes((err as { code?: string }).code ?? '')
  const folder = await open(path, 'r').catch((err: unknown) => { if (unsupported(err)) return undefined; throw err })
  if (folder === undefined) return
  try {
    await folder.sync()
  } catch (err) {
    if (!unsupported(err)) throw err
  } finally {
    await folder.close()
  }
}

async function resolveGetTarget (localArg: string, name: string, force: boolean): Promise<string> {
  let target = localArg
  const existing = await localStat(localArg).catch(() => undefined)
  if (localArg.endsWith('/') || existing?.isDirectory() === true) target = join(localArg, name)
  const existingTarget = target === localArg ? existing : await localStat(target).catch(() => undefined)
  if (existingTarget?.isDirectory() === true) throw new GranaryError('GRN_IS_DIR', [target])
  if (existingTarget !== undefined && !force) {
    throw new GranaryError('GRN_EXISTS', [], { path: target }, `${target} already exists (use --force to replace it)`)
  }
  return target
}

export async function cat (context: CommandContext): Promise<void> {
  for (const arg of context.positionals) await toStdout(context, normalizePath(arg), null)
}

async function toStdout (context: CommandContext, source: string, sizeBytes: number | null): Promise<void> {
  const input = context.client.createReadStream(source, { signal: context.signal })
  const progress = sizeBytes === null ? undefined : Progress.start(context.io.stderr, `get ${source}`, sizeBytes)
  const output: Writable = context.io.stdout
  try {
    await (progress === undefined ? pipeline(input, output, { end: false }) : pipeline(input, progress.counter(), output, { end: false }))
  } finally {
    progress?.stop()
  }
}

async function localFileSize (path: string): Promise<number> {
  try {
    const stat = await localStat(path)
    if (stat.isDirectory()) throw new GranaryError('GRN_IS_DIR', [path])
    return stat.size
  } catch (err) {
    throw localError(err, path)
  }
}

// Local file system errors in Granary's words, so the CLI prints one kind of error line.
export function localError (err: unknown, path: string): unknown {
  if (isGranaryError(err)) return err
  const code = (err as { code?: unknown })?.code
  if (code === 'ENOENT') return new GranaryError('GRN_NOT_FOUND', [path])
  if (code === 'EISDIR') return new GranaryError('GRN_IS_DIR', [path])
  if (code === 'ENOTDIR') return new GranaryError('GRN_NOT_DIR', [path])
  if (code === 'EEXIST') return new GranaryError('GRN_EXISTS', [path])
  if (code === 'EACCES' || code === 'EPERM') return new GranaryError('GRN_INVALID_ARGUMENT', [`permission denied: ${path}`])
  if (code === 'ENOSPC') return new GranaryError('GRN_INVALID_ARGUMENT', [`no space left on the local disk for ${path}`])
  return err
}

function rate (bytes: number, elapsedMs: number): number {
  return Math.round(bytes / Math.max(0.001, elapsedMs / 1000))
}
