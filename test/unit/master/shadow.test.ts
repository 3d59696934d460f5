// Proves the shadow follows its master exactly: bootstrapped from a snapshot taken while the master takes
// writes and then tailing under more writes, its namespace, chunk, replica and server tables equal the master's;
// a shadow restarted mid-stream resumes from its own seq with no gap and no duplicate; it serves stat, list and
// open (with read tokens) and refuses mutations with GRN_NOT_MASTER naming the master; a record that replays to
// a different result stops it loudly without applying the batch; a parked long poll answers at the commit.
import { signRequestWithSecret } from '../../../shared/auth.js'
import t from 'tap'
import { request } from 'undici'
import { verifyToken } from '../../../shared/token.js'
import type * as p from '../../../shared/protocol.js'
import { masterDefaults } from '../../../shared/config.js'
import { addServers, call, caughtUp, keepBeating, startPair, tables, waitFor, writeFile, writeLoad } from './shadow-fixture.js'

t.test('bootstrapped while the master takes writes, then tailing: the tables end equal', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await addServers(master)
  await writeLoad(master, 'before', 5)
  const during = writeLoad(master, 'during', 30)   // the snapshot and the first polls race this load
  const shadow = await pair.startShadow()
  await during
  await writeLoad(master, 'after', 5)
  await caughtUp(shadow, master)
  t.same(tables(shadow.node.db), tables(master.db), 'inodes, chunks, replicas, servers, meta equal')
  t.same(shadow.node.db.prepare('SELECT * FROM oplog WHERE seq > 100 ORDER BY seq').all(), master.db.prepare('SELECT * FROM oplog WHERE seq > 100 ORDER BY seq').all(), 'the same log too')
  t.same(pair.fatal, [])

  const health = await call<p.HealthReply>(shadow.node, 'GET', '/healthz')
  t.match(health.body, { role: 'shadow', term: 1, seq: master.queue.seq, following: { masterUrl: pair.masterUrl, appliedSeq: master.queue.seq, lagRecords: 0, bootstrapCount: 1 } })
  // The master learns the shadow's applied seq from its next poll, which may come just after caughtUp().
  const reportNow = async (): Promise<p.ClusterReport> => (await call<p.ClusterReport>(master, 'GET', '/cluster/report')).body
  await waitFor(async () => (await reportNow()).shadows?.[0]?.appliedSeq === master.queue.seq, 'the master to hear the shadow caught up')
  const report = { body: await reportNow() }
  t.match(report.body.shadows, [{ shadowId: shadow.shadowId, url: shadow.url, appliedSeq: master.queue.seq, lagRecords: 0, lagMs: 0 }])
})

t.test('a shadow serves reads from its copy and refuses mutations, naming the master', async (t) => {
  const pair = await startPair(t)
  await addServers(pair.master)
  await writeFile(pair.master, '/file', 2)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  const stat = await call<p.FileStat>(shadow.node, 'GET', '/fs/stat', { path: '/file' })
  t.match(stat, { statusCode: 200, body: { path: '/file', type: 'file', chunkCount: 2 } })
  t.same((await call(shadow.node, 'GET', '/fs/list', { path: '/' })).body, (await call(pair.master, 'GET', '/fs/list', { path: '/' })).body)
  const opened = await call<p.OpenReply>(shadow.node, 'GET', '/fs/open', { path: '/file' })
  t.equal(opened.statusCode, 200)
  const masterOpen = (await call<p.OpenReply>(pair.master, 'GET', '/fs/open', { path: '/file' })).body
  t.same(opened.body.chunks.map((c) => [c.chunkHandle, c.version, c.crc32, c.replicas.map((r) => r.serverId).sort()]),
    masterOpen.chunks.map((c) => [c.chunkHandle, c.version, c.crc32, c.replicas.map((r) => r.serverId).sort()]), 'same chunks and replicas')
  const claims = verifyToken(pair.secret, opened.body.chunks[0]?.token, Date.now())
  t.match(claims, { chunkHandle: opened.body.chunks[0]?.chunkHandle, mode: 'read', term: 1 }, 'a read token signed with the cluster secret')

  const seq = shadow.node.queue.seq
  for (const [url, payload] of [['/fs/mkdir', { path: '/x' }], ['/fs/create', { path: '/y' }], ['/fs/delete', { path: '/file' }], ['/fs/rename', { source: '/file', target: '/z' }]] as const) {
    const refused = await call(shadow.node, 'POST', url, payload)
    t.match(refused, { statusCode: 503, body: { code: 'GRN_NOT_MASTER', message: `this server is a shadow and does not take mutations; the master is ${pair.masterUrl}` } }, url)
  }
  t.equal(shadow.node.queue.seq, seq, 'nothing written')
  t.match(await call(shadow.node, 'GET', '/oplog', { after: 0, shadowId: 'sh-000000000001' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } }, 'a shadow serves no oplog')
  const beat = await call<p.HeartbeatReply>(shadow.node, 'POST', '/chunkservers/heartbeat', { serverId: 'cs-000000000009', url: 'http://127.0.0.1:7009', capacityBytes: 1, freeBytes: 1, usedBytes: 0, chunkCount: 0, activeWrites: 0, term: 1, fullReport: [] })
  const { operatorKeys, ...fields } = beat.body
  t.same(fields, { term: 1, heartbeatIntervalMs: masterDefaults.heartbeatIntervalMs, needFullReport: false, commands: [], role: 'shadow' }, 'heartbeats count for liveness only: no lease fields, nothing to echo')
  t.equal(operatorKeys?.length, 1, 'and the admin key the master made at its first start, hashed, for a chunkserver\'s /metrics (it reached the shadow through the oplog)')
  t.equal(shadow.node.queue.seq, seq, 'a heartbeat to a shadow writes nothing')
  t.ok(shadow.node.registry.isAlive('cs-000000000009' as never, Date.now()))
})

t.test('restarted mid-stream, a shadow resumes from its own seq: no gap, no duplicate', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await addServers(master)
  keepBeating(t, master)   // the stopped shadow leaves the in-sync set once the chunkservers echo the smaller set
  let shadow = await pair.startShadow()
  const load = writeLoad(master, 'load', 40)
  await waitFor(() => shadow.node.queue.seq > 60, 'the shadow to apply some records')
  await shadow.close()
  const stoppedAt = shadow.node.queue.seq
  await writeLoad(master, 'while-down', 3)
  shadow = await pair.startShadow()   // same folder: opens its own master.db, no snapshot
  t.ok(shadow.node.queue.seq >= stoppedAt, 'resumes where it stopped')
  await load
  await caughtUp(shadow, master)
  t.equal(shadow.node.follower?.report(Date.now()).bootstrapCount, 0, 'no second bootstrap')
  const seqs = shadow.node.db.prepare('SELECT seq FROM oplog ORDER BY seq').pluck().all() as number[]
  const first = seqs[0] as number
  t.same(seqs, Array.from({ length: master.queue.seq - first + 1 }, (_, i) => first + i), 'consecutive seqs up to the master\'s')
  t.same(shadow.node.db.prepare('SELECT * FROM oplog ORDER BY seq').all(), master.db.prepare('SELECT * FROM oplog WHERE seq >= ? ORDER BY seq').all(first), 'each record once, as the master wrote it')
  t.same(tables(shadow.node.db), tables(master.db))
})

t.test('a record that replays to a different result stops the shadow loudly and applies nothing of its batch', async (t) => {
  const pair = await startPair(t)
  const shadow = await pair.startShadow()
  await pair.master.queue.submit({ type: 'mkdir', path: '/a', parents: false, mtimeMs: 1 })
  await caughtUp(shadow, pair.master)
  const before = tables(shadow.node.db)
  await shadow.close()
  await pair.master.queue.submit({ type: 'mkdir', path: '/b', parents: false, mtimeMs: 2 })
  await pair.master.queue.submit({ type: 'mkdir', path: '/c', parents: false, mtimeMs: 3 })
  const tampered = pair.master.queue.seq   // the second record of the batch the restarted shadow will poll
  pair.master.db.prepare('UPDATE oplog SET result = json_set(result, \'$.inodeId\', 999) WHERE seq = ?').run(tampered)
  const again = await pair.startShadow()
  t.equal(await again.node.follower?.finished, 'stopped', 'the tail loop stopped')
  t.equal(pair.fatal.length, 1, 'onFatal called once')
  t.match(pair.fatal[0], { name: 'AssertionError', message: `oplog record ${tampered} (mkdir) replayed to a different result` })
  t.same(tables(again.node.db), before, 'the batch was rolled back as a whole: /b is not there either')
})

// A shadow that hangs up on a parked poll frees its place at once (the response's close), not at the end of
// its wait: oplogPollersMax bounds parked polls, and a dead connection must not hold one for 20 s.
t.test('a parked long poll whose shadow hangs up is released at once', async (t) => {
  const pair = await startPair(t)
  await pair.master.queue.submit({ type: 'mkdir', path: '/a', parents: false, mtimeMs: 1 })
  const seq = pair.master.queue.seq
  await call<p.OplogReply>(pair.master, 'GET', '/oplog', { after: seq, afterTerm: 1, waitMs: 0, shadowId: 'sh-00000000000b' })
  const pollPath = `/oplog?after=${seq}&afterTerm=1&waitMs=20000&shadowId=sh-00000000000b`
  const hangUp = new AbortController()
  const poll = request(`${pair.masterUrl}${pollPath}`, { headers: signRequestWithSecret(pair.secret, 'GET', pollPath, null), signal: hangUp.signal }).catch((err: Error) => err)
  const until = async (what: () => boolean, label: string): Promise<void> => {
    for (let turn = 0; turn < 500 && !what(); turn++) await new Promise((resolve) => setTimeout(resolve, 10))
    t.ok(what(), label)
  }
  await until(() => pair.master.feed.waiterCount === 1, 'parked')
  const hungUpAtMs = Date.now()
  hangUp.abort()
  t.match(await poll, { name: 'AbortError' }, 'the shadow gave up its request')
  await until(() => pair.master.feed.waiterCount === 0, 'the parked poll is released')
  t.ok(Date.now() - hungUpAtMs < 20_000, 'before its 20 s wait ran out')
})

t.test('a parked long poll answers at the next commit, not at its timeout', async (t) => {
  const pair = await startPair(t)
  await pair.master.queue.submit({ type: 'mkdir', path: '/a', parents: false, mtimeMs: 1 })
  const seq = pair.master.queue.seq
  // A caught-up poller joins the in-sync set with its first poll (answered at once, so it hears it); the
  // poll after that parks.
  const joined = await call<p.OplogReply>(pair.master, 'GET', '/oplog', { after: seq, afterTerm: 1, waitMs: 0, shadowId: 'sh-00000000000a' })
  t.same(joined.body, { term: 1, seq, isr: ['sh-00000000000a'], records: [] })
  const startedMs = Date.now()
  const pollPath = `/oplog?after=${seq}&afterTerm=1&waitMs=20000&shadowId=sh-00000000000a`
  const poll = request(`${pair.masterUrl}${pollPath}`, { headers: signRequestWithSecret(pair.secret, 'GET', pollPath, null) }).then(async (res) => ({ statusCode: res.statusCode, body: await res.body.json() as p.OplogReply }))
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(pair.master.feed.waiterCount, 1, 'parked')
  await pair.master.queue.submit({ type: 'mkdir', path: '/b', parents: false, mtimeMs: 2 })
  const res = await poll
  t.ok(Date.now() - startedMs < 5000, 'answered long before its 20 s wait')
  t.equal(res.statusCode, 200)
  t.match(res.body, { term: 1, seq: seq + 1, records: [{ seq: seq + 1, term: 1, op: { type: 'mkdir', path: '/b' }, requestId: null }] })
  t.equal(pair.master.feed.waiterCount, 0)

  const empty = await call<p.OplogReply>(pair.master, 'GET', '/oplog', { after: seq + 1, afterTerm: 1, waitMs: 0, shadowId: 'sh-00000000000a' })
  t.same(empty.body, { term: 1, seq: seq + 1, isr: ['sh-00000000000a'], records: [] }, 'nothing newer, no wait: an empty page at once (the caught-up poller is in sync)')
  const limited = await call<p.OplogReply>(pair.master, 'GET', '/oplog', { after: 0, limit: 1, shadowId: 'sh-00000000000a' })
  t.same(limited.body.records.map((r) => r.seq), [1], 'limit bounds the page')
})

t.test('the master refuses a history that is not a prefix of its own', async (t) => {
  const pair = await startPair(t)
  await pair.master.queue.submit({ type: 'mkdir', path: '/a', parents: false, mtimeMs: 1 })
  const seq = pair.master.queue.seq
  const ahead = await call(pair.master, 'GET', '/oplog', { after: seq + 5, shadowId: 'sh-00000000000b' })
  t.match(ahead, { statusCode: 410, body: { code: 'GRN_SNAPSHOT_REQUIRED', message: new RegExp(`log ends at seq ${seq}`) } })
  const diverged = await call(pair.master, 'GET', '/oplog', { after: seq, afterTerm: 2, shadowId: 'sh-00000000000b' })
  t.match(diverged, { statusCode: 410, body: { code: 'GRN_SNAPSHOT_REQUIRED', message: /histories diverged/ } })
  t.match(await call(pair.master, 'GET', '/oplog', { after: 0, shadowId: 'not-a-shadow' }), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT' } })
})
