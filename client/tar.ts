// Folders as tar streams (tar-stream), for `granary put -r` / `get -r` and client.packDirectory /
// unpackDirectory. Memory stays bounded: files up to tarFileBytesBufferedMax move whole, up to
// tarFilesInFlightMax at once (read ahead in order when packing, written side by side when unpacking);
// bigger files stream through one at a time with backpressure. What a tar keeps: names, file bytes, modes
// (permission bits, stored by the master) and file mtimes; folder mtimes are Granary's own (the time of their
// last change). A folder that already exists keeps its mode, like tar over an existing folder. Symlinks, hard
// links and devices are refused. An entry whose name is absolute or has a '..' segment is refused with
// GRN_INVALID_PATH before anything of it is written, so nothing ever lands outside the target.
import { Readable } from 'node:stream'
import { getMaxListeners, setMaxListeners } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { createRequire } from 'node:module'
import type tarStreamModule from 'tar-stream'
import type { Header, Pack, Extract } from 'tar-stream'
import { GranaryError } from '../shared/errors.js'
import { joinPath, normalizePath } from '../shared/paths.js'
import type { FileStat } from '../shared/protocol.js'
import * as limits from '../shared/limits.js'
import { throwIfAborted } from './retry.js'
import type { GranaryClient } from './index.js'

// tar-stream (and the 13 modules it requires) is loaded by the first pack or unpack, not with the client:
// every `granary cat` and `granary stat` loads this file through client/index.ts, and loading tar-stream was
// ~20 ms of CPU of such a process (issue 11 item 3). tar-local.ts uses the same loader.
let tarStreamLoaded: typeof tarStreamModule | undefined
export function tarStream (): typeof tarStreamModule {
  tarStreamLoaded ??= createRequire(import.meta.url)('tar-stream') as typeof tarStreamModule
  return tarStreamLoaded
}

export interface PackOptions { signal?: AbortSignal, deadlineMs?: number }
export interface UnpackOptions {
  overwrite?: boolean           // replace existing files (atomically, each on completion); default: GRN_EXISTS
  keepMtimes?: boolean          // give each file the tar's mtime (default true); else the time it was stored
  replication?: number
  chunkSizeBytes?: number
  signal?: AbortSignal
  deadlineMs?: number
}
export interface UnpackResult { fileCount: number, dirCount: number, sizeBytes: number }
export type EntryHeader = Partial<Header> & Pick<Header, 'name'>

// ---- entry names --------------------------------------------------------------------------------------

// The path segments of a tar entry name, relative to the target: '' and '.' segments dropped (so './a/b'
// is 'a/b' and './' is the target itself). Absolute names and '..' segments are refused.
export function tarEntryNames (name: string): string[] {
  const shown = JSON.stringify(name.length > 200 ? `${name.slice(0, 197)}...` : name)
  if (name.includes('\u0000')) throw new GranaryError('GRN_INVALID_PATH', [shown, 'a tar entry name contains NUL'])
  if (name.startsWith('/') || /^[a-zA-Z]:[\\/]/.test(name)) {
    throw new GranaryError('GRN_INVALID_PATH', [shown, 'tar entry names must be relative; an absolute name would be written outside the target'])
  }
  const names = name.split('/').filter((segment) => segment !== '' && segment !== '.')
  if (names.includes('..')) throw new GranaryError('GRN_INVALID_PATH', [shown, "a '..' segment in a tar entry would escape the target; refused"])
  return names
}

export function refuseEntryType (header: EntryHeader): never {
  throw new GranaryError('GRN_INVALID_ARGUMENT', [`tar entry ${JSON.stringify(header.name)} is a ${header.type ?? 'unknown type'}: ` +
    'only files and folders are stored (symlinks, hard links and devices are refused)'])
}

// ---- packing ------------------------------------------------------------------------------------------

interface PackItem { stat: FileStat, name: string, data?: Promise<Buffer> }

// A tar of everything under `root` (not `root` itself): folders before their contents, names sorted.
export function packDirectory (client: GranaryClient, root: string, options: PackOptions = {}): Readable {
  allowListeners(options.signal)
  const pack = tarStream().pack()
  pack.on('error', () => {})   // its errors reach the reader through the Readable below; a destroy must not throw
  const call = { signal: options.signal, deadlineMs: options.deadlineMs }
  const produce = async (): Promise<void> => {
    const top = await client.stat(root, call)
    if (top.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [root])
    const queue: PackItem[] = []
    const stack: FileStat[] = [top]
    // Depth first, one folder listing at a time; `stack` holds folders still to list (bounded by readdirEntriesMax).
    for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
      if (dir !== top) await enqueue(pack, queue, { stat: dir, name: relativeName(root, dir.path) + '/' })
      const subdirs: FileStat[] = []
      for (const entry of await client.readdir(dir.path, { ...call, withStats: true })) {
        if (entry.type === 'dir') { subdirs.push(entry); continue }
        const item: PackItem = { stat: entry, name: relativeName(root, entry.path) }
        if (entry.sizeBytes <= limits.tarFileBytesBufferedMax) item.data = readAhead(client, entry.path, call)
        await enqueue(pack, queue, item)
      }
      stack.push(...subdirs.reverse())
      if (stack.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders waiting to be packed under ${root}`, limits.readdirEntriesMax])
      throwIfAborted(options.signal)
    }
    while (queue.length > 0) await emit(client, pack, queue.shift() as PackItem, call)
  }
  produce().then(() => { pack.finalize() }, (err: Error) => { pack.destroy(err) })
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false })

  async function enqueue (target: Pack, queue: PackItem[], item: PackItem): Promise<void> {
    queue.push(item)
    while (queue.length > limits.tarFilesInFlightMax) await emit(client, target, queue.shift() as PackItem, call)
  }
}

function readAhead (client: GranaryClient, path: string, call: PackOptions): Promise<Buffer> {
  const data = client.readFile(path, call)
  data.catch(() => {})   // awaited in order later; until then a failure must not count as unhandled
  return data
}

async function emit (client: GranaryClient, pack: Pack, item: PackItem, call: PackOptions): Promise<void> {
  const { stat, name } = item
  const header: EntryHeader = { name, mtime: new Date(stat.mtimeMs), type: stat.type === 'dir' ? 'directory' : 'file', mode: stat.mode }
  if (stat.type === 'dir') { await addEntry(pack, header); return }
  if (item.data !== undefined) { await addEntry(pack, header, await item.data); return }
  header.size = stat.sizeBytes
  await addEntry(pack, header, client.createReadStream(stat.path, { signal: call.signal, deadlineMs: call.deadlineMs }))
}

function relativeName (root: string, path: string): string {
  return root === '/' ? path.slice(1) : path.slice(root.length + 1)
}

// Adds one entry and resolves when the pack has taken all of it. A streamed body is written with
// backpressure: the pack pauses it while its reader is behind.
export async function addEntry (pack: Pack, header: EntryHeader, body?: Buffer | AsyncIterable<Buffer>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error | null): void => { if (err === undefined || err === null) resolve(); else reject(err) }
    if (body === undefined || Buffer.isBuffer(body)) { pack.entry(header, body ?? Buffer.alloc(0), done); return }
    const sink = pack.entry(header, done)
    // Failures are reported through `done` and the pack; a destroyed sink, or a node stream body destroyed
    // by the loop below when it is left early, must not raise an uncaught 'error' as well.
    sink.on('error', () => {})
    if (body instanceof Readable) body.on('error', () => {})
    const copy = async (): Promise<void> => {
      for await (const piece of body) {
        if (!sink.write(piece)) await drained(sink)
      }
      sink.end(null)
    }
    copy().catch((err: Error) => { sink.destroy(err); reject(err) })
  })
}

// Resolves on 'drain'; rejects if the stream closes first (its reader went away).
export function drained (stream: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = (): void => { cleanup(); resolve() }
    const onClose = (): void => { cleanup(); reject(new GranaryError('GRN_ABORTED', ['the tar stream was closed'])) }
    const cleanup = (): void => { stream.off('drain', onDrain); stream.off('close', onClose) }
    stream.on('drain', onDrain)
    stream.on('close', onClose)
  })
}

// Every operation in flight listens for the caller's signal (its requests, its backoff sleeps): more than
// node's default of 10 listeners is expected here, not a leak.
function allowListeners (signal: AbortSignal | undefined): void {
  const wantedMax = 8 * (limits.tarFilesInFlightMax + 1)
  if (signal !== undefined && getMaxListeners(signal) < wantedMax) setMaxListeners(wantedMax, signal)
}

// ---- unpacking ----------------------------------------------------------------------------------------

// Stores every entry of `tar` under `root` (made if missing). Small files are written side by side.
export async function unpackDirectory (client: GranaryClient, root: string, tar: AsyncIterable<Buffer | Uint8Array> | Readable,
  options: UnpackOptions = {}): Promise<UnpackResult> {
  const call = { signal: options.signal, deadlineMs: options.deadlineMs }
  allowListeners(options.signal)
  await client.mkdir(root, { ...call, recursive: true })
  const result: UnpackResult = { fileCount: 0, dirCount: 0, sizeBytes: 0 }
  const writes = new InFlight(limits.tarFilesInFlightMax)
  const extract = tarStream().extract()
  feedExtract(tar, extract)
  try {
    for await (const source of extract) {
      throwIfAborted(options.signal)
      writes.throwIfFailed()
      const header = source.header
      const entry = source as unknown as AsyncIterable<Buffer>
      const names = tarEntryNames(header.name)
      const target = normalizePath(names.length === 0 ? root : joinPath(root, names.join('/')))
      if (header.type === 'directory') {
        await drain(entry)
        if (names.length > 0) await client.mkdir(target, { ...call, recursive: true, mode: modeOf(header) })
        result.dirCount++
        continue
      }
      if (header.type !== 'file' && header.type !== 'contiguous-file') refuseEntryType(header)
      if (names.length === 0) throw new GranaryError('GRN_INVALID_PATH', [JSON.stringify(header.name), 'a file entry names the target folder itself'])
      const writeOptions = {
        ...call, overwrite: options.overwrite === true, replication: options.replication, chunkSizeBytes: options.chunkSizeBytes,
        mtimeMs: options.keepMtimes === false ? undefined : mtimeMsOf(header), mode: modeOf(header)
      }
      const sizeBytes = header.size ?? 0
      if (sizeBytes <= limits.tarFileBytesBufferedMax) {
        const data = await collect(entry, header)
        await writes.add(client.writeFile(target, data, writeOptions))
      } else {
        await pipeline(iterate(entry, header), client.createWriteStream(target, writeOptions))
      }
      result.fileCount++
      result.sizeBytes += sizeBytes
    }
    await writes.settle()
    writes.throwIfFailed()
    return result
  } catch (err) {
    throw tarError(err)
  } finally {
    extract.destroy()
    await writes.settle()
  }
}

// Pumps the tar's bytes into the extractor with backpressure; a failing source fails the extraction.
export function feedExtract (tar: AsyncIterable<Buffer | Uint8Array> | Readable, extract: Extract): void {
  // Leaving the loop early (the extraction failed) destroys a node stream source with an AbortError that no
  // one else listens for: it must not become an uncaught exception.
  if (tar instanceof Readable) tar.on('error', () => {})
  const pump = async (): Promise<void> => {
    for await (const piece of tar as AsyncIterable<Buffer | Uint8Array>) {
      if (extract.destroyed) return
      if (!extract.write(Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength))) await drained(extract)
    }
    extract.end(null)
  }
  pump().catch((err: unknown) => { extract.destroy(err as Error) })
}

// tar-stream's own failures ('Unexpected end of data', 'Invalid tar header...') carry no code: in Granary's words.
export function tarError (err: unknown): unknown {
  const e = err as { code?: unknown, message?: unknown } | null
  if (typeof e?.code === 'string' || !(err instanceof Error)) return err
  return new GranaryError('GRN_INVALID_ARGUMENT', [`not a valid tar stream: ${String(e?.message)}`])
}

// Permission bits only: a tar's mode field may carry type bits too (some writers set them).
export function modeOf (header: EntryHeader): number | undefined {
  return header.mode === undefined ? undefined : header.mode & 0o7777
}

export function mtimeMsOf (header: EntryHeader): number | undefined {
  const ms = header.mtime?.getTime()
  return ms === undefined || !Number.isFinite(ms) || ms < 0 ? undefined : Math.floor(ms)
}

// An entry's body as a plain async iterable (node's pipeline must not treat the streamx stream as a node
// stream), checked to hold exactly the header's size: a truncated tar ends an entry early without an error,
// and a short file must never be stored as if it were whole.
export async function * iterate (entry: AsyncIterable<Buffer>, header: EntryHeader): AsyncGenerator<Buffer> {
  const sizeBytes = header.size ?? 0
  let totalBytes = 0
  for await (const piece of entry) {
    totalBytes += piece.length
    if (totalBytes > sizeBytes) break
    yield piece
  }
  if (totalBytes !== sizeBytes) throw truncated(header, totalBytes)
}

function truncated (header: EntryHeader, totalBytes: number): GranaryError {
  return new GranaryError('GRN_INVALID_ARGUMENT', [`tar entry ${JSON.stringify(header.name)} holds ${totalBytes} bytes, its header says ${header.size ?? 0} (a truncated or corrupt tar)`])
}

async function drain (entry: AsyncIterable<Buffer>): Promise<void> {
  for await (const _piece of entry) { /* folders have no body; skip whatever a writer put there */ }
}

export async function collect (entry: AsyncIterable<Buffer>, header: EntryHeader): Promise<Buffer> {
  const pieces: Buffer[] = []
  let totalBytes = 0
  for await (const piece of iterate(entry, header)) {
    totalBytes += piece.length
    pieces.push(piece)
  }
  return Buffer.concat(pieces, totalBytes)
}

// At most `countMax` operations at once; the first failure is kept and reported, and no new one starts after it.
export class InFlight {
  readonly #countMax: number
  readonly #running = new Set<Promise<void>>()
  #failure: unknown

  constructor (countMax: number) { this.#countMax = countMax }

  async add (operation: Promise<unknown>): Promise<void> {
    const settled: Promise<void> = operation.then(() => {}, (err: unknown) => { this.#failure ??= err })
      .finally(() => { this.#running.delete(settled) })
    this.#running.add(settled)
    // Each pass waits for one operation to settle and remove itself, so this loop ends.
    while (this.#running.size >= this.#countMax) await Promise.race(this.#running)
    this.throwIfFailed()
  }

  throwIfFailed (): void {
    if (this.#failure !== undefined) throw this.#failure
  }

  async settle (): Promise<void> {
    while (this.#running.size > 0) await Promise.race(this.#running)
  }
}
