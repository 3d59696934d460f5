// `granary put -r` and `granary get -r`: whole folders as tar streams (client/tar.ts, client/tar-local.ts).
//   put -r LOCALDIR /remote/dir   a local folder's contents into /remote/dir (made if missing)
//   put -r - /remote/dir          a tar read from stdin
//   get -r /remote/dir LOCALDIR   into LOCALDIR (made if missing; default: the folder's name here)
//   get -r /remote/dir -          a tar written to stdout
// Existing files are refused (GRN_EXISTS) unless --force. Memory stays bounded whatever the tree's size.
import { lstat } from 'node:fs/promises'
import { pipeline } from 'node:stream/promises'
import { GranaryError } from '../../shared/errors.js'
import { normalizePath, baseName } from '../../shared/paths.js'
import { parseReplication, parseSize } from './args.js'
import { formatBytes } from './format.js'
import { packLocalDirectory, unpackLocalDirectory } from '../tar-local.js'
import type { CommandContext } from './main.js'

interface TreeTotals { fileCount: number, dirCount: number, sizeBytes: number }

export async function putTree (context: CommandContext): Promise<void> {
  const { client, io, values, positionals } = context
  const [sourceArg, targetArg] = positionals as [string, string]
  const target = normalizePath(targetArg)
  if (sourceArg !== '-') {
    const stat = await lstat(sourceArg).catch(() => undefined)
    if (stat === undefined) throw new GranaryError('GRN_NOT_FOUND', [sourceArg])
    if (!stat.isDirectory()) throw new GranaryError('GRN_NOT_DIR', [], undefined, `${sourceArg} is not a folder (put without -r copies one file)`)
  }
  const startMs = Date.now()
  const tar = sourceArg === '-' ? io.stdin : packLocalDirectory(sourceArg, { signal: context.signal })
  const totals = await client.unpackDirectory(target, tar, {
    overwrite: values.force === true,
    replication: values.replication === undefined ? undefined : parseReplication(values.replication as string),
    chunkSizeBytes: values['chunk-size'] === undefined ? undefined : parseSize(values['chunk-size'] as string),
    signal: context.signal,
  })
  report(context, 'put', target, totals, startMs)
}

export async function getTree (context: CommandContext): Promise<void> {
  const { client, io, values, positionals } = context
  const source = normalizePath(positionals[0] as string)
  const stat = await client.stat(source, { signal: context.signal })
  if (stat.type !== 'dir') throw new GranaryError('GRN_NOT_DIR', [], undefined, `${source} is not a folder (get without -r copies one file)`)
  const targetArg = positionals[1] ?? (source === '/' ? '.' : baseName(source))
  const tar = client.packDirectory(source, { signal: context.signal })
  if (targetArg === '-') {
    await pipeline(tar, io.stdout, { end: false })
    return
  }
  const startMs = Date.now()
  const totals = await unpackLocalDirectory(targetArg, tar, { overwrite: values.force === true, preservePermissions: values['preserve-permissions'] === true, signal: context.signal })
  report(context, 'get', targetArg, totals, startMs)
}

function report (context: CommandContext, verb: string, target: string, totals: TreeTotals, startMs: number): void {
  const elapsedMs = Date.now() - startMs
  const bytesPerSecond = Math.round(totals.sizeBytes / Math.max(0.001, elapsedMs / 1000))
  if (context.json) {
    context.printJson({ target, ...totals, elapsedMs, bytesPerSecond })
  } else if (context.io.stderr.isTTY === true) {
    context.io.stderr.write(`${verb} ${totals.fileCount} files, ${totals.dirCount} folders, ${formatBytes(totals.sizeBytes)} → ${target} in ${(elapsedMs / 1000).toFixed(1)} s\n`)
  }
}
