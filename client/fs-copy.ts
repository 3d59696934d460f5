// The client.fs calls that write a file from another one: copyFile, cp and truncate. Granary has no
// server-side copy, so all three are CLIENT-SIDE: the bytes are read through this client and written again as a
// new file (new chunks; nothing is shared), which replaces the target atomically when it completes, keeping the
// source's replication, chunk size and mode. A copy costs a full read and write; truncate too (Granary files are
// written once, whole). docs/API.md says so.
import { constants as fsConstants } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { isGranaryError } from '../shared/errors.js'
import type { FileStat } from '../shared/protocol.js'
import { normalizePath } from '../shared/paths.js'
import type { GranaryClient, CallOptions } from './index.js'
import { fsError, toFsError, type ErrorPlace, type GranaryFsError } from './fs-errors.js'

export interface FsCpOptions extends CallOptions {
  recursive?: boolean
  force?: boolean               // replace existing files (default true, like node)
  errorOnExist?: boolean        // with force: false, an existing file is an error (ERR_FS_CP_EEXIST)
  filter?: unknown              // not supported (ENOTSUP)
  dereference?: boolean         // no symlinks in Granary: nothing to dereference
  preserveTimestamps?: boolean  // folder copies keep mtimes anyway (they move as tar streams)
  verbatimSymlinks?: boolean
  mode?: number
}

const zeroPieceBytes = 64 * 1024   // truncate pads a longer file with zeros in pieces of this size

// node's copyFile: the target is replaced unless COPYFILE_EXCL (EEXIST); its parent must exist (ENOENT);
// COPYFILE_FICLONE_FORCE asks for a reflink, which Granary cannot make (ENOTSUP).
export async function copyFile (client: GranaryClient, source: string, target: string, mode: number, call: CallOptions): Promise<void> {
  const place: ErrorPlace = { syscall: 'copyfile', path: source, dest: target }
  if ((mode & fsConstants.COPYFILE_FICLONE_FORCE) !== 0) throw fsError('ENOTSUP', 'GRN_INVALID_ARGUMENT', place, undefined, 'Granary cannot share chunks between files (no reflink)')
  try {
    const stat = await client.stat(normalizePath(source), call)
    if (stat.type === 'dir') throw fsError('EISDIR', 'GRN_IS_DIR', place)
    await rewrite(client, stat, normalizePath(target), client.createReadStream(stat.path, call), (mode & fsConstants.COPYFILE_EXCL) === 0, call)
  } catch (err) {
    throw toFsError(err, place)
  }
}

// node's cp (a file like copyFile, a folder with recursive). Folders move as a tar stream through this client
// (client.packDirectory → unpackDirectory: bounded memory, modes and mtimes kept).
export async function cp (client: GranaryClient, source: string, target: string, options: FsCpOptions): Promise<void> {
  const { recursive, force, errorOnExist, filter, dereference: _d, preserveTimestamps: _p, verbatimSymlinks: _v, mode, ...call } = options
  const place: ErrorPlace = { syscall: 'cp', path: source, dest: target }
  if (filter !== undefined) throw fsError('ENOTSUP', 'GRN_INVALID_ARGUMENT', place, undefined, 'cp filter is not supported; copy entries one by one with copyFile')
  const replace = force !== false
  const from = await statOrUndefined(client, normalizePath(source), call, { syscall: 'lstat', path: source })
  if (from === undefined) throw fsError('ENOENT', 'GRN_NOT_FOUND', { syscall: 'lstat', path: source })
  const to = await statOrUndefined(client, normalizePath(target), call, { syscall: 'stat', path: target })
  if (from.type === 'file') {
    if (to?.type === 'dir') throw cpError('ERR_FS_CP_NON_DIR_TO_DIR', `cannot overwrite directory ${target} with non-directory ${source}`, 'GRN_IS_DIR', place)
    if (to !== undefined && !replace) {
      if (errorOnExist === true) throw cpError('ERR_FS_CP_EEXIST', `${target} already exists`, 'GRN_EXISTS', place)
      return   // node: force false without errorOnExist skips an existing file silently
    }
    await copyFile(client, source, target, (mode ?? 0) & ~fsConstants.COPYFILE_EXCL, call)
    return
  }
  if (recursive !== true) throw cpError('ERR_FS_EISDIR', `Recursive option is required to copy a directory: cp returned EISDIR (${source} is a directory (not copied)) ${source}`, 'GRN_IS_DIR', { syscall: 'cp', path: source })
  if (to?.type === 'file') throw cpError('ERR_FS_CP_DIR_TO_NON_DIR', `cannot overwrite non-directory ${target} with directory ${source}`, 'GRN_NOT_DIR', place)
  if (from.path === '/' || normalizePath(target) === from.path || normalizePath(target).startsWith(`${from.path}/`)) {
    throw cpError('ERR_FS_CP_EINVAL', `cannot copy ${source} to a subdirectory of self ${target}`, 'GRN_RENAME_INTO_SELF', place)
  }
  if (!replace && errorOnExist !== true) {
    throw fsError('ENOTSUP', 'GRN_INVALID_ARGUMENT', place, undefined, 'cp of a folder with force: false skips existing files in node; Granary does not: pass errorOnExist: true or force: true')
  }
  try {
    await client.unpackDirectory(normalizePath(target), client.packDirectory(from.path, call), { ...call, overwrite: replace })
  } catch (err) {
    if (isGranaryError(err) && err.code === 'GRN_EXISTS') throw cpError('ERR_FS_CP_EEXIST', err.message, 'GRN_EXISTS', place)
    throw toFsError(err, place)
  }
}

// node's truncate: the file keeps its first `length` bytes, or gains zeros up to `length`. A missing path is
// ENOENT and a folder EISDIR, both from open(2). Rewritten client-side as a new file (atomic replace).
export async function truncate (client: GranaryClient, path: string, length: number, call: CallOptions): Promise<void> {
  const place: ErrorPlace = { syscall: 'open', path }
  const lengthBytes = Math.max(0, Math.floor(length))
  try {
    const stat = await client.stat(normalizePath(path), call)
    if (stat.type === 'dir') throw fsError('EISDIR', 'GRN_IS_DIR', place)
    if (stat.sizeBytes === lengthBytes) return
    const keepBytes = Math.min(stat.sizeBytes, lengthBytes)
    const kept = keepBytes === 0 ? Readable.from([]) : client.createReadStream(stat.path, { ...call, start: 0, end: keepBytes - 1 })
    await rewrite(client, stat, stat.path, concat(kept, lengthBytes - keepBytes), true, call)
  } catch (err) {
    throw toFsError(err, place)
  }
}

async function * concat (first: AsyncIterable<Buffer>, zeroBytes: number): AsyncGenerator<Buffer> {
  for await (const piece of first) yield piece
  const zeros = Buffer.alloc(Math.min(zeroPieceBytes, zeroBytes))
  for (let left = zeroBytes; left > 0; left -= zeros.length) yield left >= zeros.length ? zeros : zeros.subarray(0, left)
}

// Writes `bytes` as the file at `target` (parent must exist), with the source's replication, chunk size and mode.
async function rewrite (client: GranaryClient, like: FileStat, target: string, bytes: AsyncIterable<Buffer> | Readable, overwrite: boolean, call: CallOptions): Promise<void> {
  const output = client.createWriteStream(target, {
    ...call, overwrite, parents: false, replication: like.replication, chunkSizeBytes: like.chunkSizeBytes, mode: like.mode,
  })
  await pipeline(bytes, output)
}

async function statOrUndefined (client: GranaryClient, path: string, call: CallOptions, place: ErrorPlace): Promise<FileStat | undefined> {
  try {
    return await client.stat(path, call)
  } catch (err) {
    if (isGranaryError(err) && err.code === 'GRN_NOT_FOUND') return undefined
    throw toFsError(err, place)
  }
}

// node's cp errors are SystemErrors with ERR_FS_CP_* codes and syscall 'cp'.
function cpError (code: string, detail: string, granaryCode: GranaryFsError['granaryCode'], place: ErrorPlace): GranaryFsError {
  const error = fsError(code, granaryCode, place, undefined, detail)
  error.message = `${code === 'ERR_FS_EISDIR' ? '' : 'Invalid src or dest: '}${detail}`
  return error
}
