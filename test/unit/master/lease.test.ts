// Proves the master lease through the master's routes (the rule is shared/failover.ts's, the bookkeeping
// master/lease.ts's), with fake chunkservers and a hand-moved clock: a master acknowledges a mutation or
// answers a master read (stat, list, open, du, fsck) only while a majority of the chunkservers in its servers
// table have echoed a heartbeat reply of THIS process within the lease; otherwise GRN_NOT_MASTER with
// details.lease = false and nothing logged. A fresh master (no registered server) holds an unbounded lease. A
// restarted master holds none until a majority echoes one of its own replies: an echo of the previous
// process's reply (another instanceId), of another term, or from the future does not count. A renewal counts
// from the moment its reply was SENT, never from when the echo arrived. Registering a server moves the
// majority. A heartbeat carrying a newer term deposes the master for good. A master elected on votes holds a
// mutation until a majority has echoed one of its replies (a vote round at most), then acknowledges it.
import t, { type Test } from 'tap'
import { masterLeaseMs } from '../../../shared/failover.js'
import { voteRoundMsMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { addServers, echoOf, heartbeat, heartbeatBody, renewLease, serverIdOf, startTestMaster, writeFile, type TestMaster } from './fixture.js'

// Every master read and one mutation, each refused for want of the lease (or each served).
async function masterCalls (m: TestMaster): Promise<Array<{ what: string, res: { statusCode: number, body: any } }>> {
  return [
    { what: 'stat', res: await m.call('GET', '/fs/stat', { path: '/d' }) },
    { what: 'list', res: await m.call('GET', '/fs/list', { path: '/' }) },
    { what: 'open', res: await m.call('GET', '/fs/open', { path: '/d/f' }) },
    { what: 'du', res: await m.call('GET', '/fs/du', { path: '/' }) },
    { what: 'fsck', res: await m.call('GET', '/fs/fsck', { path: '/' }) },
    { what: 'mkdir', res: await m.call('POST', '/fs/mkdir', { path: '/d/new', parents: true }) }
  ]
}

function refusedForLease (t: Test, m: TestMaster, calls: Awaited<ReturnType<typeof masterCalls>>, why: string): void {
  for (const { what, res } of calls) {
    t.match(res, { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { role: 'master', term: m.queue.term, lease: false } } }, `${what} refused: ${why}`)
  }
}

function served (t: Test, calls: Awaited<ReturnType<typeof masterCalls>>, why: string): void {
  for (const { what, res } of calls) t.equal(res.statusCode, 200, `${what} served: ${why}`)
}

// A master on `dir` with three registered chunkservers, a directory /d and a file /d/f, then closed.
async function populated (t: Test, dir: string, over: Parameters<typeof startTestMaster>[1] = {}): Promise<Map<number, p.LeaseEcho>> {
  const m1 = await startTestMaster(t, { dir, ...over })
  await addServers(m1, 3)
  await m1.call('POST', '/fs/mkdir', { path: '/d' })
  await writeFile(m1, '/d/f', [5])
  const last = new Map<number, p.LeaseEcho>()
  for (const i of [1, 2, 3]) {
    await heartbeat(m1, i)
    last.set(i, echoOf(m1.app, i) as p.LeaseEcho)
  }
  await m1.close()
  return last
}

t.test('no registered chunkserver: the lease is unbounded', async (t) => {
  const m = await startTestMaster(t, { leaseMs: 1000 })
  t.equal(m.lease.voterCount, 0)
  t.equal(m.lease.held(), true)
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  await writeFile(m, '/d/f', [])
  m.clock.nowMs += 1e9   // far past any lease
  served(t, await masterCalls(m), 'no one can elect another master')
})

t.test('a restarted master holds no lease until a majority echoes one of its own replies', async (t) => {
  const dir = t.testdir()
  await populated(t, dir)
  const m2 = await startTestMaster(t, { dir })
  const seq = m2.queue.seq
  t.equal(m2.lease.voterCount, 3)
  refusedForLease(t, m2, await masterCalls(m2), 'a new process has no renewals')
  t.equal(m2.queue.seq, seq, 'nothing logged')
  t.equal((await m2.call('GET', '/healthz')).statusCode, 200, 'health is not gated')

  const first = await heartbeat(m2, 1)
  t.equal(first.instanceId, m2.lease.instanceId, 'the reply names this process')
  t.equal(first.leaseWanted, true, 'and asks for an echo at once')
  await heartbeat(m2, 1)   // echoes it: one of three
  t.equal(m2.lease.held(), false)
  refusedForLease(t, m2, await masterCalls(m2), 'one echo of three is no majority')
  t.equal(m2.queue.seq, seq, 'still nothing logged')

  t.equal(await renewLease(m2, [2]), true, 'two of three: a majority')
  served(t, await masterCalls(m2), 'a majority echoed this process')
  t.equal(m2.queue.seq, seq + 1, 'the mkdir is logged once')
})

t.test("an echo of the previous process's reply, of another term or from the future does not count", async (t) => {
  const dir = t.testdir()
  const old = await populated(t, dir)
  const m2 = await startTestMaster(t, { dir })
  t.not(m2.lease.instanceId, old.get(1)?.instanceId, 'a new process, a new instanceId')
  for (const i of [1, 2, 3]) {
    const res = await m2.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', heartbeatBody(i, { lease: old.get(i) }))
    t.equal(res.statusCode, 200)
    t.equal(res.body.leaseWanted, true, `server ${i}: an echo of the old process renews nothing; an echo is asked for`)
  }
  t.equal(m2.lease.held(), false, 'all three echoed the old process: no lease')
  refusedForLease(t, m2, await masterCalls(m2), 'echoes of the previous process')

  // This process's instanceId, but another term, or a sentAtMs after this process's now: not a renewal.
  for (const i of [1, 2, 3]) {
    const mine = (await m2.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', heartbeatBody(i))).body
    t.equal(mine.instanceId, m2.lease.instanceId)
    const echo: p.LeaseEcho = { instanceId: mine.instanceId as string, term: mine.term, sentAtMs: mine.sentAtMs as number, isrEpoch: mine.isrEpoch as number }
    const otherTerm = await m2.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', heartbeatBody(i, { lease: { ...echo, term: 0 } }))
    t.equal(otherTerm.body.leaseWanted, true, `server ${i}: an echo of term 0 renews nothing`)
    const future = await m2.call<p.HeartbeatReply>('POST', '/chunkservers/heartbeat', heartbeatBody(i, { lease: { ...echo, sentAtMs: m2.clock.nowMs + 1 } }))
    t.equal(future.body.leaseWanted, true, `server ${i}: a reply this process has not yet sent renews nothing`)
  }
  t.equal(m2.lease.held(), false)
  refusedForLease(t, m2, await masterCalls(m2), 'no valid echo')

  // Real echoes of this process's replies, from two of the three: the lease.
  t.equal(await renewLease(m2, [1, 2]), true)
  served(t, await masterCalls(m2), 'two of three echoed a reply of this process')
})

t.test('a renewal counts from when its reply was sent, not from when the echo arrived', async (t) => {
  const leaseMs = 1000
  const trustedMs = masterLeaseMs(leaseMs)
  t.ok(trustedMs < leaseMs, `the master trusts less than the chunkservers promise (${trustedMs} of ${leaseMs} ms)`)
  const m = await startTestMaster(t, { leaseMs })
  await addServers(m, 3)   // every renewal echoes a reply sent at t0
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  await writeFile(m, '/d/f', [5])
  const t0 = m.clock.nowMs
  t.equal(m.lease.endsAtMs, t0 + trustedMs)

  m.clock.nowMs = t0 + trustedMs - 1
  served(t, await masterCalls(m), 'just inside the lease')
  m.clock.nowMs = t0 + trustedMs
  refusedForLease(t, m, await masterCalls(m), 'masterLeaseMs after the echoed replies were sent')

  // Servers 1 and 2 get replies sent at t1; their echoes arrive only just before those replies' leases end.
  const t1 = t0 + 100
  m.clock.nowMs = t1
  const r1 = await heartbeat(m, 1)
  const r2 = await heartbeat(m, 2)
  t.same([r1.sentAtMs, r2.sentAtMs], [t1, t1])
  m.clock.nowMs = t1 + trustedMs - 1
  await heartbeat(m, 1)   // echoes r1: renewals t1, t0, t0 — the majority-th newest is t0, long lapsed
  t.equal(m.lease.held(), false, 'one fresh echo is no majority, however recent its arrival')
  refusedForLease(t, m, await masterCalls(m), 'only one renewal within the lease')
  await heartbeat(m, 2)   // echoes r2: renewals t1, t1, t0
  t.equal(m.lease.endsAtMs, t1 + trustedMs, 'the lease ends masterLeaseMs after the replies were SENT')
  served(t, await masterCalls(m), 'a majority renewed from t1')
  m.clock.nowMs = t1 + trustedMs
  t.equal(m.lease.held(), false)
  refusedForLease(t, m, await masterCalls(m), 'the echoes arrived 1 ms ago, but their replies were sent masterLeaseMs ago')

  // An echo that arrives after its reply's lease is over renews nothing usable either.
  const r3 = await heartbeat(m, 3)   // sent at t1 + trustedMs
  m.clock.nowMs = (r3.sentAtMs as number) + trustedMs + 5
  await heartbeat(m, 3)
  await heartbeat(m, 1)              // echoes a reply sent at t1 + trustedMs - 1
  t.equal(m.lease.held(), false, 'echoes of replies sent more than masterLeaseMs ago')
  refusedForLease(t, m, await masterCalls(m), 'late echoes')
  t.equal(await renewLease(m, [1, 3]), true, 'a fresh round renews it')
  served(t, await masterCalls(m), 'renewed by a fresh round')
})

t.test('the majority is over the servers table: a server that registers moves it', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 1)
  await m.call('POST', '/fs/mkdir', { path: '/d' })
  await writeFile(m, '/d/f', [])
  t.equal(m.lease.held(), true, 'one registered server, one echo')
  await heartbeat(m, 2)   // registers: two servers, and server 2 has not echoed yet
  t.equal(m.lease.voterCount, 2)
  refusedForLease(t, m, await masterCalls(m), 'one echo of two registered servers')
  await heartbeat(m, 2)   // echoes
  served(t, await masterCalls(m), 'both echoed')
  await heartbeat(m, 3)   // three registered, two echoed: still a majority
  t.equal(m.lease.voterCount, 3)
  served(t, await masterCalls(m), 'two of three')
})

t.test('a heartbeat carrying a newer term deposes the master: no lease ever again', async (t) => {
  const dir = t.testdir()
  await populated(t, dir)
  const m2 = await startTestMaster(t, { dir })
  t.equal(await renewLease(m2, [1, 2, 3]), true)
  const successor = 'http://127.0.0.1:9911'
  const newer = await m2.call('POST', '/chunkservers/heartbeat', heartbeatBody(1, { term: 2, masterUrl: successor, lease: echoOf(m2.app, 1) }))
  t.match(newer, { statusCode: 409, body: { code: 'GRN_STALE_TERM' } }, 'the newer term is news to it')
  t.equal(m2.queue.mode, 'deposed')
  for (const { what, res } of await masterCalls(m2)) {
    t.match(res, { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { role: 'deposed', masterUrl: successor, fencedByTerm: 2 } } }, `${what} refused, naming the successor`)
  }
  for (const i of [1, 2, 3]) {
    const echo = await m2.call('POST', '/chunkservers/heartbeat', heartbeatBody(i, { lease: echoOf(m2.app, i) }))
    t.match(echo, { statusCode: 503, body: { code: 'GRN_NOT_MASTER' } }, `server ${i}: a deposed master takes no heartbeat, so no echo renews it`)
  }
  t.equal((await m2.call('POST', '/fs/mkdir', { path: '/lost' })).body.code, 'GRN_NOT_MASTER', 'and it takes no mutation, ever')
  await m2.close()

  // A restarted master that hears of the newer term before any echo: it never takes a mutation.
  const m3 = await startTestMaster(t, { dir })
  const first = await m3.call('POST', '/chunkservers/heartbeat', heartbeatBody(2, { term: 2, masterUrl: successor }))
  t.equal(first.body.code, 'GRN_STALE_TERM')
  for (const { what, res } of await masterCalls(m3)) t.match(res.body, { code: 'GRN_NOT_MASTER', details: { role: 'deposed' } }, `${what} refused`)
})

t.test('a master elected on votes holds a mutation until a majority has echoed it (a vote round at most), then acks it', async (t) => {
  const dir = t.testdir()
  await populated(t, dir)
  const m2 = await startTestMaster(t, { dir })
  m2.lease.onVotes([serverIdOf(1), serverIdOf(2)], m2.clock.nowMs)   // what an election's takeOver does
  t.equal(m2.lease.held(), true, 'the votes are a lease')
  t.equal(m2.lease.heardByMajority(m2.queue.term), false, 'but no chunkserver has echoed a reply of this process')
  const seq = m2.queue.seq
  let answered = false
  const mkdir = m2.call('POST', '/fs/mkdir', { path: '/d/held' }).finally(() => { answered = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(answered, false, 'not refused at once: it waits for the echoes')
  t.equal(m2.queue.seq, seq, 'and nothing is logged while it waits')
  await renewLease(m2, [1, 2])
  t.equal((await mkdir).statusCode, 200, 'acknowledged once a majority echoed')
  t.equal(m2.queue.seq, seq + 1)

  // No echoes at all: refused after the wait, as before, naming no master (not the one it was a shadow of).
  const m3dir = t.testdir()
  await populated(t, m3dir)
  const m3 = await startTestMaster(t, { dir: m3dir })
  m3.lease.onVotes([serverIdOf(1), serverIdOf(2)], m3.clock.nowMs)
  const startedMs = Date.now()
  const refused = await m3.call('POST', '/fs/mkdir', { path: '/d/never' })
  t.match(refused, { statusCode: 503, body: { code: 'GRN_NOT_MASTER', details: { lease: false, masterUrl: null } } })
  t.ok(Date.now() - startedMs >= voteRoundMsMax - 5, `after waiting a vote round (${Date.now() - startedMs} ms)`)
})
