// Proves `granary admin promote` and the report's shadow lines: a missing --shadow is a usage error, an unknown
// action or an unreachable shadow exits 1 with a stable code, a refused promotion prints the shadow's own code
// (GRN_NOT_CAUGHT_UP), a granted one prints the new term; `granary report` shows a master's shadows (applied
// seq, lag in records and ms) and a shadow's master and lag percentiles.
import t, { type Test } from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import { parseCommandLine } from '../../../client/cli/args.js'
import { main, type CliIo } from '../../../client/cli/main.js'
import { formatShadowLines } from '../../../client/cli/admin.js'
import type { ClusterReport } from '../../../shared/protocol.js'

function io (): CliIo & { out: () => string, err: () => string } {
  let out = ''
  let err = ''
  const sink = (append: (s: string) => void): Writable => new Writable({ write (chunk: Buffer, _enc, done) { append(chunk.toString()); done() } })
  return {
    stdin: process.stdin, env: {}, stdout: sink((s) => { out += s }), stderr: sink((s) => { err += s }),
    out: () => out, err: () => err
  }
}

async function fakeShadow (t: Test, handler: (body: string, res: ServerResponse) => void): Promise<string> {
  const server = createServer((req: IncomingMessage, res) => {
    let body = ''
    req.on('data', (d: Buffer) => { body += d.toString() })
    req.on('end', () => handler(`${req.method ?? ''} ${req.url ?? ''} ${body}`, res))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

t.test('admin promote: usage, refusal and success', async (t) => {
  t.throws(() => parseCommandLine(['admin', 'promote']), { code: 'GRN_INVALID_ARGUMENT', message: /needs --shadow URL/ })
  t.match(parseCommandLine(['admin', 'promote', '--shadow', 'http://127.0.0.1:9001', '--force']), { kind: 'client', positionals: ['promote'], values: { shadow: 'http://127.0.0.1:9001', force: true } })

  const unknown = io()
  t.equal(await main(['admin', 'demote', '--shadow', 'http://127.0.0.1:1'], unknown), 1)
  t.match(unknown.err(), /^granary: GRN_INVALID_ARGUMENT: .*unknown admin action 'demote'/)

  const seen: string[] = []
  let refuse = true
  const url = await fakeShadow(t, (request, res) => {
    seen.push(request)
    res.writeHead(refuse ? 409 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(refuse
      ? { statusCode: 409, code: 'GRN_NOT_CAUGHT_UP', error: 'Conflict', message: 'this shadow is not caught up with its master (3 records behind)' }
      : { term: 2, seq: 41, lagRecords: 3, forced: true }))
  })
  const refused = io()
  t.equal(await main(['admin', 'promote', '--shadow', url], refused), 1)
  t.match(refused.err(), 'granary: GRN_NOT_CAUGHT_UP: this shadow is not caught up with its master (3 records behind)')
  t.same(seen, ['POST /admin/promote {"force":false}'])
  refuse = false
  const granted = io()
  t.equal(await main(['admin', 'promote', '--shadow', url, '--force'], granted), 0, granted.err())
  t.match(granted.out(), `${url} is now the master: term 2, seq 41 (forced: 3 records behind its old master were given up)`)
  t.equal(seen[1], 'POST /admin/promote {"force":true}')

  const gone = io()
  t.equal(await main(['admin', 'promote', '--shadow', 'http://127.0.0.1:1'], gone), 4, 'a shadow nobody answers at: exit 4 (unreachable)')
  t.match(gone.err(), /^granary: GRN_UNAVAILABLE: /)
})

t.test('report lines for shadows', async (t) => {
  const base = { term: 1, seq: 90, safeMode: false, fileCount: 0, dirCount: 1, chunkCount: 0, sizeBytes: 0, underReplicatedChunks: 0, missingChunks: 0, servers: [] }
  const master: ClusterReport = {
    ...base, role: 'master',
    shadows: [{ shadowId: 'sh-000000000001', url: 'http://127.0.0.1:9001', appliedSeq: 88, lagRecords: 2, lagMs: 7, lastSeenAgeMs: 120 }]
  }
  const text = formatShadowLines(master)
  t.match(text, /SHADOW\s+URL\s+APPLIED SEQ\s+LAG RECORDS\s+LAG\s+LAST POLL/)
  t.match(text, /sh-000000000001\s+http:\/\/127\.0\.0\.1:9001\s+88\s+2\s+7 ms\s+0\.1 s ago/)
  t.match(formatShadowLines({ ...base, role: 'master', shadows: [] }), 'no shadows follow this master')
  const shadow: ClusterReport = {
    ...base, role: 'shadow',
    following: { masterUrl: 'http://127.0.0.1:9000', appliedSeq: 90, masterSeq: 90, lagRecords: 0, lastContactAgeMs: 50, bootstrapCount: 1, lagMsP50: 2, lagMsP99: 31, lagRecordsP50: 1, lagRecordsP99: 12 }
  }
  t.match(formatShadowLines(shadow), 'following http://127.0.0.1:9000: applied seq 90, master seq 90, 0 records behind')
  t.match(formatShadowLines(shadow), 'p50 2 ms / 1 records, p99 31 ms / 12 records')
  t.match(formatShadowLines({ ...base, role: 'master', fencedByTerm: 3 }), 'DEPOSED: term 3 exists')
  t.equal(formatShadowLines({ ...base, role: 'master' }), '', 'an old report without the fields adds nothing')
})

t.test('report lines for the lease and the in-sync set: a master without an in-sync shadow says what a host loss costs', async (t) => {
  const base = { term: 2, seq: 9, safeMode: false, fileCount: 0, dirCount: 1, chunkCount: 0, sizeBytes: 0, underReplicatedChunks: 0, missingChunks: 0, servers: [], role: 'master' as const, shadows: [] }
  const alone = formatShadowLines({ ...base, isr: [], lease: { held: true, voters: 3, remainingMs: 700 } })
  t.match(alone, 'lease held: renewed by a majority of 3 registered chunkservers, 700 ms left')
  t.match(alone, /in-sync shadows: none — acknowledged mutations are on this machine only; losing its host loses the latest of them/)
  const paired = formatShadowLines({ ...base, isr: ['sh-000000000001'], lease: { held: false, voters: 3, remainingMs: 0 } })
  t.match(paired, 'lease NOT HELD')
  t.match(paired, 'in-sync shadows: sh-000000000001 — every acknowledgement waits for them')
  t.notMatch(formatShadowLines({ ...base }), /in-sync/, 'nothing said when the report has no in-sync set (a shadow)')
})
