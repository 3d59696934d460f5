// The CLI commands that move bytes: put, get, cat. A failed put leaves nothing visible in Granary (the
// master abandons the unfinished file); a failed get leaves nothing on disk (temp file, fsynced, renamed at
// the end, then the folder fsynced: after a power cut the target is the old file or the whole new one).
// The data path is CPU-bound on a small box (docs/PERF-NOTES): every system call, thread-pool hop, stream
// handshake and Buffer shows in the rate. So a put reads its file in 4 MiB pieces (one read(2) each, not a
// thread-pool trip per 64 KiB) into a pool of reused Buffers (a fresh 4 MiB Buffer per read cost ~1 CPU-s per
// GiB in faults, mmap/munmap and GC), and a get or cat writes each piece the read stream delivers as it arrives,
// without a pause and resume of the read per piece; no stage touches the bytes on the way.
import { fstatSync, writeSync } from 'node:fs'
import { open, stat as localStat, rename, rm, type FileHandle } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import { Writable, type Readable } from 'node:stream'
import { GranaryError, isGranaryError } from '../../shared/errors.js'
import * as limits from '../../shared/limits.js'
import { BufferPool, readPooledPieces } from '../buffer-pool.js'
import { normalizePath, parentPath, joinPath, baseName } from '../../shared/paths.js'
import { parseReplication, parseSize } from './args.js'
import type { Progress } from './format.js'
import type { CommandContext } from './main.js'
import { putTree, getTree } from './tree.js'
import { namesDirectory } from './namespace.js'
import { hasGlob, expandRemote } from './glob.js'
import type { FileStat } from '../../shared/protocol.js'

const localPieceBytes = 4 * 1024 * 1024   // one read(2) of a local file moves this much
// Pieces the put pool keeps for reuse: what a write stream holds at most with default chunks (chunksInFlightMax
// chunks until their commits) plus a few in the stream's queue and in the read. Larger chunks still work (the
// pool lends fresh Buffers beyond this and lets the GC have them), only with less reuse.
const localPoolPiecesMax = Math.ceil(limits.chunksInFlightMax * limits.chunkSizeBytesDefault / localPieceBytes) + 4
const queueBytesMax = 4 * 1024 * 1024     // bytes a get or cat lets wait for a slow stdout before it pushes back

export async function put (context: CommandContext): Promise<void> {
  if (context.values.recursive === true) { await putTree(context); return }
  const sourceArg = context.positionals[0] as string
  // Opened before Granary is asked anything: a missing or unreadable local file creates nothing remotely.
  const local = sourceArg === '-' ? undefined : await openLocalFile(sourceArg)
  try {
    await putFrom(context, local)
  } finally {
    await local?.file.close()
  }
}

async function putFrom (context: CommandContext, local: LocalFile | undefined): Promise<void> {
  const { values, positionals } = context
  const [sourceArg, targetArg] = positionals as [string, string]
  const target = await resolvePutTarget(context, sourceArg, targetArg)
  const startMs = Date.now()
  const stat = await upload(context, local, sourceArg, target, {
    overwrite: values.force === true,
    replication: values.replication === undefined ? undefined : parseReplication(values.replication as string),
    chunkSizeBytes: values['chunk-size'] === undefined ? undefined : parseSize(values['chunk-size'] as string),
  })
  if (context.json && stat !== undefined) {
    const elapsedMs = Date.now() - startMs
    context.printJson({ path: stat.path, sizeBytes: stat.sizeBytes, chunkCount: stat.chunkCount, replication: stat.replication, elapsedMs, bytesPerSecond: rate(stat.sizeBytes, elapsedMs) })
  }
}

export interface UploadOptions { overwrite: boolean, replication?: number | undefined, chunkSizeBytes?: number | undefined }
const putExistsHint = 'use --force to replace it'

// One local file (or stdin, when `local` is undefined) into Granary at `target`, parents made. Shared by put,
// cp and sync. Returns the stored file's stat.
export async function upload (context: CommandContext, local: LocalFile | undefined, sourceArg: string, target: string, options: UploadOptions, existsHint = putExistsHint): Promise<FileStat | undefined> {
  const { client, io } = context
  const parent = parentPath(target)
  if (parent !== '/') await client.mkdir(parent, { recursive: true, signal: context.signal })
  const progress = context.progress(`put ${target}`, local === undefined ? null : local.sizeBytes)
  const pool = local === undefined ? undefined : localPool()
  const source: Readable | AsyncIterable<Buffer> = local === undefined || pool === undefined ? io.stdin : readPooledPieces(local.file, pool)
  const output = client.createWriteStream(target, {
    ...options,
    ...(local === undefined ? {} : { sizeBytes: local.sizeBytes }),
    signal: context.signal,
    ...(pool === undefined ? {} : { onBufferReleased: (buffer: Buffer) => { pool.give(buffer) } }),
  })
  try {
    await (progress === undefined ? pipeline(source, output) : pipeline(source, progress.counter(), output))
  } catch (err) {
    throw explainPutError(err, sourceArg, target, existsHint)
  } finally {
    progress?.stop()
  }
  return output.stat
}

export interface LocalFile { file: FileHandle, sizeBytes: number }

export async function openLocalFile (path: string): Promise<LocalFile> {
  let file: FileHandle | undefined
  try {
    file = await open(path, 'r')
    const stat = await file.stat()
    if (stat.isDirectory()) throw new GranaryError('GRN_IS_DIR', [path])
    return { file, sizeBytes: stat.size }
  } catch (err) {
    await file?.close()
    throw localError(err, path)
  }
}

// One pool per CLI process, shared by the uploads of a put, cp or sync one after another (or side by side:
// each Buffer is lent to one reader at a time).
let sharedPool: BufferPool | undefined
function localPool (): BufferPool {
  sharedPool ??= new BufferPool(localPieceBytes, localPoolPiecesMax)
  return sharedPool
}

// 'dir/' or an existing directory receives the file under its local name.
async function resolvePutTarget (context: CommandContext, sourceArg: string, targetArg: string): Promise<string> {
  const target = normalizePath(targetArg)
  if (!await namesDirectory(context, targetArg)) return target
  if (sourceArg === '-') throw new GranaryError('GRN_INVALID_ARGUMENT', [`${targetArg} is a directory; reading stdin needs a file name to write to`])
  return joinPath(target, basename(sourceArg))
}

function explainPutError (err: unknown, sourceArg: string, target: string, hint: string): unknown {
  if (isGranaryError(err) && err.code === 'GRN_EXISTS') {
    return new GranaryError('GRN_EXISTS', [], err.details, `${target} already exists (${hint})`)
  }
  return localError(err, sourceArg)
}

export async function get (context: CommandContext): Promise<void> {
  if (hasGlob(context.positionals[0] as string)) { await getMatches(context); return }
  if (context.values.recursive === true) { await getTree(context); return }
  const { client, positionals } = context
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
  await download(context, stat, target)
  if (context.json) {
    const elapsedMs = Date.now() - startMs
    context.printJson({ path: source, target, sizeBytes: stat.sizeBytes, elapsedMs, bytesPerSecond: rate(stat.sizeBytes, elapsedMs) })
  }
}

// `granary get '/logs/*.gz' [LOCALDIR|-]`: every match into LOCALDIR (default: here) under its name, or all
// to stdout one after another; folders need -r (each becomes LOCALDIR/<name>).
async function getMatches (context: CommandContext): Promise<void> {
  const matches = await expandRemote(context.client, context.positionals[0] as string, context.signal)
  const localArg = context.positionals[1] ?? '.'
  const force = context.values.force === true
  const folders = matches.filter((m) => m.type === 'dir')
  if (folders.length > 0 && context.values.recursive !== true) throw new GranaryError('GRN_IS_DIR', [], undefined, `${(folders[0] as FileStat).path} is a directory (get -r copies folders)`)
  if (localArg === '-') {
    if (folders.length > 0) throw new GranaryError('GRN_INVALID_ARGUMENT', ['get of a glob to stdout takes files only'])
    for (const match of matches) await toStdout(context, match.path, match.sizeBytes)
    return
  }
  const into = await localStat(localArg).catch(() => undefined)
  if (into?.isDirectory() !== true) {
    if (matches.length > 1 || localArg.endsWith('/')) throw new GranaryError('GRN_NOT_DIR', [], undefined, `${localArg} is not a folder (a glob matching several entries needs one)`)
  }
  const done: string[] = []
  for (const match of matches) {
    const target = into?.isDirectory() === true ? join(localArg, baseName(match.path)) : localArg
    if (match.type === 'dir') {
      const { unpackLocalDirectory } = await import('../tar-local.js')
      await unpackLocalDirectory(target, context.client.packDirectory(match.path, { signal: context.signal }), { overwrite: force, signal: context.signal })
    } else {
      await download(context, match, await resolveGetTarget(target, baseName(match.path), force))
    }
    done.push(target)
  }
  if (context.json) context.printJson(matches.map((m, i) => ({ path: m.path, target: done[i], type: m.type, sizeBytes: m.sizeBytes })))
}

// One Granary file to the local path `target` through a temp file beside it: fsynced, renamed, folder fsynced.
// Shared by get, cp and sync.
export async function download (context: CommandContext, stat: FileStat, target: string): Promise<void> {
  const { client } = context
  const source = stat.path
  const temp = join(dirname(target), `.${basename(target)}.granary-${process.pid}-${randomBytes(4).toString('hex')}.tmp`)
  const progress = context.progress(`get ${source}`, stat.sizeBytes)
  try {
    const file = await open(temp, 'wx')
    try {
      await copyPieces(client.createReadStream(source, { signal: context.signal }), progress, fileSink(file.fd))
      // The data reaches the disk before the name points at it: renamed unsynced, a power cut can leave the
      // target empty (the rename journaled, the data not yet written).
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(temp, target)
    await syncDirectory(dirname(target))   // and the rename itself
  } catch (err) {
    await rm(temp, { force: true })
    throw localError(err, target)
  } finally {
    progress?.stop()
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

export async function resolveGetTarget (localArg: string, name: string, force: boolean): Promise<string> {
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
  const progress = sizeBytes === null ? undefined : context.progress(`get ${source}`, sizeBytes)
  const fd = fileDescriptorOf(context.io.stdout)
  try {
    await (fd === undefined ? copyToStream(input, progress, context.io.stdout) : copyPieces(input, progress, fileSink(fd)))
  } finally {
    progress?.stop()
  }
}

// Where a get or cat puts each piece: returns once the piece is taken, or a promise when the target is full.
type PieceSink = (piece: Buffer) => Promise<void> | undefined

// Copies a Granary read stream to `sink` one piece at a time, as each arrives: the read stream's own 64 KiB
// Buffers, never copied and never held back to be merged into bigger writes (a Buffer held past a scavenge is
// promoted, and then only a full GC frees it: that cost more than the write(2) calls it saved). The
// progress counter (a terminal only) sees each piece as it goes by.
async function copyPieces (input: Readable, progress: Progress | undefined, sink: PieceSink): Promise<void> {
  const output = new Writable({
    highWaterMark: queueBytesMax,
    write (piece: Buffer, _encoding, callback) {
      let waiting: Promise<void> | undefined
      try {
        waiting = sink(piece)
      } catch (err) {
        callback(err as Error)
        return
      }
      if (waiting === undefined) callback()
      else waiting.then(() => { callback() }, (err: Error) => { callback(err) })
    },
  })
  await (progress === undefined ? pipeline(input, output) : pipeline(input, progress.counter(), output))
}

// A local file, written synchronously the way node writes a stdout that is a file: one write(2) per piece
// straight into the page cache, with no thread-pool round trip and no stream handshake per piece.
function fileSink (fd: number): PieceSink {
  return (piece) => {
    for (let offsetBytes = 0; offsetBytes < piece.length;) offsetBytes += writeSync(fd, piece, offsetBytes)
    return undefined
  }
}

// A stdout that is a file or a device such as /dev/null: node writes those synchronously, one write(2) per
// piece (its SyncWriteStream, which never holds bytes back); the same write(2) straight to its descriptor skips
// a stream's bookkeeping per piece. Not a terminal, pipe or socket (those node writes asynchronously).
function fileDescriptorOf (output: Writable & { fd?: unknown, isTTY?: boolean }): number | undefined {
  const fd = output.fd
  if (typeof fd !== 'number' || output.isTTY === true || output.writableLength > 0) return undefined
  try {
    const stat = fstatSync(fd)
    return stat.isFile() || stat.isCharacterDevice() ? fd : undefined
  } catch {
    return undefined
  }
}

// Any other stdout (a pipe, a terminal, a test's stream): each piece is written at once, and the copy
// waits only when more than queueBytesMax is still queued. Waiting for 'drain' after every piece instead (what
// pipe() does once a piece is over the stream's 16 KiB highWaterMark) paused and resumed the read per piece.
// Its 'error' is watched for the whole copy: node's stdout may report a failed write (ENOSPC) only that way.
async function copyToStream (input: Readable, progress: Progress | undefined, output: Writable): Promise<void> {
  let failure: Error | null = null
  const onError = (err: Error): void => { failure ??= err }
  const throwIfFailed = (): void => {
    const err = failure ?? output.errored
    if (err !== null) throw err
    if (output.destroyed) throw new GranaryError('GRN_ABORTED', ['stdout was closed'])
  }
  output.on('error', onError)
  try {
    await copyPieces(input, progress, (piece) => {
      throwIfFailed()
      const room = output.write(piece)
      throwIfFailed()
      return room || output.writableLength < queueBytesMax ? undefined : drained(output)
    })
  } finally {
    output.off('error', onError)
  }
}

async function drained (output: Writable): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const settle = (err?: Error | null): void => {
      output.off('drain', onDrain)
      output.off('error', settle)
      output.off('close', onClose)
      if (err === undefined || err === null) resolve()
      else reject(err)
    }
    const onDrain = (): void => { settle() }
    const onClose = (): void => { settle(output.errored ?? new GranaryError('GRN_ABORTED', ['stdout was closed'])) }
    output.on('drain', onDrain)
    output.on('error', settle)
    output.on('close', onClose)
  })
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
