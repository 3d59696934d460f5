// The CLI commands about names and the cluster: ls, stat, checksum, mkdir, mv, rm, du, report. Human output is
// aligned text; --json prints the protocol's own objects (FileStat, DuReply, ClusterReport).
import { open } from 'node:fs/promises'
import { GranaryError, isGranaryError } from '../../shared/errors.js'
import { crc32 } from '../../shared/checksum.js'
import type { FileStat, ClusterReport, DeleteReply } from '../../shared/protocol.js'
import { normalizePath, joinPath, baseName } from '../../shared/paths.js'
import * as limits from '../../shared/limits.js'
import { formatBytes, formatTime, formatTable, formatAge } from './format.js'
import type { CommandContext } from './main.js'
import { formatShadowLines } from './admin.js'
import { hasGlob, expandRemote, expandAll } from './glob.js'

export const lsFoldersQueuedMax = 100_000   // folders `ls -R` holds waiting to be listed (it prints as it goes)

// ls [-l] [-h] [-R] [REMOTE|GLOB...]: a folder's entries by name, a file as itself, a glob's matches by full
// path; -R walks folders below breadth-first (names relative to the folder named). --json: one array of
// FileStat for everything. Printed page by page, so a huge folder streams out instead of piling up in memory.
export async function ls (context: CommandContext): Promise<void> {
  const args = context.positionals.length === 0 ? ['/'] : context.positionals
  const out = new EntryPrinter(context)
  for (const arg of args) {
    if (hasGlob(arg)) { out.entries(await expandRemote(context.client, arg, context.signal), (e) => e.path); continue }
    const root = normalizePath(arg)
    const stat = await context.client.stat(root, { signal: context.signal })
    if (stat.type === 'file') { out.entries([stat], (e) => baseName(e.path)); continue }
    if (args.length > 1) out.heading(root)
    const relative = (entry: FileStat): string => root === '/' ? entry.path.slice(1) : entry.path.slice(root.length + 1)
    const queue = [root]
    for (let folder = queue.shift(); folder !== undefined; folder = queue.shift()) {
      let after: string | undefined
      do {
        const page = await context.client.list(folder, { after, limit: limits.listPageSizeDefault }, { signal: context.signal })
        out.entries(page.entries, relative)
        if (context.values.recursive === true) for (const entry of page.entries) if (entry.type === 'dir') queue.push(entry.path)
        if (queue.length > lsFoldersQueuedMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders waiting to be listed under ${root}`, lsFoldersQueuedMax])
        after = page.nextAfter ?? undefined
      } while (after !== undefined && out.count < limits.readdirEntriesMax)
      if (out.count >= limits.readdirEntriesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`entries listed under ${root}`, limits.readdirEntriesMax])
    }
  }
  out.end()
}

// Prints entries as they come: names (or -l columns) for people, one JSON array across every argument.
class EntryPrinter {
  readonly #context: CommandContext
  readonly #long: boolean
  readonly #human: boolean
  count = 0

  constructor (context: CommandContext) {
    this.#context = context
    this.#long = context.values.long === true
    this.#human = context.values.human === true
    if (context.json) context.print('[')
  }

  heading (path: string): void {
    if (!this.#context.json) this.#context.print(`${this.count === 0 ? '' : '\n'}${path}:\n`)
  }

  entries (entries: FileStat[], name: (entry: FileStat) => string): void {
    if (entries.length === 0) return
    if (this.#context.json) {
      this.#context.print(entries.map((entry, i) => (this.count + i === 0 ? '' : ',\n') + JSON.stringify(entry)).join(''))
    } else {
      this.#context.print(formatEntries(entries, this.#long, this.#human, name))
    }
    this.count += entries.length
  }

  end (): void {
    if (this.#context.json) this.#context.print(']\n')
  }
}

function formatEntries (entries: FileStat[], long: boolean, human: boolean, nameOf: (entry: FileStat) => string): string {
  const name = (entry: FileStat): string => nameOf(entry) + (entry.type === 'dir' ? '/' : '')
  if (!long) return entries.map(name).join('\n') + '\n'
  return formatTable(entries.map((entry) => [
    entry.type,
    entry.type === 'dir' ? '-' : human ? formatBytes(entry.sizeBytes) : String(entry.sizeBytes),
    formatTime(entry.mtimeMs),
    entry.type === 'dir' ? '-' : `r${entry.replication}`,
    name(entry),
  ]), new Set([1]))
}

export async function stat (context: CommandContext): Promise<void> {
  const entry = await context.client.stat(normalizePath(context.positionals[0] as string), { signal: context.signal })
  if (context.json) { context.printJson(entry); return }
  const rows = [['path', entry.path], ['type', entry.type]]
  if (entry.type === 'file') {
    rows.push(['size', `${entry.sizeBytes} bytes (${formatBytes(entry.sizeBytes)})`],
      ['chunks', `${entry.chunkCount} of up to ${formatBytes(entry.chunkSizeBytes)}`], ['replication', String(entry.replication)])
    if (entry.crc32 !== undefined) rows.push(['crc32', formatCrc32(entry.crc32)])
  }
  rows.push(['modified', formatTime(entry.mtimeMs)], ['inode', String(entry.inodeId)])
  context.print(formatTable(rows))
}

export async function mkdir (context: CommandContext): Promise<void> {
  for (const arg of context.positionals) {
    await context.client.mkdir(normalizePath(arg), { recursive: context.values.parents === true, signal: context.signal })
  }
}

// Like cp/mv: a target written with a trailing '/' or naming an existing directory receives the source under
// its own name. Shared by mv and put.
export async function namesDirectory (context: CommandContext, targetArg: string): Promise<boolean> {
  const target = normalizePath(targetArg)
  if (targetArg.endsWith('/') || target === '/') return true
  try {
    return (await context.client.stat(target, { signal: context.signal })).type === 'dir'
  } catch (err) {
    if (!isGranaryError(err) || err.code !== 'GRN_NOT_FOUND') throw err
    return false
  }
}

export async function mv (context: CommandContext): Promise<void> {
  const [sourceArg, targetArg] = context.positionals as [string, string]
  const source = normalizePath(sourceArg)
  let target = normalizePath(targetArg)
  if (await namesDirectory(context, targetArg)) target = joinPath(target, baseName(source))
  await context.client.rename(source, target, { signal: context.signal })
}

// Quiet like rm(1) when deleting for good; a move to the trash says where it went and how to undo it.
export async function rm (context: CommandContext): Promise<void> {
  const replies: DeleteReply[] = []
  for (const arg of context.positionals) {
    // A glob is expanded first (GRN_NOT_FOUND, exit 3, when it matches nothing, even with -f: a pattern that
    // names nothing is more likely a typo than an already-deleted file).
    const paths = hasGlob(arg) ? (await expandRemote(context.client, arg, context.signal)).map((e) => e.path) : [normalizePath(arg)]
    for (const path of paths) replies.push(await rmOne(context, path))
  }
  if (context.json) context.printJson(replies)
}

async function rmOne (context: CommandContext, path: string): Promise<DeleteReply> {
  const reply = await context.client.rm(path, {
    recursive: context.values.recursive === true, force: context.values.force === true, skipTrash: context.values['skip-trash'] === true, signal: context.signal
  })
  if (reply.trashPath !== null) context.note(`moved ${path} to ${reply.trashPath}  (undo: granary restore ${path})\n`)
  return reply
}

export async function restore (context: CommandContext): Promise<void> {
  const [pathArg, targetArg] = context.positionals as [string, string | undefined]
  const reply = await context.client.restore(normalizePath(pathArg), { target: targetArg === undefined ? undefined : normalizePath(targetArg), signal: context.signal })
  if (context.json) { context.printJson(reply); return }
  context.print(`restored ${reply.from} to ${reply.stat.path}\n`)
}

// Stored files: the CRC32 the master combined at complete. --local: the CRC32 of a local file's bytes, read
// in large pieces (the same zlib CRC32, so the two lines compare).
export async function checksum (context: CommandContext): Promise<void> {
  const rows: Array<{ path: string, crc32: number, sizeBytes: number }> = []
  for (const arg of context.positionals) {
    if (context.values.local === true) {
      rows.push({ path: arg, ...await localCrc32(arg, context.signal) })
      continue
    }
    const stat = await context.client.stat(normalizePath(arg), { signal: context.signal })
    if (stat.type !== 'file') throw new GranaryError('GRN_IS_DIR', [stat.path])
    if (stat.crc32 === undefined) throw new GranaryError('GRN_NOT_FOUND', [`a checksum of ${stat.path} (written before whole-file checksums)`])
    rows.push({ path: stat.path, crc32: stat.crc32, sizeBytes: stat.sizeBytes })
  }
  if (context.json) { context.printJson(rows); return }
  context.print(rows.map((row) => `${formatCrc32(row.crc32)}  ${String(row.sizeBytes).padStart(12)}  ${row.path}\n`).join(''))
}

const localReadBytes = 4 * 1024 * 1024   // one read per 4 MiB piece

export async function localCrc32 (path: string, signal: AbortSignal | undefined): Promise<{ crc32: number, sizeBytes: number }> {
  let handle
  try { handle = await open(path, 'r') } catch (err) { throw localError(err, path) }
  try {
    const buffer = Buffer.allocUnsafe(localReadBytes)
    let crc = 0
    let sizeBytes = 0
    while (true) {
      if (signal?.aborted === true) throw new GranaryError('GRN_ABORTED', [`checksum of ${path}`])
      const { bytesRead } = await handle.read(buffer, 0, localReadBytes, null)
      if (bytesRead === 0) break
      crc = crc32(buffer.subarray(0, bytesRead), crc)
      sizeBytes += bytesRead
    }
    return { crc32: crc, sizeBytes }
  } catch (err) {
    throw localError(err, path)
  } finally {
    await handle.close()
  }
}

function localError (err: unknown, path: string): unknown {
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ENOENT') return new GranaryError('GRN_NOT_FOUND', [path])
  if (code === 'EISDIR') return new GranaryError('GRN_IS_DIR', [path])
  return err
}

export function formatCrc32 (crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0')
}

// du [-h] [REMOTE|GLOB...]: one row per path (a glob: per match). --json: the DuReply for one plain path (as
// before), an array of them for several paths or a glob. -h: only the human size and the path, like du -sh.
export async function du (context: CommandContext): Promise<void> {
  const args = context.positionals.length === 0 ? ['/'] : context.positionals
  const paths = args.some(hasGlob) ? (await expandAll(context.client, args, context.signal)).map((e) => e.path) : args.map((a) => normalizePath(a))
  const usages = []
  for (const path of paths) usages.push(await context.client.du(path, { signal: context.signal }))
  if (context.json) { context.printJson(usages.length === 1 && !args.some(hasGlob) ? usages[0] : usages); return }
  if (context.values.human === true) {
    context.print(formatTable(usages.map((u) => [formatBytes(u.sizeBytes), u.path]), new Set([0])))
    return
  }
  context.print(formatTable([
    ['SIZE', 'BYTES', 'FILES', 'DIRS', 'PATH'],
    ...usages.map((usage) => [formatBytes(usage.sizeBytes), String(usage.sizeBytes), String(usage.fileCount), String(usage.dirCount), usage.path]),
  ], new Set([0, 1, 2, 3])))
}

export async function report (context: CommandContext): Promise<void> {
  const cluster = await context.client.report({ signal: context.signal })
  if (context.json) { context.printJson(cluster); return }
  context.print(formatReport(cluster))
}

export function formatReport (cluster: ClusterReport): string {
  const alive = cluster.servers.filter((s) => s.alive)
  const sum = (key: 'capacityBytes' | 'freeBytes' | 'usedBytes'): number => alive.reduce((total, s) => total + s[key], 0)
  const header = `${cluster.role} term ${cluster.term}, seq ${cluster.seq}${cluster.safeMode ? ', SAFE MODE (no replica is deleted until every chunkserver has reported)' : ''}\n\n`
  const servers = cluster.servers.length === 0
    ? 'no chunkservers have registered\n'
    : formatTable([
      ['SERVER', 'URL', 'STATE', 'HEARTBEAT', 'USED', 'FREE', 'CAPACITY', 'CHUNKS', 'WRITES'],
      ...cluster.servers.map((s) => [s.serverId, s.url, s.alive ? 'alive' : 'DEAD', formatAge(s.lastHeartbeatAgeMs),
        formatBytes(s.usedBytes), formatBytes(s.freeBytes), formatBytes(s.capacityBytes), String(s.chunkCount), String(s.activeWrites)]),
    ], new Set([4, 5, 6, 7, 8]))
  const totals = formatTable([
    ['chunkservers', `${alive.length} alive of ${cluster.servers.length}`],
    ['space (alive)', `${formatBytes(sum('usedBytes'))} used, ${formatBytes(sum('freeBytes'))} free of ${formatBytes(sum('capacityBytes'))}`],
    ['namespace', `${cluster.fileCount} files, ${cluster.dirCount} directories, ${formatBytes(cluster.sizeBytes)}`],
    ['chunks', `${cluster.chunkCount} (${cluster.underReplicatedChunks} under-replicated, ${cluster.missingChunks} missing${cluster.corruptReplicas === undefined ? '' : `, ${cluster.corruptReplicas} corrupt replicas`})`],
  ])
  return `${header}${servers}\n${totals}${formatShadowLines(cluster)}`
}
