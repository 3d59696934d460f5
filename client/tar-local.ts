// Local folders as tar streams, the other half of `granary put -r` / `get -r`. packLocalDirectory keeps each
// entry's mode and mtime; symlinks, sockets, FIFOs and devices are refused (Granary stores files and folders
// only). unpackLocalDirectory writes a tar into a local folder without ever writing outside it: entry names
// are checked (tarEntryNames), every folder on the way is made or checked with lstat (a symlink planted in the
// target cannot redirect a write), and files are created with O_EXCL (or, to overwrite, written to a temp file
// beside and renamed over). Modes and mtimes from the tar are applied to files and folders.
import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, mkdir, opendir, readFile, chmod, utimes, rename, rm } from 'node:fs/promises'
import { join, dirname, basename } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { Pack } from 'tar-stream'
import { GranaryError } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import { throwIfAborted } from './retry.js'
import { tarStream, tarEntryNames, refuseEntryType, addEntry, feedExtract, iterate, mtimeMsOf, tarError, type EntryHeader } from './tar.js'

export interface LocalPackOptions { signal?: AbortSignal }
export interface LocalUnpackOptions {
  overwrite?: boolean           // replace existing files; default: GRN_EXISTS
  // Keep setuid, setgid and sticky bits from the archive; default: stripped, so a `get -r` run as root cannot be
  // made to plant a setuid file by whoever wrote the folder into Granary (tar's --no-same-permissions spirit).
  preservePermissions?: boolean
  signal?: AbortSignal
}

const specialModeBits = 0o7000   // setuid, setgid, sticky
const permissionBits = 0o777

// ---- packing ------------------------------------------------------------------------------------------

// A tar of everything under `root` (not `root` itself), folders before their contents, names sorted.
export function packLocalDirectory (root: string, options: LocalPackOptions = {}): Readable {
  const pack = tarStream().pack()
  pack.on('error', () => {})   // its errors reach the reader through the Readable below; a destroy must not throw
  const produce = async (): Promise<void> => {
    const top = await lstat(root).catch((err: unknown) => { throw localFsError(err, root) })
    if (!top.isDirectory()) throw new GranaryError('GRN_NOT_DIR', [root])
    const stack: string[] = ['']   // relative folder names still to read, depth first
    for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
      const subdirs: string[] = []
      for (const name of await sortedNames(join(root, dir))) {
        throwIfAborted(options.signal)
        const relative = dir === '' ? name : `${dir}/${name}`
        const subdir = await packLocalEntry(pack, root, relative)
        if (subdir) subdirs.push(relative)
      }
      stack.push(...subdirs.reverse())
      if (stack.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders waiting to be packed under ${root}`, limits.readdirEntriesMax])
    }
  }
  produce().then(() => { pack.finalize() }, (err: unknown) => { pack.destroy(localFsError(err, root) as Error) })
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false })
}

// Adds one entry; returns true for a folder (whose contents come later).
async function packLocalEntry (pack: Pack, root: string, relative: string): Promise<boolean> {
  const path = join(root, relative)
  const stat = await lstat(path)
  const header: EntryHeader = { name: relative, mode: stat.mode & 0o7777, mtime: stat.mtime }
  if (stat.isDirectory()) {
    await addEntry(pack, { ...header, name: `${relative}/`, type: 'directory' })
    return true
  }
  if (!stat.isFile()) {
    const kind = stat.isSymbolicLink() ? 'symlink' : stat.isFIFO() ? 'fifo' : stat.isSocket() ? 'socket' : 'device'
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${path} is a ${kind}: only files and folders can be stored in Granary (symlinks are not followed)`])
  }
  if (stat.size <= limits.tarFileBytesBufferedMax) {
    await addEntry(pack, { ...header, type: 'file' }, await readFile(path))
  } else {
    await addEntry(pack, { ...header, type: 'file', size: stat.size }, createReadStream(path, { highWaterMark: limits.MiB }))
  }
  return false
}

async function sortedNames (dir: string): Promise<string[]> {
  const names: string[] = []
  for await (const entry of await opendir(dir)) {
    names.push(entry.name)
    if (names.length > limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`entries of ${dir}`, limits.readdirEntriesMax])
  }
  return names.sort()
}

// ---- unpacking ----------------------------------------------------------------------------------------

interface FolderTimes { path: string, depth: number, mode: number | undefined, mtimeMs: number | undefined }

export async function unpackLocalDirectory (root: string, tar: AsyncIterable<Buffer | Uint8Array> | Readable,
  options: LocalUnpackOptions = {}): Promise<{ fileCount: number, dirCount: number, sizeBytes: number }> {
  await mkdir(root, { recursive: true }).catch((err: unknown) => { throw localFsError(err, root) })
  const result = { fileCount: 0, dirCount: 0, sizeBytes: 0 }
  const modeMask = options.preservePermissions === true ? specialModeBits | permissionBits : permissionBits
  const folders = new LocalFolders(root, modeMask)
  const extract = tarStream().extract()
  feedExtract(tar, extract)
  try {
    for await (const source of extract) {
      throwIfAborted(options.signal)
      const header = source.header
      const entry = source as unknown as AsyncIterable<Buffer>
      const names = tarEntryNames(header.name)
      if (header.type === 'directory') {
        for await (const _piece of entry) { /* no body */ }
        await folders.ensure(names)
        folders.remember(names, header)
        result.dirCount++
        continue
      }
      if (header.type !== 'file' && header.type !== 'contiguous-file') refuseEntryType(header)
      if (names.length === 0) throw new GranaryError('GRN_INVALID_PATH', [JSON.stringify(header.name), 'a file entry names the target folder itself'])
      await folders.ensure(names.slice(0, -1))
      await writeLocalFile(join(root, ...names), iterate(entry, header), header, options.overwrite === true, modeMask)
      result.fileCount++
      result.sizeBytes += header.size ?? 0
    }
  } catch (err) {
    throw tarError(localFsError(err, root))
  } finally {
    extract.destroy()
  }
  // Last, deepest first: writing a folder's contents changes its mtime, and a read-only mode would block them.
  await folders.applyTimes()
  return result
}

// Folders under the root that this unpack made or checked: each is a real folder, not a symlink.
class LocalFolders {
  readonly #root: string
  readonly #checked = new Set<string>([''])
  readonly #times: FolderTimes[] = []
  readonly #modeMask: number

  constructor (root: string, modeMask: number) {
    this.#root = root
    this.#modeMask = modeMask
  }

  async ensure (names: readonly string[]): Promise<void> {
    for (let depth = 1; depth <= names.length; depth++) {
      const relative = names.slice(0, depth).join('/')
      if (this.#checked.has(relative)) continue
      const path = join(this.#root, relative)
      const stat = await lstat(path).catch(() => undefined)
      if (stat === undefined) await mkdir(path)
      else if (!stat.isDirectory()) throw new GranaryError('GRN_NOT_DIR', [`${path} (in the way of a folder of the tar${stat.isSymbolicLink() ? '; it is a symlink, which is never followed' : ''})`])
      if (this.#checked.size >= limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders unpacked into ${this.#root}`, limits.readdirEntriesMax])
      this.#checked.add(relative)
    }
  }

  remember (names: readonly string[], header: EntryHeader): void {
    if (this.#times.length >= limits.readdirEntriesMax) return   // past the bound, folders keep the time they were written
    this.#times.push({ path: join(this.#root, ...names), depth: names.length, mode: header.mode, mtimeMs: mtimeMsOf(header) })
  }

  async applyTimes (): Promise<void> {
    const deepestFirst = [...this.#times].sort((a, b) => b.depth - a.depth)
    for (const folder of deepestFirst) {
      if (folder.mode !== undefined) await chmod(folder.path, folder.mode & this.#modeMask)
      if (folder.mtimeMs !== undefined) await utimes(folder.path, folder.mtimeMs / 1000, folder.mtimeMs / 1000)
    }
  }
}

// O_EXCL create (never follows a symlink, never replaces); to overwrite, a temp file beside, renamed over.
async function writeLocalFile (target: string, body: AsyncIterable<Buffer>, header: EntryHeader, overwrite: boolean, modeMask: number): Promise<void> {
  const path = overwrite ? join(dirname(target), `.${basename(target)}.granary-${randomBytes(4).toString('hex')}.tmp`) : target
  const mode = (header.mode ?? 0o644) & modeMask
  try {
    await pipeline(body, createWriteStream(path, { flags: 'wx', mode }))
    await chmod(path, mode)   // the umask may have taken bits away at create
    const mtimeMs = mtimeMsOf(header)
    if (mtimeMs !== undefined) await utimes(path, mtimeMs / 1000, mtimeMs / 1000)
    if (overwrite) await rename(path, target)
  } catch (err) {
    if (overwrite) await rm(path, { force: true })
    throw err
  }
}

// Local errors in Granary's words, so the CLI prints one kind of error line.
function localFsError (err: unknown, path: string): unknown {
  const code = (err as { code?: unknown } | null)?.code
  const where = (err as { path?: unknown } | null)?.path
  const at = typeof where === 'string' ? where : path
  if (code === 'ENOENT') return new GranaryError('GRN_NOT_FOUND', [at])
  if (code === 'EEXIST') return new GranaryError('GRN_EXISTS', [], { path: at }, `${at} already exists (use --force to replace it)`)
  if (code === 'ENOTDIR') return new GranaryError('GRN_NOT_DIR', [at])
  if (code === 'EISDIR') return new GranaryError('GRN_IS_DIR', [at])
  if (code === 'EACCES' || code === 'EPERM') return new GranaryError('GRN_INVALID_ARGUMENT', [`permission denied: ${at}`])
  return err
}
