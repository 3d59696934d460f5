// Proves promotion and fencing on the master's side: a shadow that is behind (by a known number of records, or
// with no contact since it started) is refused with GRN_NOT_CAUGHT_UP saying how far behind, unless forced; a
// caught-up shadow becomes the master with term + 1 through a logged newTerm op and takes writes; a master
// that hears of a newer term from a heartbeat is deposed and refuses mutations and reads; and a deposed master
// rejoining as a shadow of the new one finds its history diverged and re-bootstraps to the new master's copy.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { resolveShadowConfig } from '../../../shared/config.js'
import type * as p from '../../../shared/protocol.js'
import { startShadow } from '../../../master/main.js'
import { heartbeatBody, quietLog } from './fixture.js'
import { addServers, call, caughtUp, startPair, tables, waitFor, writeFile, writeLoad } from './shadow-fixture.js'

t.test('a caught-up shadow is promoted with term + 1 and takes writes', async (t) => {
  const pair = await startPair(t)
  await addServers(pair.master)
  await writeLoad(pair.master, 'w', 3)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  const seq = pair.master.queue.seq
  await pair.closeMaster()   // the master is gone; the shadow was caught up at its last poll
  const promoted = await call<p.PromoteReply>(shadow.node, 'POST', '/admin/promote', {})
  t.same(promoted, { statusCode: 200, body: { term: 2, seq: seq + 1, lagRecords: 0, forced: false } })
  t.same(shadow.node.db.prepare('SELECT seq, term, op, result FROM oplog WHERE seq = ?').get(seq + 1),
    { seq: seq + 1, term: 2, op: '{"type":"newTerm","term":2}', result: '{"term":2}' }, 'the new term is a logged op')
  t.equal(await shadow.node.follower?.finished, 'promoted')
  t.match((await call(shadow.node, 'GET', '/healthz')).body, { role: 'master', term: 2, seq: seq + 1 })
  t.match(await call(shadow.node, 'POST', '/admin/promote', {}), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT', message: /already the master/ } }, 'only once')

  // Writes: chunkservers must full-report to their new master before it places replicas.
  const beat = await call<p.HeartbeatReply>(shadow.node, 'POST', '/chunkservers/heartbeat', heartbeatBody(1))
  t.match(beat.body, { term: 2, needFullReport: true }, 'the new term rides on the reply; a full report is asked for')
  await addServers(shadow.node)
  t.equal((await call(shadow.node, 'POST', '/fs/mkdir', { path: '/after-promotion' })).statusCode, 200)
  await writeFile(shadow.node, '/w/new-file', 2)
  const opened = await call<p.OpenReply>(shadow.node, 'GET', '/fs/open', { path: '/w/new-file' })
  t.equal(opened.body.term, 2, 'tokens are signed in the new term')
  t.same(pair.fatal, [])
})

t.test('promotion is refused while behind, saying how far, unless forced', async (t) => {
  const pair = await startPair(t)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  await shadow.close()
  const applied = shadow.node.queue.seq
  // A stand-in master that is always 10 records ahead and never sends them.
  const fake = createServer((req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ term: 1, seq: applied + 10, records: [] }))
    }, 20)
  })
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { fake.closeAllConnections(); fake.close() })
  const fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`
  const behind = await pair.startShadow('shadow', { master: fakeUrl })
  await waitFor(() => behind.node.follower?.lagRecords() === 10, 'the shadow to hear the master seq')
  const refused = await call(behind.node, 'POST', '/admin/promote', {})
  t.match(refused, { statusCode: 409, body: { code: 'GRN_NOT_CAUGHT_UP', message: new RegExp(`10 records behind: applied seq ${applied}, master seq ${applied + 10}`), details: { lagRecords: 10 } } })
  t.equal(behind.node.queue.mode, 'shadow', 'still a shadow')
  const forced = await call<p.PromoteReply>(behind.node, 'POST', '/admin/promote', { force: true })
  t.same(forced.body, { term: 2, seq: applied + 1, lagRecords: 10, forced: true })
})

t.test('a shadow that has not heard from its master since it started cannot tell its lag', async (t) => {
  const pair = await startPair(t)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  await shadow.close()
  await pair.closeMaster()
  const alone = await pair.startShadow()
  const refused = await call(alone.node, 'POST', '/admin/promote', {})
  t.match(refused, { statusCode: 409, body: { code: 'GRN_NOT_CAUGHT_UP', message: /has not heard from its master .* since it started/ } })
  t.equal((await call(alone.node, 'POST', '/admin/promote', { force: true })).statusCode, 200)
  t.match(await call(alone.node, 'POST', '/admin/promote', {}), { statusCode: 400, body: { message: /already the master/ } })
})

t.test('a master that hears of a newer term is deposed: it refuses mutations and reads', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await master.queue.submit({ type: 'mkdir', path: '/a', parents: false, mtimeMs: 1 })
  t.equal((await call(master, 'POST', '/admin/promote', {})).body.code, 'GRN_INVALID_ARGUMENT', 'a master is not promoted')
  const stale = await call(master, 'POST', '/chunkservers/heartbeat', heartbeatBody(1, { term: 2 }))
  t.match(stale, { statusCode: 409, body: { code: 'GRN_STALE_TERM', message: 'term 1 is older than 2' } })
  t.equal(master.queue.mode, 'deposed')
  const seq = master.queue.seq
  const refused = await call(master, 'POST', '/fs/mkdir', { path: '/b' })
  t.match(refused, { statusCode: 503, body: { code: 'GRN_NOT_MASTER', message: /deposed master \(term 1; term 2 exists\)/, details: { role: 'deposed', fencedByTerm: 2 } } })
  t.match(await call(master, 'GET', '/fs/stat', { path: '/a' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } }, 'no stale reads either')
  t.match(await call(master, 'GET', '/oplog', { after: 0, shadowId: 'sh-000000000001' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } }, 'no shadow follows it')
  t.match(await call(master, 'POST', '/chunkservers/heartbeat', heartbeatBody(2, { term: 1 })), { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } })
  await t.rejects(master.queue.submit({ type: 'mkdir', path: '/c', parents: false, mtimeMs: 2 }), { code: 'GRN_NOT_MASTER' })
  t.equal(master.queue.seq, seq, 'nothing written after the deposition')
  t.match((await call(master, 'GET', '/healthz')).body, { role: 'master', term: 1, fencedByTerm: 2 })
})

t.test('a deposed master rejoins as a shadow of the new master and re-bootstraps to its copy', async (t) => {
  const pair = await startPair(t)
  const { master } = pair
  await addServers(master)
  await writeLoad(master, 'w', 3)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, master)
  await call(shadow.node, 'POST', '/admin/promote', {})
  // The old master, not yet deposed, commits one more record the new master never sees.
  await master.queue.submit({ type: 'mkdir', path: '/lost', parents: false, mtimeMs: 9 })
  await pair.closeMaster()
  const rejoined = await startShadow(resolveShadowConfig({ dataDir: join(pair.root, 'master'), port: 0, master: shadow.url, logLevel: 'silent', pollWaitMs: 200 }),
    { logger: quietLog, secret: pair.secret, tick: false, onFatal: (err) => { pair.fatal.push(err) } })
  t.teardown(() => rejoined.close())
  await waitFor(() => (rejoined.node.follower?.report(Date.now()).bootstrapCount ?? 0) === 1 && rejoined.node.queue.seq === shadow.node.queue.seq, 'the re-bootstrap')
  t.same(tables(rejoined.node.db), tables(shadow.node.db), "the new master's copy, without /lost")
  t.match((await call(rejoined.node, 'GET', '/fs/stat', { path: '/lost' })).body, { code: 'GRN_NOT_FOUND' })
  t.match((await call(rejoined.node, 'GET', '/healthz')).body, { role: 'shadow', term: 2 })
  t.same(pair.fatal, [])
})
