// The CLI commands about names and the cluster: ls, stat, checksum, mkdir, mv, rm, du, report. Human output is
// aligned text; --json prints the protocol's own objects (FileStat, DuReply, ClusterReport).
import { open } from 'node:fs/promises'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import { crc32 } from '../shared/checksum.js'
import type { FileStat, ClusterReport, DeleteReply } from '../shared/protocol.js'
import { normalizePath, joinPath, baseName } from '../shared/paths.js'
import * as limits from '../shared/limits.js'
import { formatBytes, formatTime, formatTable, formatAge } from './cli-format.js'
import type { CommandContext } from './cli-main.js'
import { formatShadowLines } from './cli-admin.js'

export async function ls (context: CommandContext): Promise<void> {
  const path = normalizePath(context.positionals[0] ?? '/')
  const stat = await context.client.stat(path, { signal: context.signal })
  const long = context.values.long === true
  if (stat.type === 'file') {
    context.print(context.json ? JSON.stringify([stat]) + '\n' : formatEntries([stat], long))
    return
  }
  // Page by page, so a huge directory streams out instead of piling up in memory.
  let after: string | undefined
  let printed = 0
  if (context.json) context.print('[')
  do {
    const page = await context.client.list(path, { after, limit: limits.listPageSizeDefault }, { signal: context.signal })
    if (context.json) {
      context.print(page.entries.map((entry, i) => (printed + i === 0 ? '' : ',') + JSON.stringify(entry)).join('\n'))
    } else if (page.entries.length > 0) {
      context.print(formatEntries(page.entries, long))
    }
    printed += page.entries.length
    after = page.nextAfter ?? undefined
  } while (after !== undefined && printed < limits.readdirEntriesMax)
  if (context.json) context.print(']\n')
}

function formatEntries (entries: FileStat[], long: boolean): string {
  const name = (entry: FileStat): string => baseName(entry.path) + (entry.type === 'dir' ? '/' : '')
  if (!long) return entries.map(name).join('\n') + '\n'
  return formatTable(entries.map((entry) => [
    entry.type,
    entry.type === 'dir' ? '-' : String(entry.sizeBytes),
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
    const path = normalizePath(arg)
    const reply = await context.client.rm(path, {
      recursive: context.values.recursive === true, force: context.values.force === true, skipTrash: context.values['skip-trash'] === true, signal: context.signal
    })
    replies.push(reply)
    if (!context.json && reply.trashPath !== null) context.print(`moved ${path} to ${reply.trashPath}  (undo: granary restore ${path})\n`)
  }
  if (context.json) context.printJson(replies)
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

async function localCrc32 (path: string, signal: AbortSignal | undefined): Promise<{ crc32: number, sizeBytes: number }> {
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

export async function du (context: CommandContext): Promise<void> {
  const usage = await context.client.du(normalizePath(context.positionals[0] ?? '/'), { signal: context.signal })
  if (context.json) { context.printJson(usage); return }
  context.print(formatTable([
    ['SIZE', 'BYTES', 'FILES', 'DIRS', 'PATH'],
    [formatBytes(usage.sizeBytes), String(usage.sizeBytes), String(usage.fileCount), String(usage.dirCount), usage.path],
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
