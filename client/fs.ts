// `client.fs`: the node:fs/promises-shaped face of a GranaryClient, so a Node app can swap its storage backend.
// Same method names, arguments, return values (Stats-like objects, Dirent-like entries, mkdir's first created
// path) and errors (err.code === 'ENOENT' ..., see fs-errors.ts) as node:fs, proven call by call against
// node:fs/promises in test/cluster/fs-conformance.test.ts. What differs by design is refused with ENOTSUP
// or listed in docs/API.md: no append or partial overwrite (Granary files are written once, whole), a new
// file is visible only when its write completes, paths are absolute and normalised, no symlinks; modes are kept as given (no umask).
import type { Readable } from 'node:stream'
import { constants as fsConstants } from 'node:fs'
import { GranaryError, isGranaryError, type ErrorCode } from '../shared/errors.js'
import { normalizePath, splitPath } from '../shared/paths.js'
import * as limits from '../shared/limits.js'
import type { GranaryClient, WriteData } from './index.js'
import type { GranaryWriteStream, WriteOptions } from './write.js'
import { asFs, fsError, toFsError, type ErrorPlace, type GranaryFsError } from './fs-errors.js'
import { GranaryStats, GranaryDirent } from './fs-stats.js'
import { mappedReadable, FsWriteStream } from './fs-streams.js'
import { GranaryDir, type FsOpendirOptions } from './fs-dir.js'
import { copyFile, cp, truncate, type FsCpOptions } from './fs-copy.js'
import { randomBytes } from 'node:crypto'

export interface FsCallOptions { signal?: AbortSignal, deadlineMs?: number }
export interface FsReadFileOptions extends FsCallOptions { encoding?: BufferEncoding | null, flag?: string }
export interface FsWriteFileOptions extends FsCallOptions, Pick<WriteOptions, 'replication' | 'chunkSizeBytes' | 'mtimeMs' | 'mode' | 'onProgress'> {
  encoding?: BufferEncoding | null
  flag?: string                 // 'w' (default: replace atomically on completion) or 'wx' (fail with EEXIST)
}
export interface FsReaddirOptions extends FsCallOptions { withFileTypes?: boolean, recursive?: boolean, encoding?: BufferEncoding | null }
export interface FsMkdirOptions extends FsCallOptions { recursive?: boolean, mode?: number }
// skipTrash (Granary's own): delete for good instead of moving to /.trash (unlink, rmdir and rm take it).
export interface FsRmOptions extends FsCallOptions { recursive?: boolean, force?: boolean, skipTrash?: boolean, maxRetries?: number, retryDelay?: number }
export interface FsReadStreamOptions extends FsCallOptions {
  start?: number                // first byte, default 0
  end?: number                  // last byte, INCLUSIVE, default the end of the file; past EOF reads to EOF
  highWaterMark?: number
  encoding?: BufferEncoding | null
}
export interface FsWriteStreamOptions extends FsCallOptions, Pick<WriteOptions, 'replication' | 'chunkSizeBytes' | 'mtimeMs' | 'highWaterMark' | 'mode' | 'onProgress'> {
  flags?: string                // 'w' (default) or 'wx'; 'a', 'r+' and a non-zero start are ENOTSUP
  start?: number
}

export class GranaryFs {
  readonly constants = fsConstants
  readonly #client: GranaryClient

  constructor (client: GranaryClient) {
    this.#client = client
  }

  // ---- whole files ------------------------------------------------------------------------------------
  readFile (path: string, options?: (FsReadFileOptions & { encoding?: null }) | null): Promise<Buffer>
  readFile (path: string, options: BufferEncoding | (FsReadFileOptions & { encoding: BufferEncoding })): Promise<string>
  readFile (path: string, options?: BufferEncoding | FsReadFileOptions | null): Promise<Buffer | string>
  async readFile (path: string, options?: BufferEncoding | FsReadFileOptions | null): Promise<Buffer | string> {
    const { encoding, flag, ...call } = typeof options === 'string' ? { encoding: options } : options ?? {}
    if (flag !== undefined && flag !== 'r') throw notSupported('open', path, `readFile flag '${flag}': Granary files are read-only once written`)
    try {
      const data = await this.#client.readFile(normalizePath(path), call)
      return encoding === undefined || encoding === null ? data : data.toString(encoding)
    } catch (err) {
      throw readError(err, path)
    }
  }

  // Stores data as the whole file. flag 'w' replaces an existing file atomically when the write completes
  // (readers see the old or the new file, never a mix); 'wx' fails with EEXIST. The parent must exist (ENOENT).
  async writeFile (path: string, data: WriteData, options?: BufferEncoding | FsWriteFileOptions | null): Promise<void> {
    const { encoding, flag, ...rest } = typeof options === 'string' ? { encoding: options } : options ?? {}
    const overwrite = writeFlag(flag ?? 'w', path)
    const bytes = typeof data === 'string' ? Buffer.from(data, encoding ?? 'utf8') : data
    await asFs({ syscall: 'open', path }, async () => {
      await this.#client.writeFile(normalizePath(path), bytes, { ...rest, overwrite, parents: false })
    })
  }

  // Granary files are immutable once complete: there is no append. Read, concatenate and writeFile instead.
  async appendFile (path: string, _data?: WriteData, _options?: unknown): Promise<never> {
    throw notSupported('open', path, 'appendFile: Granary files are written once, whole; there is no append')
  }

  // ---- directories ------------------------------------------------------------------------------------
  readdir (path: string, options: FsReaddirOptions & { withFileTypes: true }): Promise<GranaryDirent[]>
  readdir (path: string, options?: (FsReaddirOptions & { withFileTypes?: false }) | BufferEncoding | null): Promise<string[]>
  async readdir (path: string, options?: FsReaddirOptions | BufferEncoding | null): Promise<string[] | GranaryDirent[]> {
    const { withFileTypes, recursive, encoding: _encoding, ...call } = typeof options === 'string' ? { encoding: options } : options ?? {}
    const root = normalizePath(path)
    return await asFs({ syscall: 'scandir', path }, async () => {
      const found: GranaryDirent[] = []
      // Breadth-first over a bounded queue of folders (no recursion over the namespace).
      const queue = [root]
      for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
        for (const entry of await this.#client.readdir(next, { ...call, withStats: true })) {
          const name = entry.path.slice(entry.path.lastIndexOf('/') + 1)
          found.push(new GranaryDirent(name, next, entry.type))
          if (recursive === true && entry.type === 'dir') queue.push(entry.path)
          if (found.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`readdir of ${root}`, limits.readdirEntriesMax])
        }
      }
      if (withFileTypes === true) return found
      return found.map((d) => d.parentPath === root ? d.name : `${d.parentPath.slice(root === '/' ? 1 : root.length + 1)}/${d.name}`)
    })
  }

  // node's fs.Dir: entries fetched a page at a time (bufferSize: entries per page, up to listPageSizeMax), so a
  // huge folder is walked in bounded memory. ENOENT for a missing path, ENOTDIR for a file, at once (client/fs-dir.ts).
  async opendir (path: string, options: FsOpendirOptions = {}): Promise<GranaryDir> {
    const place: ErrorPlace = { syscall: 'opendir', path }
    const target = normalizePath(path)
    if (await this.#typeOf(target, options, place) === 'file') throw fsError('ENOTDIR', 'GRN_NOT_DIR', place)
    return new GranaryDir(this.#client, path, target, options)
  }

  // A new folder named prefix + 6 random characters (A-Z, a-z, 0-9), like node; the prefix's folder must exist.
  async mkdtemp (prefix: string, options: FsCallOptions & { encoding?: BufferEncoding | null } | BufferEncoding | null = {}): Promise<string> {
    const { encoding: _encoding, ...call } = typeof options === 'string' || options === null ? {} : options
    for (let attempt = 1; ; attempt++) {
      const path = normalizePath(prefix + randomName())
      try {
        await this.#client.mkdir(path, call)
        return path
      } catch (err) {
        // Like node, the error names the path tried (the prefix plus this attempt's six characters).
        if (!isGranaryError(err) || err.code !== 'GRN_EXISTS' || attempt >= mkdtempAttemptsMax) throw toFsError(err, { syscall: 'mkdtemp', path })
      }
    }
  }

  // Like node: undefined, or with recursive the first directory it created (undefined when all existed).
  async mkdir (path: string, options?: FsMkdirOptions | number | null): Promise<string | undefined> {
    const { recursive, mode, ...call } = typeof options === 'number' ? { mode: options } : options ?? {}
    return await asFs({ syscall: 'mkdir', path }, async () => {
      const target = normalizePath(path)
      if (recursive !== true) {
        await this.#client.mkdir(target, { ...call, mode })
        return undefined
      }
      const first = await this.#firstMissing(target, call)
      if (first === null) return undefined
      await this.#client.mkdir(target, { ...call, recursive: true, mode })
      return first
    })
  }

  // The highest missing folder on the way to `target`: undefined when the target exists as a file (mkdir
  // then fails with EEXIST) or a component is a file (ENOTDIR); null when the target is already a folder.
  async #firstMissing (target: string, call: FsCallOptions): Promise<string | null | undefined> {
    const names = splitPath(target)
    let first: string | undefined
    for (let depth = names.length; depth >= 0; depth--) {
      const prefix = '/' + names.slice(0, depth).join('/')
      const type = await this.#typeOf(prefix, call)
      if (type === 'missing') { first = prefix; continue }
      if (depth === names.length && type === 'dir') return null
      return type === 'dir' ? first : undefined
    }
    return first
  }

  // ---- copies (client-side: the bytes pass through this client; client/fs-copy.ts) ---------------------
  // mode: fs.constants.COPYFILE_EXCL (EEXIST if the target exists); COPYFILE_FICLONE_FORCE is ENOTSUP.
  async copyFile (source: string, target: string, mode: number = 0, options: FsCallOptions = {}): Promise<void> {
    await copyFile(this.#client, source, target, mode, options)
  }

  // node's cp: a file like copyFile, a folder with { recursive: true } (as a tar stream through this client).
  async cp (source: string, target: string, options: FsCpOptions = {}): Promise<void> {
    await cp(this.#client, source, target, options)
  }

  // Keeps the first `length` bytes (or pads with zeros): Granary rewrites the file client-side (atomic replace).
  async truncate (path: string, length = 0, options: FsCallOptions = {}): Promise<void> {
    await truncate(this.#client, path, length, options)
  }

  // ---- names ------------------------------------------------------------------------------------------
  // No symlinks: the normalised path of something that exists ('//' folded); ENOENT otherwise.
  async realpath (path: string, options: FsCallOptions & { encoding?: BufferEncoding | 'buffer' | null } | BufferEncoding | null = {}): Promise<string> {
    const { encoding: _encoding, ...call } = typeof options === 'string' || options === null ? {} : options
    const target = normalizePath(path)
    await this.#typeOf(target, call, { syscall: 'realpath', path })
    return target
  }

  // Nothing in Granary is a symlink: EINVAL for anything that exists (as node says of a regular file), else ENOENT.
  async readlink (path: string, options: FsCallOptions = {}): Promise<never> {
    const place: ErrorPlace = { syscall: 'readlink', path }
    await this.#typeOf(normalizePath(path), options, place)
    throw fsError('EINVAL', 'GRN_INVALID_ARGUMENT', place, undefined, 'Granary has no symbolic links')
  }

  // What Granary does not do, refused with ENOTSUP (not a TypeError) so callers can branch on err.code.
  async open (path: string): Promise<never> { throw notSupported('open', path, 'no file handles: use readFile/createReadStream, writeFile/createWriteStream') }
  async symlink (target: string, path: string): Promise<never> { throw notSupported('symlink', path, `Granary has no symbolic links (target ${target})`) }
  async link (existing: string, path: string): Promise<never> { throw notSupported('link', path, `Granary has no hard links (to ${existing}); copyFile copies`) }
  async chmod (path: string): Promise<never> { throw notSupported('chmod', path, 'modes are set when a file or folder is made (writeFile/mkdir mode)') }
  async lchmod (path: string): Promise<never> { throw notSupported('lchmod', path, 'modes are set when a file or folder is made') }
  async chown (path: string): Promise<never> { throw notSupported('chown', path, 'Granary keeps no owners') }
  async lchown (path: string): Promise<never> { throw notSupported('lchown', path, 'Granary keeps no owners') }
  async utimes (path: string): Promise<never> { throw notSupported('utime', path, 'mtimes are set when a file completes (writeFile mtimeMs)') }
  async lutimes (path: string): Promise<never> { throw notSupported('lutime', path, 'mtimes are set when a file completes') }
  async statfs (path: string): Promise<never> { throw notSupported('statfs', path, 'use client.report() for cluster space') }
  // node's watch returns an async iterable; Granary has no change feed for clients yet: refused at once.
  watch (path: string): never { throw notSupported('watch', path, 'no change notifications; poll stat or readdir') }
  async glob (pattern: string): Promise<never> { throw notSupported('glob', pattern, 'use readdir({ recursive: true }) or the CLI\'s remote globs') }

  async rename (oldPath: string, newPath: string, options: FsCallOptions = {}): Promise<void> {
    await asFs({ syscall: 'rename', path: oldPath, dest: newPath }, async () => {
      await this.#client.rename(normalizePath(oldPath), normalizePath(newPath), options)
    })
  }

  // Like node's rm: a folder needs recursive (else ERR_FS_EISDIR, even when empty); force ignores a missing path.
  async rm (path: string, options: FsRmOptions = {}): Promise<void> {
    const { recursive, force, maxRetries: _retries, retryDelay: _delay, ...call } = options
    const target = normalizePath(path)
    if (recursive !== true) {
      const type = await this.#typeOf(target, call, force === true ? undefined : { syscall: 'lstat', path })
      if (type === 'missing') return
      if (type === 'dir') throw rmIsDirError(path)
    }
    try {
      await this.#client.rm(target, { ...call, recursive: recursive === true, force: force === true })
    } catch (err) {
      throw toFsError(err, { syscall: isGranaryError(err) && err.code === 'GRN_NOT_FOUND' ? 'lstat' : 'rm', path })
    }
  }

  async unlink (path: string, options: FsCallOptions & { skipTrash?: boolean } = {}): Promise<void> {
    const target = normalizePath(path)
    const place: ErrorPlace = { syscall: 'unlink', path }
    if (await this.#typeOf(target, options, place) === 'dir') throw fsError('EISDIR', 'GRN_IS_DIR', place)
    await asFs(place, async () => { await this.#client.rm(target, options) })
  }

  async rmdir (path: string, options: FsCallOptions & { skipTrash?: boolean } = {}): Promise<void> {
    const target = normalizePath(path)
    const place: ErrorPlace = { syscall: 'rmdir', path }
    if (await this.#typeOf(target, options, place) === 'file') throw fsError('ENOTDIR', 'GRN_NOT_DIR', place)
    await asFs(place, async () => { await this.#client.rm(target, options) })
  }

  // ---- metadata ---------------------------------------------------------------------------------------
  async stat (path: string, options: FsCallOptions = {}): Promise<GranaryStats> {
    return await asFs({ syscall: 'stat', path }, async () => new GranaryStats(await this.#client.stat(normalizePath(path), options)))
  }

  // Granary has no symlinks: lstat is stat.
  async lstat (path: string, options: FsCallOptions = {}): Promise<GranaryStats> {
    return await asFs({ syscall: 'lstat', path }, async () => new GranaryStats(await this.#client.stat(normalizePath(path), options)))
  }

  // F_OK, R_OK and W_OK pass for anything that exists; X_OK only for folders (modes are stored, not enforced).
  async access (path: string, mode: number = fsConstants.F_OK, options: FsCallOptions = {}): Promise<void> {
    const place: ErrorPlace = { syscall: 'access', path }
    const type = await this.#typeOf(normalizePath(path), options, place)
    if ((mode & fsConstants.X_OK) !== 0 && type === 'file') throw fsError('EACCES', 'GRN_INVALID_ARGUMENT', place, undefined, 'Granary files are not executable')
  }

  // Not in node:fs/promises, but what access() is mostly used for: true, or false for ENOENT and ENOTDIR.
  async exists (path: string, options: FsCallOptions = {}): Promise<boolean> {
    return await this.#typeOf(normalizePath(path), options) !== 'missing'
  }

  // 'missing' for GRN_NOT_FOUND and GRN_NOT_DIR; with `place`, those throw in node's shape instead.
  async #typeOf (path: string, call: FsCallOptions, place?: ErrorPlace): Promise<'file' | 'dir' | 'missing'> {
    try {
      return (await this.#client.stat(path, call)).type
    } catch (err) {
      if (place !== undefined) throw toFsError(err, place)
      if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return 'missing'
      throw toFsError(err, { syscall: 'stat', path })
    }
  }

  // ---- streams ----------------------------------------------------------------------------------------
  // Bytes [start, end] (inclusive, like node), clipped to the file: a range past EOF is empty, not an error.
  createReadStream (path: string, options: FsReadStreamOptions | BufferEncoding = {}): Readable {
    const { encoding, start, end, ...rest } = typeof options === 'string' ? { encoding: options } : options
    checkRange(start, end)
    let inner: Readable
    try {
      inner = this.#client.createReadStream(normalizePath(path), { ...rest, start, end })
    } catch (err) {
      throw readError(err, path)
    }
    const stream = mappedReadable(inner, (err) => readError(err, path), rest.highWaterMark)
    if (encoding !== undefined && encoding !== null) stream.setEncoding(encoding)
    return stream
  }

  // The file appears under its name when the stream finishes ('finish'), never before: an aborted or failed
  // stream leaves nothing behind. flags 'w' replaces on completion, 'wx' fails with EEXIST.
  createWriteStream (path: string, options: FsWriteStreamOptions | BufferEncoding = {}): FsWriteStream {
    const { flags, start, ...rest } = typeof options === 'string' ? {} : options
    if (start !== undefined && start !== 0) throw notSupported('open', path, `start ${start}: Granary files are written whole, from byte 0`)
    const overwrite = writeFlag(flags ?? 'w', path)
    let inner: GranaryWriteStream
    try {
      inner = this.#client.createWriteStream(normalizePath(path), { ...rest, overwrite, parents: false })
    } catch (err) {
      throw toFsError(err, { syscall: 'open', path })
    }
    return new FsWriteStream(inner, (err) => toFsError(err, { syscall: 'open', path }), rest.highWaterMark)
  }
}

// ---- helpers ------------------------------------------------------------------------------------------

const mkdtempAttemptsMax = 16   // fresh names tried when one is taken (62^6 names: a clash is rare)
const nameCharacters = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

function randomName (): string {
  return [...randomBytes(6)].map((byte) => nameCharacters[byte % nameCharacters.length] as string).join('')
}

// node reports reading a folder as EISDIR from read(2), without a path; anything else as from open(2).
function readError (err: unknown, path: string): unknown {
  if (isGranaryError(err) && err.code === 'GRN_IS_DIR') return fsError('EISDIR', 'GRN_IS_DIR', { syscall: 'read' }, err)
  return toFsError(err, { syscall: 'open', path })
}

// Returns overwrite for a write flag; append and read-write flags are not supported.
function writeFlag (flag: string, path: string): boolean {
  if (flag === 'w' || flag === 'w+') return true
  if (flag === 'wx' || flag === 'xw' || flag === 'wx+' || flag === 'xw+') return false
  if (flag.startsWith('a') || flag.startsWith('r')) {
    throw notSupported('open', path, `flag '${flag}': Granary files are written once, whole (no append or partial overwrite)`)
  }
  throw fsError('EINVAL', 'GRN_INVALID_ARGUMENT', { syscall: 'open', path }, undefined, `unknown flag '${flag}'`)
}

function notSupported (syscall: ErrorPlace['syscall'], path: string, detail: string): GranaryFsError {
  return fsError('ENOTSUP', 'GRN_INVALID_ARGUMENT', { syscall, path }, undefined, detail)
}

// node's rm on a folder without recursive: a SystemError with code ERR_FS_EISDIR and a positive errno.
function rmIsDirError (path: string): GranaryFsError {
  const error = fsError('ERR_FS_EISDIR', 'GRN_IS_DIR', { syscall: 'rm', path })
  error.message = `Path is a directory: rm returned EISDIR (is a directory) ${path}`
  error.errno = 21   // node's ERR_FS_EISDIR carries EISDIR's errno, positive
  return error
}

// node checks stream ranges up front and throws ERR_OUT_OF_RANGE (a RangeError) synchronously.
function checkRange (start: number | undefined, end: number | undefined): void {
  for (const [name, value] of [['start', start], ['end', end]] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) throw outOfRange(name, `>= 0 and <= ${Number.MAX_SAFE_INTEGER}`, value)
  }
  if (start !== undefined && end !== undefined && start > end) throw outOfRange('start', `<= "end" (here: ${end})`, start)
}

function outOfRange (name: string, range: string, value: number): RangeError & { code: string, granaryCode: ErrorCode } {
  const error = new RangeError(`The value of "${name}" is out of range. It must be ${range}. Received ${value}`) as RangeError & { code: string, granaryCode: ErrorCode }
  error.code = 'ERR_OUT_OF_RANGE'
  error.granaryCode = 'GRN_INVALID_ARGUMENT'
  return error
}
