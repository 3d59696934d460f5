// `granary cp [-r] [-n] SOURCE... TARGET` in every direction: local → Granary, Granary → local, Granary →
// Granary. Granary paths are written gr:/path or granary://host:port/path (location.ts); a plain path is
// local. Semantics follow cp(1): an existing file is replaced (atomically on Granary, by rename locally)
// unless -n; a TARGET that is a folder or ends with / receives each source under its name; several sources
// need a folder TARGET (made if missing); a folder source needs -r. Folders move as tar streams through the
// same code as put -r / get -r (bounded memory, modes and mtimes kept). Granary → Granary is a client-side
// copy: bytes are read and written again through this process.
import { lstat as localLstat, stat as localStat, mkdir as localMkdir } from 'node:fs/promises'
import { basename, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { GranaryError, isGranaryError } from '../../shared/errors.js'
import type { FileStat } from '../../shared/protocol.js'
import { joinPath, baseName, parentPath } from '../../shared/paths.js'
import { parseReplication, parseSize } from './args.js'
import { parseLocation, type Location } from './location.js'
import { expandRemote } from './glob.js'
import type { CommandContext } from './main.js'
import { upload, download, openLocalFile, localError } from './transfer.js'
import { packLocalDirectory, unpackLocalDirectory } from '../tar-local.js'

export type Side = 'local' | 'remote'

// One thing to copy: a Granary entry (with its stat) or a local file or folder.
export interface CopySource { side: Side, path: string, name: string, type: 'file' | 'dir', sizeBytes: number, stat?: FileStat }
export interface CopyOptions { overwrite: boolean, replication?: number | undefined, chunkSizeBytes?: number | undefined }

interface Copied { source: string, target: string, type: 'file' | 'dir', sizeBytes: number }

export async function cp (context: CommandContext): Promise<void> {
  const args = context.positionals
  const target = parseLocation(args[args.length - 1] as string, false)
  const sources: CopySource[] = []
  for (const arg of args.slice(0, -1)) sources.push(...await expandSource(context, parseLocation(arg, false)))
  const options: CopyOptions = {
    overwrite: context.values['no-clobber'] !== true,
    replication: context.values.replication === undefined ? undefined : parseReplication(context.values.replication as string),
    chunkSizeBytes: context.values['chunk-size'] === undefined ? undefined : parseSize(context.values['chunk-size'] as string),
  }
  for (const source of sources) {
    if (source.side === 'local' && target.kind === 'local') {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`${source.path} and ${target.path} are both local: cp copies to or from Granary (write Granary paths as gr:/path)`])
    }
    if (source.type === 'dir' && context.values.recursive !== true) throw new GranaryError('GRN_IS_DIR', [], undefined, `${source.path} is a directory (cp -r copies folders)`)
  }
  const into = await targetIsFolder(context, target, sources.length > 1)
  const copied: Copied[] = []
  for (const source of sources) {
    const targetPath = into ? joinTarget(target, source.name) : target.path
    if (source.type === 'dir') await copyTree(context, source, target.kind === 'local' ? 'local' : 'remote', targetPath, options)
    else await copyFile(context, source, { side: target.kind === 'local' ? 'local' : 'remote', path: targetPath }, options)
    copied.push({ source: source.path, target: targetPath, type: source.type, sizeBytes: source.sizeBytes })
  }
  if (context.json) context.printJson(copied)
}

// A Granary argument may be a glob (every match); a local one is one path (the shell expands local globs).
async function expandSource (context: CommandContext, location: Location): Promise<CopySource[]> {
  if (location.kind === 'remote') {
    const entries = await expandRemote(context.client, location.path, context.signal)
    return entries.map((e) => ({ side: 'remote', path: e.path, name: baseName(e.path) || 'root', type: e.type, sizeBytes: e.sizeBytes, stat: e }))
  }
  const stat = await localStat(location.path).catch((err: unknown) => { throw localError(err, location.path) })
  if (!stat.isFile() && !stat.isDirectory()) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${location.path} is neither a file nor a folder`])
  return [{ side: 'local', path: location.path, name: basename(location.path), type: stat.isDirectory() ? 'dir' : 'file', sizeBytes: stat.isFile() ? stat.size : 0 }]
}

// Whether sources go into TARGET under their names: TARGET ends with /, is an existing folder, or several
// sources are copied (then a missing TARGET is made; an existing file is GRN_NOT_DIR).
async function targetIsFolder (context: CommandContext, target: Location, several: boolean): Promise<boolean> {
  const type = await locationType(context, target, { follow: true })
  const hinted = target.kind === 'remote' ? target.dirHint : target.path.endsWith('/')
  if (type === 'dir') return true
  if (!several && !hinted) return false
  if (type === 'file') throw new GranaryError('GRN_NOT_DIR', [], undefined, `${target.arg} is a file; copying several sources needs a folder`)
  if (target.kind === 'remote') await context.client.mkdir(target.path, { recursive: true, signal: context.signal })
  else await localMkdir(target.path, { recursive: true })
  return true
}


function joinTarget (target: Location, name: string): string {
  return target.kind === 'remote' ? joinPath(target.path, name) : join(target.path, name)
}

// One file, any direction but local → local. Shared with sync. The target's parent folder is made if missing.
export async function copyFile (context: CommandContext, source: CopySource, target: { side: Side, path: string }, options: CopyOptions): Promise<void> {
  const { client, signal } = context
  if (target.side === 'remote') {
    if (source.side === 'local') {
      const local = await openLocalFile(source.path)
      try {
        await upload(context, local, source.path, target.path, options, 'not replaced: -n')
      } finally {
        await local.file.close()
      }
      return
    }
    if (source.path === target.path) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${source.path} and ${target.path} are the same file`])
    const stat = source.stat ?? await client.stat(source.path, { signal })
    const parent = parentPath(target.path)
    if (parent !== '/') await client.mkdir(parent, { recursive: true, signal })
    const output = client.createWriteStream(target.path, {
      overwrite: options.overwrite, signal,
      replication: options.replication ?? stat.replication, chunkSizeBytes: options.chunkSizeBytes ?? stat.chunkSizeBytes, sizeBytes: stat.sizeBytes,
    })
    const progress = context.progress(`cp ${source.path}`, stat.sizeBytes)
    const input = client.createReadStream(source.path, { signal })
    try {
      await (progress === undefined ? pipeline(input, output) : pipeline(input, progress.counter(), output))
    } catch (err) {
      if (isGranaryError(err) && err.code === 'GRN_EXISTS') throw new GranaryError('GRN_EXISTS', [], err.details, `${target.path} already exists (not replaced: -n)`)
      throw err
    } finally {
      progress?.stop()
    }
    return
  }
  if (source.side === 'local') throw new GranaryError('GRN_INVALID_ARGUMENT', [`${source.path} → ${target.path}: both are local`])
  const existing = await localStat(target.path).catch(() => undefined)
  if (existing?.isDirectory() === true) throw new GranaryError('GRN_IS_DIR', [target.path])
  if (existing !== undefined && !options.overwrite) throw new GranaryError('GRN_EXISTS', [], { path: target.path }, `${target.path} already exists (not replaced: -n)`)
  await localMkdir(join(target.path, '..'), { recursive: true })
  await download(context, source.stat ?? await client.stat(source.path, { signal }), target.path)
}

// A folder's contents into `targetPath` (made if missing) as a tar stream; existing files are replaced unless -n.
async function copyTree (context: CommandContext, source: CopySource, targetSide: Side, targetPath: string, options: CopyOptions): Promise<void> {
  const { client, signal } = context
  if (source.side === 'remote' && targetSide === 'remote' && (targetPath === source.path || targetPath.startsWith(source.path === '/' ? '/' : `${source.path}/`))) {
    throw new GranaryError('GRN_RENAME_INTO_SELF', [source.path, targetPath])
  }
  const tar = source.side === 'local' ? packLocalDirectory(source.path, { signal }) : client.packDirectory(source.path, { signal })
  if (targetSide === 'remote') {
    await client.unpackDirectory(targetPath, tar, { overwrite: options.overwrite, replication: options.replication, chunkSizeBytes: options.chunkSizeBytes, signal })
  } else {
    await unpackLocalDirectory(targetPath, tar, { overwrite: options.overwrite, signal })
  }
}

// What a location names: a file, a folder or nothing. A local path is stat'ed (following a symlink) or, with
// follow: false, lstat'ed (sync never walks into a link); a remote one asks the master.
export async function locationType (context: CommandContext, location: Location, options: { follow: boolean }): Promise<'file' | 'dir' | 'missing'> {
  if (location.kind === 'local') {
    const stat = await (options.follow ? localStat : localLstat)(location.path).catch(() => undefined)
    return stat === undefined ? 'missing' : stat.isDirectory() ? 'dir' : 'file'
  }
  try {
    return (await context.client.stat(location.path, { signal: context.signal })).type
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return 'missing'
    throw err
  }
}
