// `granary fsck [PATH] [--json]`: which files under PATH have chunks with fewer live replicas than their
// replication (under-replicated) or none live at all (missing), from the master's GET /fs/fsck. Exits 1 with
// GRN_DATA_AT_RISK when any chunk is at risk, 0 when every chunk is fully replicated. Asks the configured
// master URLs in order (a shadow answers too while the master is down).
import { request, type Dispatcher } from 'undici'
import { certificateError, isCertificateFailure } from '../../shared/tls.js'
import { caDispatcher } from './ca-dispatcher.js'
import { signClient, type Credentials } from '../../shared/auth.js'
import { parseMasterList } from '../../shared/config.js'
import { errorFromBody, GranaryError, isGranaryError } from '../../shared/errors.js'
import { normalizePath } from '../../shared/paths.js'
import { fsckPath, type FsckReply } from '../../shared/protocol.js'
import { formatTable } from './format.js'
import type { CommandContext } from './main.js'

const problemLinesMax = 1000   // chunk lines printed per run (the JSON has them all)

export async function fsckCommand (context: CommandContext): Promise<void> {
  const path = normalizePath(context.positionals[0] ?? '/')
  const dispatcher = caDispatcher('client', context.client.config.caFile)
  const reply = await fetchFsck(parseMasterList(context.client.config.masters), path, context.signal, context.credentials, dispatcher).finally(() => { void dispatcher?.close() })
  if (context.json) context.printJson(reply)
  else context.print(formatFsck(reply))
  if (reply.underReplicatedChunks + reply.missingChunks > 0) {
    throw new GranaryError('GRN_DATA_AT_RISK', [reply.path, reply.underReplicatedChunks, reply.missingChunks])
  }
}

async function fetchFsck (masters: string[], path: string, signal: AbortSignal, credentials: Credentials | null, dispatcher: Dispatcher | undefined): Promise<FsckReply> {
  let lastError: unknown = new GranaryError('GRN_UNAVAILABLE', ['the master', 'no master URL'])
  for (const master of masters) {
    try {
      const target = `${fsckPath}?path=${encodeURIComponent(path)}`
      const res = await request(`${master}${target}`, { method: 'GET', signal, headers: credentials === null ? {} : signClient(credentials, 'GET', target, null), ...(dispatcher === undefined ? {} : { dispatcher }) })
      const body = await res.body.json() as unknown
      if (res.statusCode === 200) return body as FsckReply
      const err = errorFromBody(body as Record<string, string>, res.statusCode)
      if (err.code !== 'GRN_NOT_MASTER') throw err
      lastError = err
    } catch (err) {
      if (isGranaryError(err) && err.code !== 'GRN_NOT_MASTER') throw err
      const code = (err as { code?: string }).code
      if (isCertificateFailure(code)) throw certificateError(master, code as string, (err as Error).message)   // not 'try the next one'
      lastError = isGranaryError(err) ? err : new GranaryError('GRN_UNAVAILABLE', [master, (err as Error).message])
    }
  }
  throw lastError
}

export function formatFsck (reply: FsckReply): string {
  const lines: string[][] = [['FILE', 'CHUNK', 'HANDLE', 'LIVE', 'WANTED', 'STATE']]
  for (const file of reply.files) {
    const rows = [...file.missing.map((c) => ({ c, state: 'MISSING' })), ...file.underReplicated.map((c) => ({ c, state: 'under-replicated' }))]
      .sort((a, b) => a.c.chunkIndex - b.c.chunkIndex)
    for (const { c, state } of rows) {
      if (lines.length > problemLinesMax) break
      lines.push([file.path, String(c.chunkIndex), c.chunkHandle, String(c.liveReplicas), String(file.replication), state])
    }
  }
  const atRisk = reply.underReplicatedChunks + reply.missingChunks
  const table = lines.length > 1 ? formatTable(lines, new Set([1, 3, 4])) + '\n' : ''
  const summary = formatTable([
    ['path', reply.path],
    ['files', `${reply.fileCount}${reply.truncated ? ' (walk stopped at the limit)' : ''}`],
    ['chunks', `${reply.chunkCount}: ${reply.healthyChunks} healthy, ${reply.underReplicatedChunks} under-replicated, ${reply.missingChunks} missing`],
    ['chunkservers', `${reply.liveServers} alive`],
    ['status', atRisk === 0 ? 'HEALTHY' : 'DATA AT RISK'],
    ...(reply.inSyncShadows === undefined
      ? []
      : [['metadata', reply.inSyncShadows === 0
          ? 'on the master only: no in-sync shadow, so losing its host loses the latest acknowledged mutations'
          : `on the master and ${reply.inSyncShadows} in-sync shadow${reply.inSyncShadows === 1 ? '' : 's'}`]]),
  ])
  return table + summary
}
