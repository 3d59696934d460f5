// `granary admin promote --shadow URL [--force]`: turn a caught-up shadow into the master (term + 1), and the
// shadow lines of `granary report`. Promotion talks to the shadow named, not to the configured masters: the
// master may be the very thing that is gone.
import { certificateError, isCertificateFailure } from '../../shared/tls.js'
import { GranaryError, errorFromBody, isGranaryError, type ErrorBody } from '../../shared/errors.js'
import { parseMasterList } from '../../shared/config.js'
import { promotePath, type ClusterReport, type PromoteReply } from '../../shared/protocol.js'
import { formatAge, formatTable } from './format.js'
import type { CommandContext } from './main.js'
import { signClient, type Credentials } from '../../shared/auth.js'

const promoteTimeoutMs = 30_000   // promotion waits for the shadow's tail loop to stop: a few ms, a poll at most

export const adminActions = ['promote', 'keys'] as const
const keyActions = ['create', 'list', 'revoke'] as const

export async function admin (context: CommandContext): Promise<void> {
  const action = context.positionals[0]
  if (action === 'keys') { await keys(context); return }
  if (action !== 'promote') throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown admin action '${String(action)}' (known: ${adminActions.join(', ')})`])
  const shadow = context.values.shadow
  if (typeof shadow !== 'string') throw new GranaryError('GRN_INVALID_ARGUMENT', ['admin promote needs --shadow URL'])
  const url = parseMasterList(shadow)
  if (url.length !== 1) throw new GranaryError('GRN_INVALID_ARGUMENT', ['--shadow takes one URL'])
  const reply = await promote(url[0] as string, context.values.force === true, context.signal, context.credentials, context.client.config.caFile)
  if (context.json) { context.printJson(reply); return }
  const lag = reply.forced ? ` (forced: ${reply.lagRecords === null ? 'an unknown number of' : reply.lagRecords} records behind its old master were given up)` : ''
  context.print(`${url[0] as string} is now the master: term ${reply.term}, seq ${reply.seq}${lag}\n` +
    `Point clients at it first: GRANARY_MASTER=${url[0] as string},...\n`)
}

// `granary admin keys create|list|revoke`: the key is made here; its secret is printed once and never again.
async function keys (context: CommandContext): Promise<void> {
  const [, action, id] = context.positionals
  const { client, values } = context
  if (action === 'create') {
    const made = await client.createAccessKey({
      name: values.name as string, readOnly: values['read-only'] === true, admin: values.admin === true,
      ...(typeof values.prefix === 'string' ? { prefix: values.prefix } : {})
    }, { signal: context.signal })
    if (context.json) { context.printJson(made); return }
    context.print(`accessKeyId     ${made.accessKeyId}\nsecretAccessKey ${made.secretAccessKey}\n` +
      `rights          ${describeRights(made)}\n\nThe secret is shown only now. To use it: granary admin keys create ... --json > FILE, then --credentials FILE or GRANARY_CREDENTIALS=FILE.\n`)
    return
  }
  if (action === 'list') {
    const list = await client.listAccessKeys({ signal: context.signal })
    if (context.json) { context.printJson(list); return }
    context.print(formatTable([['ACCESS KEY', 'NAME', 'RIGHTS', 'CREATED', 'REVOKED'],
      ...list.map((k) => [k.accessKeyId, k.name, describeRights(k), new Date(k.createdAtMs).toISOString(), k.revokedAtMs === null ? '-' : new Date(k.revokedAtMs).toISOString()])]))
    return
  }
  if (action === 'revoke') {
    if (id === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', ['admin keys revoke needs the access key id'])
    const revoked = await client.revokeAccessKey(id, { signal: context.signal })
    if (context.json) { context.printJson(revoked); return }
    context.print(`revoked ${revoked.accessKeyId} (${revoked.name})\n`)
    return
  }
  throw new GranaryError('GRN_INVALID_ARGUMENT', [`unknown admin keys action '${String(action)}' (known: ${keyActions.join(', ')})`])
}

function describeRights (key: { readOnly: boolean, admin: boolean, prefix: string | null }): string {
  const rights = key.admin ? 'admin, read, write' : key.readOnly ? 'read' : 'read, write'
  return key.prefix === null ? rights : `${rights} under ${key.prefix}`
}

// undici is loaded here, not at the top: `granary report` and `granary stat` load this file for
// formatShadowLines, and a read command loads only the client's lean Agent (client/undici-agent.ts).
async function promote (shadowUrl: string, force: boolean, signal: AbortSignal, credentials: Credentials | null, caFile: string): Promise<PromoteReply> {
  const { request } = await import('undici')
  const { caDispatcher } = await import('./ca-dispatcher.js')
  let res
  const dispatcher = caDispatcher('client', caFile)
  try {
    const body = JSON.stringify({ force })
    res = await request(shadowUrl + promotePath, {
      method: 'POST', headers: { 'content-type': 'application/json', ...(credentials === null ? {} : signClient(credentials, 'POST', promotePath, body)) }, body,
      headersTimeout: promoteTimeoutMs, bodyTimeout: promoteTimeoutMs, signal, ...(dispatcher === undefined ? {} : { dispatcher })
    })
  } catch (err) {
    void dispatcher?.close()
    if (isGranaryError(err)) throw err
    const code = (err as { code?: string }).code
    if (isCertificateFailure(code)) throw certificateError(shadowUrl, code as string, (err as Error).message)
    throw new GranaryError('GRN_UNAVAILABLE', [shadowUrl, (err as Error).message])
  }
  const body = await res.body.json().catch(() => undefined) as unknown
  void dispatcher?.close()
  if (res.statusCode !== 200) throw errorFromBody(body as Partial<ErrorBody> | undefined, res.statusCode)
  return body as PromoteReply
}

// The report's shadow section: a master lists its shadows, a shadow its master and its lag.
export function formatShadowLines (cluster: ClusterReport): string {
  const lines: string[] = []
  if (cluster.fencedByTerm !== undefined) lines.push(`\nDEPOSED: term ${cluster.fencedByTerm} exists; this master refuses requests`)
  if (cluster.shadows !== undefined) {
    lines.push(cluster.shadows.length === 0
      ? '\nno shadows follow this master'
      : '\n' + formatTable([
        ['SHADOW', 'URL', 'APPLIED SEQ', 'LAG RECORDS', 'LAG', 'LAST POLL'],
        ...cluster.shadows.map((s) => [s.shadowId, s.url ?? '?', String(s.appliedSeq), String(s.lagRecords),
          s.lagMs === null ? 'trimmed' : `${s.lagMs} ms`, formatAge(s.lastSeenAgeMs)])
      ], new Set([2, 3, 4])).trimEnd())
  }
  if (cluster.lease !== undefined) {
    const lease = cluster.lease
    lines.push(`\nlease ${lease.held ? 'held' : 'NOT HELD'}: renewed by a majority of ${lease.voters} registered chunkservers${lease.remainingMs === null ? ' (none registered: unbounded)' : `, ${lease.remainingMs} ms left`}`)
  }
  if (cluster.isr !== undefined) {
    lines.push(cluster.isr.length === 0
      ? 'in-sync shadows: none — acknowledged mutations are on this machine only; losing its host loses the latest of them, and no shadow can take over'
      : `in-sync shadows: ${cluster.isr.join(', ')} — every acknowledgement waits for them; any of them can take over`)
  }
  const f = cluster.following
  if (f !== undefined) {
    lines.push(`\nfollowing ${f.masterUrl}: applied seq ${f.appliedSeq}, master seq ${f.masterSeq ?? '?'}, ${f.lagRecords ?? '?'} records behind, last contact ${formatAge(f.lastContactAgeMs)}`)
    if (f.lagMsP50 !== null) lines.push(`lag over recent records: p50 ${f.lagMsP50} ms / ${f.lagRecordsP50 ?? 0} records, p99 ${f.lagMsP99 ?? 0} ms / ${f.lagRecordsP99 ?? 0} records`)
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n'
}
