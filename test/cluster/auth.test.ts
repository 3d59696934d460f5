// Issue 12: nobody in who does not belong. On a real cluster (master, in-sync shadow, three chunkservers):
//   - every route of protocol.ts has an access rule on the server that serves it (a new route cannot be forgotten);
//   - the hostile-input sweep: every route of master, shadow and chunkserver, sent no credentials, a forged
//     signature, a replayed and a stale request, malformed JSON, wrong types, huge and negative numbers, path and
//     handle traversal and oversized bodies, answers a 4xx with a stable code, every server stays up, and the
//     master's tables (namespace, chunks, replicas, keys, servers) are identical before and after;
//   - the attacks of the issue, each refused: a forged heartbeat with a huge term, a fake chunkserver, an empty or
//     "corrupt" report for a real server id, an open promote, an open snapshot or oplog tail, an open vote;
//   - access keys: a read-only key cannot write, a key scoped to /a cannot read /b, a revoked key stops working on
//     the master and the shadow; the CLI's admin keys create/list/revoke end to end.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { request } from 'undici'
import { masterCallsDuring, startCluster, type Cluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'
import * as p from '../../shared/protocol.js'
import * as limits from '../../shared/limits.js'
import { errorCodes } from '../../shared/errors.js'
import { newCredentials, signClient, signRequest, signRequestWithSecret, type Credentials } from '../../shared/auth.js'
import { masterRouteAccess } from '../../master/server.js'
import { chunkserverRouteAccess } from '../../chunkserver/server.js'
import { readFileSync } from 'node:fs'

const stableCodes = new Set<string>(errorCodes)

interface Reply { status: number, code: string | undefined, text: string }

async function send (url: string, method: string, path: string, options: { body?: string, headers?: Record<string, string>, contentType?: string } = {}): Promise<Reply> {
  const res = await request(url + path, {
    method: method as 'GET', body: options.body, headersTimeout: 10_000, bodyTimeout: 10_000,
    headers: { ...(options.body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }), ...options.headers }
  })
  const text = await res.body.text()
  let code: string | undefined
  try { code = (JSON.parse(text) as { code?: string }).code } catch { code = undefined }
  return { status: res.statusCode, code, text }
}

// The master's tables, read from its database file (WAL: a reader beside the running master).
function tables (cluster: Cluster): string {
  const db = new Database(join(cluster.master.dataDir, 'master.db'), { readonly: true, fileMustExist: true })
  try {
    const rows = (sql: string): unknown[] => db.prepare(sql).all()
    return JSON.stringify({
      inodes: rows('SELECT id, parentId, name, type, state, sizeBytes, mode FROM inodes ORDER BY id'),
      chunks: rows('SELECT chunkHandle, inodeId, chunkIndex, version, lengthBytes, state FROM chunks ORDER BY chunkHandle'),
      replicas: rows('SELECT chunkHandle, serverId, version FROM replicas ORDER BY chunkHandle, serverId'),
      servers: rows('SELECT serverId, url FROM servers ORDER BY serverId'),
      keys: rows('SELECT accessKeyId, readOnly, admin, prefix, revokedAtMs FROM accessKeys ORDER BY accessKeyId'),
      term: rows('SELECT term FROM meta')
    })
  } finally {
    db.close()
  }
}

function bodyFor (path: string): Record<string, unknown> {
  switch (path) {
    case p.mkdirPath: case p.createPath: case p.deletePath: case p.restorePath: return { path: '/sweep' }
    case p.renamePath: return { source: '/sweep', target: '/sweep2' }
    case p.heartbeatPath: return { serverId: 'cs-0000000000ee', url: 'http://127.0.0.1:1', capacityBytes: 1e15, freeBytes: 1e15, usedBytes: 0, chunkCount: 0, activeWrites: 0, term: 2 ** 50, fullReport: [] }
    case p.votePath: return { term: 2 ** 50, candidateId: 'sh-00000000dead', candidateUrl: 'http://127.0.0.1:1', force: true }
    case p.keysPath: return { ...newCredentials(), name: 'sweep', admin: true }
    case p.keysRevokePath: return { accessKeyId: 'GKAAAAAAAAAAAAAAAAAA' }
    case p.handOverPath: return { shadowId: 'sh-00000000dead', url: 'http://127.0.0.1:1' }
    default: return {}
  }
}

interface RouteCase { server: 'master' | 'shadow' | 'chunkserver', method: 'GET' | 'POST' | 'PUT', path: string }

t.test('authentication, access keys and a hostile-input sweep on a real cluster', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, test: t })
  const admin = cluster.credentials
  const fs = cluster.client()
  await fs.mkdir('/a/inner', { recursive: true })
  await fs.mkdir('/b')
  const data = randomBytes(300_000)
  await fs.writeFile('/a/file.bin', data)
  await fs.writeFile('/b/file.bin', data)
  await cluster.waitFor(async () => ((await cluster.report()).isr?.length ?? 0) === 1, { what: 'the shadow in the in-sync set' })
  const shadowUrl = cluster.shadow?.url as string
  const csUrl = cluster.chunkservers[0]?.url as string
  const realServerId = (await cluster.report()).servers[0]?.serverId as string

  // Every route protocol.ts names has an access rule where it is served.
  const declared = Object.entries(p).filter(([name, value]) => name.endsWith('Path') && typeof value === 'string').map(([, value]) => value as string)
  for (const path of declared) {
    t.ok(masterRouteAccess.has(path) || chunkserverRouteAccess.has(path), `${path} has an access rule`)
  }
  const routes: RouteCase[] = []
  for (const [path, access] of masterRouteAccess) {
    if (access.who === 'anyone') continue
    // The status page and its data are open on a server bound to loopback only (this cluster): checked below.
    if (access.who === 'operator' || (access.who === 'key' && access.operator === true)) continue
    const method = ([p.statPath, p.listPath, p.duPath, p.openPath, p.fsckPath, p.reportPath, p.oplogPath, p.snapshotPath, p.keySigningPath] as string[]).includes(path) ? 'GET' : 'POST'
    routes.push({ server: 'master', method, path }, { server: 'shadow', method, path })
    if (path === p.keysPath) routes.push({ server: 'master', method: 'GET', path }, { server: 'shadow', method: 'GET', path })
  }
  routes.push({ server: 'chunkserver', method: 'POST', path: p.votePath })
  const urlOf = (server: RouteCase['server']): string => server === 'master' ? cluster.master.url : server === 'shadow' ? shadowUrl : csUrl
  const query = (route: RouteCase): string => route.method === 'GET' && route.path.startsWith('/fs/') ? '?path=%2Fa' : route.path === p.oplogPath ? '?after=0&shadowId=sh-00000000dead' : route.path === p.snapshotPath ? '?shadowId=sh-00000000dead' : route.path === p.keySigningPath ? `?accessKeyId=${admin.accessKeyId}&date=20261207&region=us-east-1&service=s3` : ''

  const before = tables(cluster)
  const forger: Credentials = newCredentials()
  for (const route of routes) {
    const url = urlOf(route.server)
    const target = route.path + query(route)
    const body = route.method === 'GET' ? undefined : JSON.stringify(bodyFor(route.path))
    const what = `${route.server} ${route.method} ${route.path}`
    // No credentials, an unknown key, a forged cluster signature: 401, nothing changes.
    const none = await send(url, route.method, target, { body })
    t.equal(none.status, 401, `${what}: no credentials → 401 (${none.code ?? none.text})`)
    t.equal(none.code, 'GRN_UNAUTHENTICATED')
    const unknown = await send(url, route.method, target, { body, headers: signClient(forger, route.method, target, body ?? null) })
    t.equal(unknown.code, 'GRN_UNAUTHENTICATED', `${what}: an unknown key → GRN_UNAUTHENTICATED`)
    const forged = await send(url, route.method, target, { body, headers: signRequestWithSecret(randomBytes(32), route.method, target, body ?? null) })
    t.equal(forged.code, 'GRN_UNAUTHENTICATED', `${what}: a cluster signature made with another secret → GRN_UNAUTHENTICATED`)
    // A signature over another body (the request altered on the way).
    if (body !== undefined) {
      const altered = await send(url, route.method, target, { body, headers: signClient(admin, route.method, target, body.replace('}', ',"x":1}')) })
      t.equal(altered.code, 'GRN_UNAUTHENTICATED', `${what}: a signature over another body → GRN_UNAUTHENTICATED`)
    }
    // Signed more than the window ago: refused however right the signature.
    const stale = await send(url, route.method, target, { body, headers: signRequest(admin.accessKeyId, admin.secretAccessKey, route.method, target, body ?? null, Date.now() - 120_000) })
    t.equal(stale.code, 'GRN_UNAUTHENTICATED', `${what}: signed 120 s ago → GRN_UNAUTHENTICATED`)
    // Malformed JSON, signed: refused before anything runs.
    if (route.method !== 'GET') {
      const bad = '{"path": '
      const malformed = await send(url, route.method, target, { body: bad, headers: signClient(admin, route.method, target, bad) })
      t.ok(malformed.status >= 400 && malformed.status < 500 && stableCodes.has(malformed.code ?? ''), `${what}: malformed JSON → ${malformed.status} ${malformed.code ?? ''}`)
    }
  }
  t.equal(tables(cluster), before, 'nothing changed on the master: namespace, chunks, replicas, keys, servers, term')

  // Bound to loopback only, the operator pages need no key (issue 16: what granary up runs); nothing else is open.
  for (const target of [p.metricsPath, p.statusPagePath, p.reportPath, `${p.listPath}?path=%2F`]) {
    t.equal((await send(cluster.master.url, 'GET', target)).status, 200, `loopback: ${target} without a key`)
  }
  t.equal((await send(cluster.master.url, 'GET', `${p.statPath}?path=%2Fa`)).status, 401, 'loopback: a stat still needs one')

  // A replay: the same signed request twice; the second is refused (its nonce was seen).
  const statTarget = `${p.statPath}?path=%2Fa`
  const once = signClient(admin, 'GET', statTarget, null)
  t.equal((await send(cluster.master.url, 'GET', statTarget, { headers: once })).status, 200, 'a signed stat')
  const replayed = await send(cluster.master.url, 'GET', statTarget, { headers: once })
  t.equal(replayed.code, 'GRN_UNAUTHENTICATED', 'the same request replayed → GRN_UNAUTHENTICATED')
  t.match(replayed.text, /replayed/)

  // Hostile bodies and queries, signed with the admin key: 4xx with a stable code, nothing changes.
  const hostile: Array<[string, 'GET' | 'POST', string, unknown]> = [
    ['master', 'POST', p.mkdirPath, { path: 42 }],
    ['master', 'POST', p.mkdirPath, { path: '/a/../../etc' }],
    ['master', 'POST', p.mkdirPath, { path: '/x\u0000y' }],
    ['master', 'POST', p.createPath, { path: '/h', replication: 1e308 }],
    ['master', 'POST', p.createPath, { path: '/h', chunkSizeBytes: -65536 }],
    ['master', 'POST', p.allocatePath, { inodeId: -1, leaseId: 'x', chunkIndex: -5 }],
    ['master', 'POST', p.commitPath, { inodeId: 2 ** 60, leaseId: '../../etc', chunkHandle: '../../../etc/passwd', version: -1, lengthBytes: -1, crc32: -1 }],
    ['master', 'POST', p.renamePath, { source: '/a', target: '/a/inner/into-itself' }],
    ['master', 'POST', p.deletePath, { path: '/', recursive: 'yes' }],
    ['master', 'GET', `${p.listPath}?path=%2Fa&limit=-1`, undefined],
    ['master', 'GET', `${p.statPath}?path=..%2F..%2Fetc`, undefined],
    ['master', 'POST', p.keysPath, { accessKeyId: '../etc', secretAccessKey: 'short', name: 'x' }],
    ['master', 'POST', p.keysRevokePath, { accessKeyId: 'GKZZZZZZZZZZZZZZZZZZ' }],
    ['shadow', 'POST', p.mkdirPath, { path: '/from-the-shadow' }],
    ['master', 'POST', p.mkdirPath, { path: '/big', pad: 'x'.repeat(2 * 1024 * 1024) }],
  ]
  for (const [server, method, target, payload] of hostile) {
    const body = payload === undefined ? undefined : JSON.stringify(payload)
    const url = server === 'master' ? cluster.master.url : shadowUrl
    const oversized = body !== undefined && body.length > limits.jsonBodyBytesMax
    const reply = await send(url, method, target, { body, headers: signClient(admin, method, target, body ?? null) }).catch((err: { code?: string }) => {
      // A server may answer a body over its limit (413) and close the connection before reading the rest (RFC 9110
      // 15.5.14): a client still sending then gets EPIPE or a reset instead of the reply, as this one did in CI
      // under load. Refused either way; that the server is still up and changed nothing is checked below.
      if (oversized && (err.code === 'EPIPE' || err.code === 'ECONNRESET' || err.code === 'UND_ERR_SOCKET')) return null
      throw err
    })
    if (reply === null) {
      t.equal((await send(url, 'GET', `${p.statPath}?path=%2Fa`, { headers: signClient(admin, 'GET', `${p.statPath}?path=%2Fa`, null) })).status, 200, `${server} ${method} ${target}: hung up on a body over the limit, and answers the next request`)
      continue
    }
    t.ok(reply.status >= 400 && reply.status < 500 || (server === 'shadow' && reply.status === 503), `${server} ${method} ${target.slice(0, 60)}: ${reply.status} ${reply.code ?? ''}`)
    t.ok(stableCodes.has(reply.code ?? ''), `a stable code: ${reply.code ?? reply.text.slice(0, 80)}`)
  }
  // Chunk handles and versions out of shape on a chunkserver: 4xx, never a file outside its folder.
  for (const target of ['/chunks/..%2F..%2F..%2Fetc%2Fpasswd?version=1', '/chunks/zz?version=-1', `/chunks/${'f'.repeat(16)}?version=99999999999999999999`]) {
    const reply = await send(csUrl, 'GET', target, { headers: { [p.tokenHeader]: 'eyJ4IjoxfQ.AAAA' } })
    t.ok(reply.status >= 400 && reply.status < 500 && stableCodes.has(reply.code ?? ''), `chunkserver GET ${target}: ${reply.status} ${reply.code ?? ''}`)
  }
  t.equal(tables(cluster), before, 'still nothing changed')

  // The attacks, one by one.
  const beat = (over: Record<string, unknown>): string => JSON.stringify({ ...bodyFor(p.heartbeatPath), ...over })
  const forgedBeat = await send(cluster.master.url, 'POST', p.heartbeatPath, { body: beat({ serverId: realServerId }) })
  t.equal(forgedBeat.status, 401, 'a forged heartbeat with a huge term is refused')
  const withKey = await send(cluster.master.url, 'POST', p.heartbeatPath, { body: beat({}), headers: signClient(admin, 'POST', p.heartbeatPath, beat({})) })
  t.equal(withKey.code, 'GRN_PERMISSION_DENIED', 'even an admin key may not speak for a chunkserver')
  const emptyReport = beat({ serverId: realServerId, term: 1, fullReport: [], corrupt: [] })
  t.equal((await send(cluster.master.url, 'POST', p.heartbeatPath, { body: emptyReport, headers: signRequestWithSecret(randomBytes(32), 'POST', p.heartbeatPath, emptyReport) })).status, 401, 'an empty report for a real server id, signed with another secret, is refused')
  const report = await cluster.report()
  t.equal(report.role, 'master', 'the master was not deposed')
  t.notOk(report.servers.some((s) => s.serverId === 'cs-0000000000ee'), 'no fake chunkserver was registered')
  t.equal((await send(shadowUrl, 'POST', p.promotePath, { body: '{}' })).status, 401, 'an open promote on the shadow is refused')
  t.equal((await send(cluster.master.url, 'GET', `${p.snapshotPath}?shadowId=sh-00000000dead`)).status, 401, 'an open snapshot download is refused')
  t.equal((await send(cluster.master.url, 'GET', `${p.oplogPath}?after=0&shadowId=sh-00000000dead`)).status, 401, 'an open oplog tail is refused')
  const vote = JSON.stringify(bodyFor(p.votePath))
  t.equal((await send(csUrl, 'POST', p.votePath, { body: vote })).status, 401, 'an open vote request is refused')
  t.equal((await send(csUrl, 'POST', p.votePath, { body: vote, headers: signClient(admin, 'POST', p.votePath, vote) })).status, 401, 'a client key cannot ask a chunkserver for a vote')
  t.equal(tables(cluster), before, 'and nothing changed')
  for (const proc of cluster.processes) t.ok(proc.pid > 0 && proc.alive, `${proc.name} is still up`)

  // Access keys: rights and prefixes, checked by the master and the shadow alike.
  const readOnly = await fs.createAccessKey({ name: 'reader', readOnly: true })
  const scoped = await fs.createAccessKey({ name: 'only-a', prefix: '/a' })
  const asReader = cluster.client({ credentials: readOnly })
  const asScoped = cluster.client({ credentials: scoped })
  t.same(await asReader.readFile('/b/file.bin'), data, 'a read-only key reads')
  await t.rejects(asReader.mkdir('/b/new'), { code: 'GRN_PERMISSION_DENIED' }, 'a read-only key cannot mkdir')
  await t.rejects(asReader.writeFile('/b/w.bin', 'x'), { code: 'GRN_PERMISSION_DENIED' }, 'nor write a file')
  await asScoped.writeFile('/a/mine.bin', data)
  t.same(await asScoped.readFile('/a/mine.bin'), data, 'a key scoped to /a writes and reads under /a')
  await t.rejects(asScoped.readFile('/b/file.bin'), { code: 'GRN_PERMISSION_DENIED' }, 'a key scoped to /a cannot read /b')
  await t.rejects(asScoped.rename('/a/mine.bin', '/b/stolen.bin'), { code: 'GRN_PERMISSION_DENIED' }, 'nor move a file out of /a')
  await t.rejects(asScoped.listAccessKeys(), { code: 'GRN_PERMISSION_DENIED' }, 'nor list the keys (admin)')
  await t.rejects(asScoped.createAccessKey({ name: 'escalate', admin: true }), { code: 'GRN_PERMISSION_DENIED' }, 'nor make keys')
  // A reserved file (client/reservations.ts) is named by its completing commit: the key's prefix is checked on that
  // name too. Small writes under /a start the key's pool of reserved files; one to /b then takes a reserved file
  // (no create) and its binding commit is refused.
  for (let i = 0; i < 4; i++) await asScoped.writeFile(`/a/small-${i}.bin`, 'x')
  await cluster.waitFor(() => asScoped.reservedFiles > 0, { what: 'the scoped client to hold reserved files', timeoutMs: 10_000 })
  const { calls: stealCalls } = await masterCallsDuring(async () => {
    await t.rejects(asScoped.writeFile('/b/stolen-small.bin', 'x'), { code: 'GRN_PERMISSION_DENIED' }, 'a reserved file is not named outside the key\'s prefix')
  })
  t.equal(stealCalls.get('/fs/create') ?? 0, 0, 'that write took a reserved file')
  t.equal(stealCalls.get('/fs/commit'), 1, 'and its binding commit was refused')
  await t.rejects(fs.stat('/b/stolen-small.bin'), { code: 'GRN_NOT_FOUND' }, 'nothing was made')
  // Many calls at once travel in batches (client/batch.ts): each call in a batch is checked on its own paths.
  const mixed = await Promise.allSettled(Array.from({ length: 40 }, async (_, i) => await asScoped.stat(i % 2 === 0 ? '/a/mine.bin' : '/b/file.bin')))
  t.same(mixed.map((r) => r.status === 'fulfilled' ? r.value.sizeBytes : (r.reason as { code: string }).code),
    mixed.map((_, i) => i % 2 === 0 ? data.length : 'GRN_PERMISSION_DENIED'), 'batched stats: /a answered, /b refused, call by call')
  const batchedMkdirs = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) => await asReader.mkdir(`/b/ro-${i}`)))
  t.same(batchedMkdirs.map((r) => r.status === 'rejected' ? (r.reason as { code: string }).code : 'made'), batchedMkdirs.map(() => 'GRN_PERMISSION_DENIED'), 'batched mkdirs of a read-only key: each refused')
  t.same((await fs.readdir('/b')).filter((name) => name.startsWith('ro-')), [], 'and none made')
  const metrics = await (await fetch(`${cluster.master.url}/metrics`)).text()
  t.match(metrics, /granary_http_requests_total\{method="POST",route="\/fs\/batch",code="200"\} [1-9]/, 'those calls did travel in batches')
  // Through the shadow alone, the keys (made after it started) work the same: they came through the oplog.
  const viaShadow = cluster.client({ credentials: scoped, masters: [shadowUrl] })
  t.same(await viaShadow.readFile('/a/mine.bin'), data, 'the shadow knows the scoped key')
  await t.rejects(viaShadow.stat('/b'), { code: 'GRN_PERMISSION_DENIED' }, 'and its prefix')
  // Revoked: refused from the next request on, on the master and on the shadow.
  await fs.revokeAccessKey(scoped.accessKeyId)
  await t.rejects(asScoped.stat('/a/mine.bin', { deadlineMs: 2_000 }), { code: 'GRN_UNAUTHENTICATED' }, 'a revoked key is refused by the master')
  await cluster.waitFor(async () => await viaShadow.stat('/a/mine.bin', { deadlineMs: 1_000 }).then(() => false, (err: { code?: string }) => err.code === 'GRN_UNAUTHENTICATED'),
    { what: 'the shadow to refuse the revoked key', timeoutMs: 5_000 })
  t.pass('a revoked key is refused by the shadow once it applied the revoke')
  const keys = await fs.listAccessKeys()
  t.match(keys.find((k) => k.accessKeyId === scoped.accessKeyId), { name: 'only-a', prefix: '/a', revokedAtMs: Number })
  t.notOk(JSON.stringify(keys).includes(scoped.secretAccessKey), 'no secret is ever listed')
  t.notOk(readFileSync(join(cluster.master.dataDir, 'master.db')).includes(readOnly.secretAccessKey), 'no secret is stored in clear (the database file)')

  // The CLI, as an admin would run it.
  const made = await granary(['admin', 'keys', 'create', '--name', 'cli-made', '--read-only', '--prefix', '/b', '--json', '--master', cluster.masters.join(',')], {})
  t.equal(made.code, 0, `keys create exits 0 ${made.stderr}`)
  const key = JSON.parse(made.stdout.toString()) as Credentials & p.AccessKeyInfo
  t.match(key, { accessKeyId: /^GK/, secretAccessKey: String, readOnly: true, prefix: '/b' })
  const keyFile = join(cluster.dir, 'cli-made.credentials')
  const { writeFileSync } = await import('node:fs')
  writeFileSync(keyFile, made.stdout, { mode: 0o600 })
  const listed = await granary(['ls', '/b', '--credentials', keyFile, '--master', cluster.masters.join(',')], {})
  t.equal(listed.code, 0, 'the printed credentials work as a --credentials file')
  t.match(listed.stdout.toString(), /file\.bin/)
  const refused = await granary(['mkdir', '/b/no', '--credentials', keyFile, '--master', cluster.masters.join(',')], {})
  t.not(refused.code, 0, 'a read-only key: mkdir fails')
  t.match(refused.stderr, /GRN_PERMISSION_DENIED/)
  const list = await granary(['admin', 'keys', 'list', '--master', cluster.masters.join(',')], {})
  t.match(list.stdout.toString(), /cli-made/)
  const revoked = await granary(['admin', 'keys', 'revoke', key.accessKeyId, '--master', cluster.masters.join(',')], {})
  t.equal(revoked.code, 0)
  const after = await granary(['ls', '/b', '--credentials', keyFile, '--master', cluster.masters.join(',')], {})
  t.match(after.stderr, /GRN_UNAUTHENTICATED/, 'revoked through the CLI: refused')
})
