// Proves the HTTP edge: schema failures, unknown fields, malformed JSON and oversize bodies become GRN_*
// bodies with the right status; unknown routes are GRN_NOT_FOUND; a failed assertion reaches onFatal; health
// and report answer; and a real master (startMaster on port 0, and runMaster in a child process) logs one
// 'ready' line with its port and url, serves HTTP, and stops cleanly on SIGTERM.
import { parseCredentials, signClient, signRequestWithSecret } from '../../../shared/auth.js'
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pathToFileURL } from 'node:url'
import { pino } from 'pino'
import { resolveMasterConfig } from '../../../shared/config.js'
import { heartbeatBodyBytesMax, jsonBodyBytesMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { startMaster } from '../../../master/main.js'
import { addServers, dumpTables, heartbeatBody, startTestMaster, writeFile } from './fixture.js'

t.test('bad requests become GRN_* bodies and change nothing', async (t) => {
  const m = await startTestMaster(t)
  const before = dumpTables(m.db)
  const missing = await m.call('POST', '/fs/mkdir', {})
  t.match(missing, { statusCode: 400, body: { statusCode: 400, code: 'GRN_INVALID_ARGUMENT', error: 'Bad Request', message: /must have required property 'path'/ } })
  t.match(await m.call('POST', '/fs/mkdir', { path: '/a', color: 'red' }), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT', message: /additional properties/ } })
  t.match(await m.call('POST', '/fs/create', { path: '/a', chunkSizeBytes: 98_304 }), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT', message: 'invalid argument: body/chunkSizeBytes must be multiple of 65536' } })
  t.match(await m.call('GET', '/fs/stat', { path: 'x'.repeat(5000) }), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT' } })

  const malformed = await m.app.inject({ method: 'POST', url: '/fs/mkdir', headers: { 'content-type': 'application/json' }, payload: '{"path": ' })
  t.match(malformed.json(), { statusCode: 400, code: 'GRN_INVALID_ARGUMENT' })
  t.equal(malformed.statusCode, 400)
  const wrongType = await m.app.inject({ method: 'POST', url: '/fs/mkdir', headers: { 'content-type': 'text/plain', ...signRequestWithSecret(m.secret, 'POST', '/fs/mkdir', 'hi') }, payload: 'hi' })
  t.match(wrongType.json(), { code: 'GRN_INVALID_ARGUMENT' })

  const big = await m.call('POST', '/fs/mkdir', { path: '/a', requestId: 'r', pad: 'x'.repeat(jsonBodyBytesMax) })
  t.match(big, { statusCode: 413, body: { code: 'GRN_LIMIT_EXCEEDED', message: `request body is over its limit of ${jsonBodyBytesMax}` } })
  const notFound = await m.call('GET', '/nope?x=1')
  t.match(notFound, { statusCode: 404, body: { code: 'GRN_NOT_FOUND', message: 'no such file or directory: route GET /nope' } })
  t.same(dumpTables(m.db), before, 'nothing changed')
})

// Issue 14 item 6. Proves a JSON body's types are checked, never converted: "1", null and "true" used to be
// coerced by fastify's ajv into numbers and booleans, and inodeId 1e308 passed as an integer, so each of these
// mutations was applied and logged. Each is now 400 GRN_INVALID_ARGUMENT with the oplog seq and every table
// unchanged, the same mutations with proper types still succeed, and a querystring integer is still coerced.
t.test('mutation bodies refuse coerced types and unbounded integers; querystrings still coerce', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const { inodeId, leaseId } = (await m.call<p.CreateReply>('POST', '/fs/create', { path: '/f' })).body
  const alloc = (await m.call<p.AllocateReply>('POST', '/fs/allocate', { inodeId, leaseId, chunkIndex: 0 })).body
  const commit = { inodeId, leaseId, chunkIndex: 0, chunkHandle: alloc.chunkHandle, version: alloc.version, lengthBytes: 5, crc32: 7, serverIds: alloc.pipeline.map((s) => s.serverId) }
  const seq = m.queue.seq
  const before = dumpTables(m.db)
  const bad: Array<[string, object]> = [
    ['/fs/allocate', { inodeId: String(inodeId), leaseId, chunkIndex: 1 }],
    ['/fs/allocate', { inodeId, leaseId, chunkIndex: null }],
    ['/fs/allocate', { inodeId, leaseId, chunkIndex: '1' }],
    ['/fs/commit', { ...commit, version: String(alloc.version) }],
    ['/fs/commit', { ...commit, lengthBytes: '5' }],
    ['/fs/commit', { ...commit, crc32: null }],
    ['/fs/abandon', { inodeId: 1e308, leaseId }],
    ['/fs/abandon', { inodeId: String(inodeId), leaseId }],
    ['/fs/abandon', { inodeId: null, leaseId }],
    ['/fs/complete', { inodeId, leaseId, sizeBytes: '0', chunkCount: 0 }],
    ['/fs/mkdir', { path: '/d', parents: 'true' }],
    ['/fs/mkdir', { path: '/d', mode: '493' }],
    ['/chunkservers/heartbeat', heartbeatBody(1, { capacityBytes: 1e308 })]
  ]
  for (const [url, payload] of bad) {
    const res = await m.call('POST', url, payload)
    t.match(res, { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT', message: /^invalid argument: body\// } }, `${url} ${JSON.stringify(payload)}`)
    t.equal(m.queue.seq, seq, `${url}: nothing logged`)
  }
  t.same(dumpTables(m.db), before, 'nothing changed')
  t.equal((await m.call('POST', '/fs/commit', commit)).statusCode, 200, 'the same commit with numbers is applied')
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/d', parents: true, mode: 0o700 })).statusCode, 200)
  t.equal(m.queue.seq, seq + 2)
  const listed = await m.call<p.ListReply>('GET', '/fs/list', { path: '/', limit: '1' })
  t.match(listed, { statusCode: 200, body: { entries: [{ path: '/d' }] } }, 'a querystring limit is still a number')
})

t.test('a heartbeat may be far larger than a client request', async (t) => {
  const m = await startTestMaster(t)
  await m.call('POST', '/chunkservers/heartbeat', heartbeatBody(1))
  const fullReport = Array.from({ length: 20_000 }, (_, i) => ({ chunkHandle: (0x100000 + i).toString(16).padStart(16, '0'), version: 1, lengthBytes: 1 }))
  const body = heartbeatBody(1, { fullReport: fullReport as p.StoredChunk[] })
  t.ok(JSON.stringify(body).length > jsonBodyBytesMax, 'over the client body limit')
  const res = await m.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', body)
  t.equal(res.statusCode, 200)
  t.equal(res.body.commands.length, 1000, 'unknown chunks are told to go, one bounded page at a time')
  t.ok(heartbeatBodyBytesMax > jsonBodyBytesMax)
})

t.test('a failed assertion reaches onFatal and answers GRN_INTERNAL', async (t) => {
  const m = await startTestMaster(t)
  m.db.prepare("UPDATE inodes SET type = 'file' WHERE id = 1").run()   // break an invariant by hand
  const res = await m.call('GET', '/fs/stat', { path: '/' })
  t.match(res, { statusCode: 500, body: { code: 'GRN_INTERNAL', message: /the root directory exists/ } })
  t.equal(m.fatal.length, 1)
  t.equal(m.fatal[0]?.name, 'AssertionError')
})

t.test('health and report', async (t) => {
  const m = await startTestMaster(t, { deadAfterMs: 10_000 })   // the ages below are picked around it
  t.same((await m.call('GET', '/healthz')).body, { role: 'master', term: 1, seq: 0, safeMode: false, metadataServers: [] }, 'no URL before it listens (inject), no shadow yet')
  await addServers(m, 2)
  await writeFile(m, '/f', [5])
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  m.clock.nowMs += 5000
  await m.call('POST', '/chunkservers/heartbeat', heartbeatBody(1, { activeWrites: 3 }))
  m.clock.nowMs += 6000   // server 2 is now dead
  const report = (await m.call<p.ClusterReport>('GET', '/cluster/report')).body
  t.match(report, { role: 'master', term: 1, seq: m.queue.seq, safeMode: false, fileCount: 1, dirCount: 2, chunkCount: 1, sizeBytes: 5, underReplicatedChunks: 1, missingChunks: 0 })
  t.same(report.servers.map((s) => [s.serverId, s.alive, s.lastHeartbeatAgeMs, s.activeWrites]), [['cs-000000000001', true, 6000, 3], ['cs-000000000002', false, 11_000, 0]])
  m.clock.nowMs += 10_000
  t.match((await m.call('GET', '/cluster/report')).body, { underReplicatedChunks: 1, missingChunks: 1 })
})

t.test('a restarted master is in safe mode until its chunkservers report', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 1)
  await m1.close()
  const m2 = await startTestMaster(t, { dir })
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, true)
  await m2.call('POST', '/chunkservers/heartbeat', heartbeatBody(1, { fullReport: [] }))
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, false)
})

t.test('startMaster listens on port 0, logs one ready line, serves HTTP, closes', async (t) => {
  const dir = t.testdir()
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); done() } })
  const config = resolveMasterConfig({ port: 0, dataDir: join(dir, 'master'), secretFile: join(dir, 'secret'), createSecret: true, logLevel: 'info' })
  const master = await startMaster(config, { logger: pino({ level: 'info' }, sink) })
  t.match(master.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const ready = lines.filter((l) => l.msg === 'ready')
  t.equal(ready.length, 1)
  t.match(ready[0], { level: 30, port: master.port, url: master.url })
  // A master on an empty data folder made the first admin key, in its data folder, readable by its owner only.
  const credentialsFile = join(dir, 'master', 'credentials')
  t.equal(statSync(credentialsFile).mode & 0o777, 0o600)
  const credentials = parseCredentials(readFileSync(credentialsFile, 'utf8'), credentialsFile)
  const unsigned = await fetch(`${master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/x' }) })
  t.equal(unsigned.status, 401, 'an unsigned mutation is refused')
  t.match(await unsigned.json(), { code: 'GRN_UNAUTHENTICATED' })
  const body = JSON.stringify({ path: '/x' })
  const res = await fetch(`${master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json', ...signClient(credentials, 'POST', '/fs/mkdir', body) }, body })
  t.equal(res.status, 200)
  t.match(await res.json(), { path: '/x', type: 'dir' })
  await master.close()
  await master.close()   // twice is fine
  await t.rejects(fetch(`${master.url}/healthz`), 'no longer listening')
})

t.test('runMaster: ready on stdout, SIGTERM exits 0', async (t) => {
  const dir = t.testdir()
  const script = join(dir, 'run.mjs')
  const mainUrl = pathToFileURL(join(import.meta.dirname, '../../../master/main.ts')).href
  writeFileSync(script, `import { runMaster } from ${JSON.stringify(mainUrl)}\nawait runMaster(process.argv.slice(2))\n`)
  const child = spawn(process.execPath, [...process.execArgv, script, '--port', '0', '--data-dir', join(dir, 'm'), '--secret-file', join(dir, 'secret'), '--create-secret'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let stdout = ''
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line: ${stdout}`)), 30_000)
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      const line = stdout.split('\n').map((l) => { try { return JSON.parse(l) } catch { return null } }).find((l) => l?.msg === 'ready')
      if (line) { clearTimeout(timer); resolve(line) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`exited ${code}: ${stdout}`)) })
  })
  t.match(ready, { port: Number, url: `http://127.0.0.1:${ready.port}`, role: 'master' })
  const health = await fetch(`${ready.url}/healthz`)
  t.same(await health.json(), { role: 'master', term: 1, seq: 1, safeMode: false, metadataServers: [ready.url] }, 'it lists itself, by its advertised URL (seq 1: the first admin key)')
  t.equal(health.headers.get('x-granary-position'), '1.1', 'every reply carries its (term, seq) position')
  child.kill('SIGTERM')
  const code = await new Promise((resolve) => child.once('exit', resolve))
  t.equal(code, 0)
})
