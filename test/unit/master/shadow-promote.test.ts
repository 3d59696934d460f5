// Proves promotion and fencing on the master's side, with fake chunkservers that vote for real
// (chunkserver/voter.ts on a hand-moved clock, shadow-fixture.ts startVoters). A promotion is a vote of the
// registered chunkservers: with the master gone, an in-sync shadow wins once their promise to the old master
// lapses (refused with GRN_MASTER_LEASE_HELD until then; a mutation sent to it meanwhile waits a vote round
// for the outcome before it is refused) and becomes the master of a newer term through a logged newTerm op, and
// takes writes; a planned hand-over (the master alive) drains, releases the master's
// lease and wins the first round, leaving the old master refusing and then deposed. A shadow that is behind
// (by a known number of records, or with no contact since it started) is refused with GRN_NOT_CAUGHT_UP
// saying how far, before anyone is asked, unless forced; forced, it still needs the vote. The chunkservers
// elect no shadow they never heard named in sync, and with no registered chunkserver there is no promotion at
// all (GRN_UNAVAILABLE, nothing changes). A master that hears of a newer term is deposed and refuses mutations
// and reads; a deposed master rejoining as a shadow of the new one re-bootstraps to the new master's copy.
import { controlKey, nonceHeader, replySignatureHeader, signReply } from '../../../shared/auth.js'
import t, { type Test } from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { resolveShadowConfig } from '../../../shared/config.js'
import { leaseMsMin, voteRoundMsMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { startShadow, type RunningShadow } from '../../../master/main.js'
import { dumpTables, heartbeatBody, quietLog, testLeaseMs } from './fixture.js'
import {
  call, caughtUp, startPair, startVoters, tables, waitFor, within, writeFile, writeLoad, type Pair, type Voters
} from './shadow-fixture.js'

// A master with three voting chunkservers and a write load, and a caught-up shadow the chunkservers have
// heard the master name in sync.
async function inSyncPair (t: Test): Promise<{ pair: Pair, voters: Voters, shadow: RunningShadow }> {
  const pair = await startPair(t)
  const voters = await startVoters(t, pair)
  await voters.register(pair.master, pair.masterUrl)
  await writeLoad(pair.master, 'w', 3)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  await waitFor(() => pair.master.isr.members.includes(shadow.shadowId), 'the shadow in the in-sync set')
  await voters.round(pair.master, pair.masterUrl)
  await voters.round(pair.master, pair.masterUrl)   // their echo of that epoch: the master knows a majority knows
  t.same(voters.list.map((v) => v.voter.state.isr), [[shadow.shadowId], [shadow.shadowId], [shadow.shadowId]], 'the chunkservers heard it named in sync')
  return { pair, voters, shadow }
}

const votes = (voters: Voters): Array<[number, string | null]> => voters.list.map((v) => [v.voter.state.votedTerm, v.voter.state.votedFor])

t.test("with the master gone, an in-sync shadow wins once the chunkservers' promise lapses, and takes writes", async (t) => {
  const { pair, voters, shadow } = await inSyncPair(t)
  const seq = pair.master.queue.seq
  await pair.closeMaster()   // the master is gone; the shadow was caught up at its last poll
  const promoting = call<p.PromoteReply>(shadow.node, 'POST', '/admin/promote', {})
  await waitFor(() => voters.list.every((v) => v.answers.includes('GRN_MASTER_LEASE_HELD')), 'every chunkserver to refuse while its promise holds')
  t.equal(shadow.node.queue.mode, 'shadow', 'no promotion while the promise to the old master holds')
  t.ok(voters.list.every((v) => v.answers.every((a) => a === 'GRN_MASTER_LEASE_HELD')), 'every answer so far a refusal')
  // A mutation that reaches a shadow standing for election waits for the outcome, a vote round at most, rather
  // than being refused at once (in a hand-over the old master sends clients here just before the vote ends).
  const waitStartedMs = Date.now()
  t.match(await call(shadow.node, 'POST', '/fs/mkdir', { path: '/while-standing' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { role: 'shadow' } } })
  t.ok(Date.now() - waitStartedMs >= voteRoundMsMax - 5, `refused only after waiting a vote round for the election (${Date.now() - waitStartedMs} ms)`)
  voters.lapse()
  const promoted = await within(promoting, 'the promotion')
  t.equal(promoted.statusCode, 200)
  const term = promoted.body.term
  t.ok(term >= 2, `a newer term (${term}: each lost round tried the next)`)
  t.same(promoted.body, { term, seq: seq + 1, lagRecords: 0, forced: false })
  t.same(votes(voters), [[term, shadow.shadowId], [term, shadow.shadowId], [term, shadow.shadowId]], 'each chunkserver voted once, for it, in that term')
  t.same(shadow.node.db.prepare('SELECT seq, term, op, result FROM oplog WHERE seq = ?').get(seq + 1),
    { seq: seq + 1, term, op: `{"type":"newTerm","term":${term}}`, result: `{"term":${term}}` }, 'the new term is a logged op')
  t.equal(await within(shadow.node.follower?.finished ?? Promise.resolve(undefined), 'the tail loop to end'), 'promoted')
  t.match((await call(shadow.node, 'GET', '/healthz')).body, { role: 'master', term, seq: seq + 1 })
  t.match(await call(shadow.node, 'POST', '/admin/promote', {}), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT', message: new RegExp(`a master at term ${term}; only a shadow is promoted`) } }, 'only once')

  // Writes: the votes gave it its lease; chunkservers must full-report to their new master before it places replicas.
  t.equal(shadow.node.lease.held(), true, 'the granted votes are its lease')
  const beat = await voters.beat(shadow.node, shadow.url, 1)
  t.match(beat.body, { term, needFullReport: true, role: 'master', instanceId: shadow.node.lease.instanceId }, 'the new term rides on the reply; a full report is asked for')
  await voters.register(shadow.node, shadow.url)
  t.equal((await call(shadow.node, 'POST', '/fs/mkdir', { path: '/after-promotion' })).statusCode, 200)
  await writeFile(shadow.node, '/w/new-file', 2)
  const opened = await call<p.OpenReply>(shadow.node, 'GET', '/fs/open', { path: '/w/new-file' })
  t.equal(opened.body.term, term, 'tokens are signed in the new term')
  t.same(pair.fatal, [])
})

t.test('a planned hand-over: the master drains and releases its lease, and the in-sync shadow wins the first round', async (t) => {
  const { pair, voters, shadow } = await inSyncPair(t)
  const { master } = pair
  const seq = master.queue.seq
  const promoted = await within(call<p.PromoteReply>(shadow.node, 'POST', '/admin/promote', {}), 'the promotion')
  t.same(promoted, { statusCode: 200, body: { term: 2, seq: seq + 1, lagRecords: 0, forced: false } }, 'term 2: the signed release let every chunkserver vote at once')
  t.ok(voters.list.filter((v) => v.answers[0] === 'granted').length >= 2, 'a majority granted when the round ended (it ends there)')
  await waitFor(() => voters.list.every((v) => v.answers.length > 0), 'the third answer, which the round did not wait for')
  t.same(voters.list.map((v) => v.answers), [['granted'], ['granted'], ['granted']], 'one round, three grants')
  t.same(votes(voters), [[2, shadow.shadowId], [2, shadow.shadowId], [2, shadow.shadowId]])
  t.same(dumpTables(shadow.node.db, ['inodes', 'chunks', 'replicas', 'servers']), dumpTables(master.db, ['inodes', 'chunks', 'replicas', 'servers']),
    'everything the old master had is in the new one')

  // The old master gave its lease up: no ack and no master read, naming the new master.
  t.equal(master.lease.released, true)
  t.equal(master.lease.held(), false)
  const before = master.queue.seq
  t.match(await call(master, 'POST', '/fs/mkdir', { path: '/late' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { lease: false, masterUrl: shadow.url } } })
  t.match(await call(master, 'GET', '/fs/stat', { path: '/w' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { lease: false } } }, 'no master read either')
  t.equal(master.queue.seq, before, 'nothing logged')
  const released = await voters.beat(master, pair.masterUrl, 1)
  t.match(released.body, { term: 1, role: 'master', released: true }, 'its heartbeat replies say the lease is released')
  t.equal(voters.list[0]?.echoes.get(pair.masterUrl), undefined, 'and a chunkserver that voted in term 2 echoes nothing back')

  // The new master takes writes; once a chunkserver has heard term 2, its heartbeat deposes the old master.
  await voters.register(shadow.node, shadow.url)
  t.equal((await call(shadow.node, 'POST', '/fs/mkdir', { path: '/after-hand-over' })).statusCode, 200)
  const deposing = await voters.beat(master, pair.masterUrl, 2)
  t.match(deposing, { statusCode: 409, body: { code: 'GRN_STALE_TERM' } })
  t.equal(master.queue.mode, 'deposed')
  t.match(await call(master, 'POST', '/fs/mkdir', { path: '/late' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { role: 'deposed', fencedByTerm: 2, masterUrl: shadow.url } } },
    'deposed, it names the master the chunkserver named')
  t.same(pair.fatal, [])
})

t.test('promotion is refused while behind, saying how far, unless forced; forced, it still needs the vote', async (t) => {
  const pair = await startPair(t)
  const voters = await startVoters(t, pair)
  await voters.register(pair.master, pair.masterUrl)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  await shadow.close()
  const applied = shadow.node.queue.seq
  // A stand-in master that is always 10 records ahead and never sends them, and takes no hand-over.
  const fake = createServer((req, res) => {
    setTimeout(() => {
      const oplog = req.url?.startsWith('/oplog') === true
      const text = JSON.stringify(oplog ? { term: 1, seq: applied + 10, records: [] } : { statusCode: 503, code: 'GRN_UNAVAILABLE', message: 'a stand-in' })
      const nonce = req.headers[nonceHeader]
      res.writeHead(oplog ? 200 : 503, { 'content-type': 'application/json', ...(typeof nonce === 'string' ? { [replySignatureHeader]: signReply(controlKey(pair.secret), nonce, oplog ? 200 : 503, text) } : {}) })
      res.end(text)
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
  t.same(voters.list.map((v) => v.answers), [[], [], []], 'refused before any chunkserver was asked')
  voters.lapse()   // the real master is gone too: no promise holds any more
  const forced = await within(call<p.PromoteReply>(behind.node, 'POST', '/admin/promote', { force: true }), 'the forced promotion')
  t.same(forced.body, { term: 2, seq: applied + 1, lagRecords: 10, forced: true })
  t.same(votes(voters), [[2, behind.shadowId], [2, behind.shadowId], [2, behind.shadowId]], 'forced, still elected by the chunkservers')
  t.same(voters.list.map((v) => v.voter.state.isr), [[], [], []], 'a forced vote does not put the candidate in the in-sync set')
})

t.test('a shadow that has not heard from its master since it started cannot tell its lag', async (t) => {
  const pair = await startPair(t)
  const voters = await startVoters(t, pair)
  await voters.register(pair.master, pair.masterUrl)
  const shadow = await pair.startShadow()
  await caughtUp(shadow, pair.master)
  await shadow.close()
  await pair.closeMaster()
  const alone = await pair.startShadow()
  const seq = alone.node.queue.seq
  const refused = await call(alone.node, 'POST', '/admin/promote', {})
  t.match(refused, { statusCode: 409, body: { code: 'GRN_NOT_CAUGHT_UP', message: /has not heard from its master .* since it started/ } })
  voters.lapse()
  const forced = await within(call<p.PromoteReply>(alone.node, 'POST', '/admin/promote', { force: true }), 'the forced promotion')
  t.same(forced, { statusCode: 200, body: { term: 2, seq: seq + 1, lagRecords: null, forced: true } })
  t.match(await call(alone.node, 'POST', '/admin/promote', {}), { statusCode: 400, body: { message: /only a shadow is promoted/ } })
})

t.test('the chunkservers elect no shadow they never heard named in sync', async (t) => {
  const pair = await startPair(t)
  const voters = await startVoters(t, pair)
  await voters.register(pair.master, pair.masterUrl)   // before the shadow exists: their in-sync set is empty
  await writeLoad(pair.master, 'w', 1)
  const shadow = await pair.startShadow('shadow', { leaseMs: leaseMsMin })   // gives up after handOverDrainMsMax + leaseMs
  await caughtUp(shadow, pair.master)
  const seq = shadow.node.queue.seq
  await pair.closeMaster()
  voters.lapse()
  const refused = await within(call(shadow.node, 'POST', '/admin/promote', {}), 'the refusal')
  t.match(refused, { statusCode: 503, body: { code: 'GRN_UNAVAILABLE', message: /no majority voted for this shadow: GRN_NOT_IN_SYNC/ } })
  t.ok(voters.list.every((v) => v.answers.length > 0 && v.answers.every((a) => a === 'GRN_NOT_IN_SYNC')), 'every chunkserver refused: not in sync')
  t.same(votes(voters), [[0, null], [0, null], [0, null]], 'no vote was given')
  t.match((await call(shadow.node, 'GET', '/healthz')).body, { role: 'shadow', term: 1, seq })
})

t.test('with no registered chunkserver there is no promotion: GRN_UNAVAILABLE, and nothing changes', async (t) => {
  // Without chunkservers no one can vote (a unit-level stand-in for the cluster tests' real promotions).
  const pair = await startPair(t)
  for (const path of ['/a', '/b', '/a/c']) t.equal((await call(pair.master, 'POST', '/fs/mkdir', { path })).statusCode, 200, `mkdir ${path}: no chunkserver, the lease is unbounded`)
  const shadow = await pair.startShadow('shadow', { leaseMs: leaseMsMin })
  await caughtUp(shadow, pair.master)
  await pair.closeMaster()
  const before = tables(shadow.node.db)
  const seq = shadow.node.queue.seq
  for (const force of [false, true]) {
    const refused = await within(call(shadow.node, 'POST', '/admin/promote', { force }), 'the refusal')
    t.match(refused, { statusCode: 503, body: { code: 'GRN_UNAVAILABLE', message: /no majority voted for this shadow: no chunkserver is registered/ } }, `force ${String(force)}: refused, saying why`)
    t.equal(shadow.node.queue.mode, 'shadow', 'still a shadow')
  }
  t.equal(shadow.node.queue.term, 1)
  t.equal(shadow.node.queue.seq, seq, 'nothing logged')
  t.same(tables(shadow.node.db), before, 'nothing changed')
  t.match((await call(shadow.node, 'GET', '/fs/stat', { path: '/a/c' })).body, { path: '/a/c', type: 'dir' }, 'it still serves reads')
  t.match(await call(shadow.node, 'POST', '/fs/mkdir', { path: '/d' }), { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } }, 'and no mutation')
  t.same(pair.fatal, [])
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
  const { pair, shadow } = await inSyncPair(t)
  const { master } = pair
  t.equal((await within(call(shadow.node, 'POST', '/admin/promote', {}), 'the promotion')).statusCode, 200)
  // The old master, not yet deposed, commits one more record the new master never sees (committed, never
  // acknowledged: it released its lease in the hand-over).
  await master.queue.submit({ type: 'mkdir', path: '/lost', parents: false, mtimeMs: 9 })
  await pair.closeMaster()
  const rejoined = await startShadow(resolveShadowConfig({ dataDir: join(pair.root, 'master'), port: 0, master: shadow.url, logLevel: 'silent', pollWaitMs: 200, leaseMs: testLeaseMs, autoPromote: false }),
    { logger: quietLog, secret: pair.secret, tick: false, onFatal: (err) => { pair.fatal.push(err) } })
  t.teardown(() => rejoined.close())
  await waitFor(() => (rejoined.node.follower?.report(Date.now()).bootstrapCount ?? 0) === 1 && rejoined.node.queue.seq === shadow.node.queue.seq, 'the re-bootstrap')
  t.same(tables(rejoined.node.db), tables(shadow.node.db), "the new master's copy, without /lost")
  t.match((await call(rejoined.node, 'GET', '/fs/stat', { path: '/lost' })).body, { code: 'GRN_NOT_FOUND' })
  t.match((await call(rejoined.node, 'GET', '/healthz')).body, { role: 'shadow', term: 2 })
  t.same(pair.fatal, [])
})
