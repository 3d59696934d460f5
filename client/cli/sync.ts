// `granary sync [--delete] [--dry-run] SOURCE TARGET`: make the folder TARGET hold what the folder SOURCE holds,
// sending only what differs. A file is skipped when TARGET has it with the same size and the same whole-file
// CRC32: Granary's stored one (combined from the chunks' CRCs at complete, no read of the bytes), and for a
// local file the CRC32 of its bytes, computed only once the sizes already match (the same zlib CRC32 that
// `granary checksum --local` prints). So a second sync sends nothing. Either side may be local or Granary
// (gr:/path), or both Granary. --delete removes what SOURCE lacks (on Granary: to /.trash, undoable);
// --dry-run prints the plan and changes nothing. Both trees are listed first, within named bounds.
import { lstat, mkdir as localMkdir, opendir, rm as localRm } from 'node:fs/promises'
import { join } from 'node:path'
import { GranaryError } from '../../shared/errors.js'
import type { FileStat } from '../../shared/protocol.js'
import { joinPath } from '../../shared/paths.js'
import * as limits from '../../shared/limits.js'
import { parseReplication } from './args.js'
import { parseLocation, type Location } from './location.js'
import { formatBytes } from './format.js'
import type { CommandContext } from './main.js'
import { copyFile, locationType, type Side } from './copy.js'
import { localCrc32 } from './namespace.js'

export const syncEntriesMax = limits.readdirEntriesMax   // entries one side of a sync may hold (both are listed in memory)

interface TreeEntry { type: 'file' | 'dir', sizeBytes: number, crc32?: number | undefined, stat?: FileStat }
type Tree = Map<string, TreeEntry>   // relative path ('a/b.txt') → entry

interface SyncReport { source: string, target: string, dryRun: boolean, copied: string[], deleted: string[], unchanged: number, bytesCopied: number }

export async function sync (context: CommandContext): Promise<void> {
  const [sourceArg, targetArg] = context.positionals as [string, string]
  const source = parseLocation(sourceArg, false)
  const target = parseLocation(targetArg, false)
  if (source.kind === 'local' && target.kind === 'local') throw new GranaryError('GRN_INVALID_ARGUMENT', ['sync copies to or from Granary: write Granary paths as gr:/path'])
  const sourceTree = await walk(context, source, true)
  const targetTree = await walk(context, target, false)
  const dryRun = context.values['dry-run'] === true
  const report: SyncReport = { source: source.path, target: target.path, dryRun, copied: [], deleted: [], unchanged: 0, bytesCopied: 0 }
  const replication = context.values.replication === undefined ? undefined : parseReplication(context.values.replication as string)
  const verb = dryRun ? 'would ' : ''

  if (context.values.delete === true) {
    for (const relative of deletions(sourceTree, targetTree)) {
      context.note(`${verb}delete ${show(target, relative)}\n`)
      if (!dryRun) await remove(context, target, relative)
      report.deleted.push(relative)
      targetTree.delete(relative)
    }
  }
  if (!dryRun && targetTree.size === 0) await makeFolder(context, target, '')
  for (const [relative, entry] of sourceTree) {
    const existing = targetTree.get(relative)
    if (entry.type === 'dir') {
      if (existing?.type === 'file') throw new GranaryError('GRN_NOT_DIR', [], undefined, `${show(target, relative)} is a file where ${show(source, relative)} is a folder (--delete replaces it)`)
      if (existing === undefined && !dryRun) await makeFolder(context, target, relative)
      continue
    }
    if (existing?.type === 'dir') throw new GranaryError('GRN_IS_DIR', [], undefined, `${show(target, relative)} is a folder where ${show(source, relative)} is a file (--delete replaces it)`)
    if (existing !== undefined && await same(context, source, relative, entry, target, existing)) { report.unchanged++; continue }
    context.note(`${verb}copy ${show(source, relative)} → ${show(target, relative)}\n`)
    if (!dryRun) {
      await copyFile(context, { side: sideOf(source), path: place(source, relative), name: relative, type: 'file', sizeBytes: entry.sizeBytes, stat: entry.stat },
        { side: sideOf(target), path: place(target, relative) }, { overwrite: true, replication })
    }
    report.copied.push(relative)
    report.bytesCopied += entry.sizeBytes
  }
  if (context.json) { context.printJson(report); return }
  context.note(`sync: ${dryRun ? 'would copy' : 'copied'} ${report.copied.length} files (${formatBytes(report.bytesCopied)}), ` +
    `${report.unchanged} unchanged, ${dryRun ? 'would delete' : 'deleted'} ${report.deleted.length}\n`)
}

// Equal size, then equal CRC32. A Granary file written before whole-file checksums has none: it is copied.
async function same (context: CommandContext, source: Location, relative: string, a: TreeEntry, target: Location, b: TreeEntry): Promise<boolean> {
  if (a.sizeBytes !== b.sizeBytes) return false
  const first = await crcOf(context, source, relative, a)
  if (first === undefined) return false
  const second = await crcOf(context, target, relative, b)
  return first === second
}

async function crcOf (context: CommandContext, location: Location, relative: string, entry: TreeEntry): Promise<number | undefined> {
  if (location.kind === 'remote') return entry.crc32
  return (await localCrc32(place(location, relative), context.signal)).crc32
}

// What TARGET has and SOURCE lacks, top-most only (a deleted folder takes its contents with it).
function deletions (sourceTree: Tree, targetTree: Tree): string[] {
  const out: string[] = []
  for (const [relative, entry] of targetTree) {
    const wanted = sourceTree.get(relative)
    if (wanted !== undefined && wanted.type === entry.type) continue
    if (out.some((gone) => relative.startsWith(`${gone}/`))) continue
    out.push(relative)
  }
  return out
}

// Both trees breadth-first, in sorted order per folder. A missing SOURCE is GRN_NOT_FOUND (exit 3); a missing
// TARGET is an empty tree (it is made). Either one being a file is refused: sync takes folders (cp copies files).
async function walk (context: CommandContext, location: Location, isSource: boolean): Promise<Tree> {
  const tree: Tree = new Map()
  const queue = ['']
  const rootType = await locationType(context, location, { follow: false })
  if (rootType === 'missing') {
    if (isSource) throw new GranaryError('GRN_NOT_FOUND', [location.arg])
    return tree
  }
  if (rootType === 'file') throw new GranaryError('GRN_NOT_DIR', [], undefined, `${location.arg} is a file: sync takes folders (cp copies one file)`)
  for (let folder = queue.shift(); folder !== undefined; folder = queue.shift()) {
    for (const [name, entry] of await listFolder(context, location, folder)) {
      const relative = folder === '' ? name : `${folder}/${name}`
      tree.set(relative, entry)
      if (entry.type === 'dir') queue.push(relative)
      if (tree.size > syncEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`entries under ${location.arg}`, syncEntriesMax])
    }
  }
  return tree
}


// A local folder's files and folders (symlinks and other kinds are skipped: Granary stores neither).
async function listFolder (context: CommandContext, location: Location, relative: string): Promise<Array<[string, TreeEntry]>> {
  if (location.kind === 'remote') {
    const entries = await context.client.readdir(place(location, relative), { withStats: true, signal: context.signal })
    return entries.map((e) => [e.path.slice(e.path.lastIndexOf('/') + 1), { type: e.type, sizeBytes: e.sizeBytes, crc32: e.crc32, stat: e }])
  }
  const out: Array<[string, TreeEntry]> = []
  const folder = await opendir(place(location, relative))
  for await (const dirent of folder) {
    if (dirent.isDirectory()) out.push([dirent.name, { type: 'dir', sizeBytes: 0 }])
    else if (dirent.isFile()) out.push([dirent.name, { type: 'file', sizeBytes: (await lstat(join(place(location, relative), dirent.name))).size }])
    if (out.length > syncEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`entries in ${place(location, relative)}`, syncEntriesMax])
  }
  return out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

function place (location: Location, relative: string): string {
  if (relative === '') return location.path
  return location.kind === 'remote' ? joinPath(location.path, relative) : join(location.path, relative)
}

function show (location: Location, relative: string): string {
  const path = place(location, relative)
  return location.kind === 'remote' ? `gr:${path}` : path
}

function sideOf (location: Location): Side {
  return location.kind === 'remote' ? 'remote' : 'local'
}

async function makeFolder (context: CommandContext, location: Location, relative: string): Promise<void> {
  if (location.kind === 'remote') await context.client.mkdir(place(location, relative), { recursive: true, signal: context.signal })
  else await localMkdir(place(location, relative), { recursive: true })
}

async function remove (context: CommandContext, location: Location, relative: string): Promise<void> {
  if (location.kind === 'remote') await context.client.rm(place(location, relative), { recursive: true, signal: context.signal })
  else await localRm(place(location, relative), { recursive: true })
}
