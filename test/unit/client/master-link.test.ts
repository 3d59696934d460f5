// Proves how the client talks to masters: reads fall over at once from a dead master to the shadow; a
// mutation is retried with the SAME requestId, so an op applied before its reply was lost is not applied
// twice; non-retryable answers are not retried; a dead master ends in GRN_DEADLINE_EXCEEDED whose details
// name the last code. And that clients follow the master: a mutation refused with GRN_NOT_MASTER goes to the
// master the refusal names (learned if new, in a bounded list), else round robin, as does one whose URL
// cannot be reached; the URL that accepted it is remembered for later mutations and reads. Fake masters on
// 127.0.0.1 count the requests each URL saw.
import t, { type Test } from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { connect } from '../../../client/index.js'
import { channelNames } from '../../../client/diagnostics.js'
import { MasterLink, mastersKnownMax } from '../../../client/master-link.js'
import { Transport } from '../../../client/transport.js'
import type { GranaryError } from '../../../shared/errors.js'
import * as limits from '../../../shared/limits.js'
import { FakeMaster, startFakeCluster, type Recorded } from './fake-cluster.js'
import { clientOptions, deadUrl, codeOf, serve } from './helpers.js'

const mkdirsOf = (master: FakeMaster): Recorded[] => master.requests.filter((r) => r.route === '/fs/mkdir')

// Fake masters with no chunkservers (namespace calls only), stopped when the test ends.
async function startMasters (t: Test, count: number): Promise<FakeMaster[]> {
  const masters = Array.from({ length: count }, () => new FakeMaster([]))
  await Promise.all(masters.map(async (m) => { await m.start() }))
  t.teardown(async () => { await Promise.all(masters.map(async (m) => { await m.stop() })) })
  return masters
}

t.test('reads fall over to the next URL at once; a shadow applies no mutation', async (t) => {
  const cluster = await startFakeCluster(1)
  const shadow = new FakeMaster(cluster.chunkservers, 'shadow')
  await shadow.start()
  t.teardown(async () => { await shadow.stop(); await cluster.stop() })
  const dead = await deadUrl()
  const events: unknown[] = []
  const listener = (message: unknown): void => { events.push(message) }
  diagnosticsChannel.subscribe(channelNames.failover, listener)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, listener) })
  const retries: unknown[] = []
  const onRetry = (message: unknown): void => { retries.push(message) }
  diagnosticsChannel.subscribe(channelNames.retry, onRetry)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.retry, onRetry) })

  const fs = connect(clientOptions([dead, shadow.url], { deadlineMs: 400 }))
  t.teardown(async () => { await fs.close() })
  t.equal((await fs.stat('/')).type, 'dir', 'stat answered by the shadow')
  t.same(await fs.readdir('/'), [])
  t.equal((await fs.report()).role, 'shadow')
  // Falling over is not a retry: no backoff delay was taken (measured by what the client did, not by the clock,
  // which a busy machine stretches).
  t.same(retries, [], 'no backoff before falling over')
  t.equal(shadow.count('/fs/stat'), 1)
  t.match(events[0], { from: dead, to: shadow.url, code: 'GRN_UNAVAILABLE' })

  // The shadow names no master it can reach (its master is the dead URL): the mkdir ends at its deadline.
  shadow.notMaster = { role: 'shadow', masterUrl: dead }
  const err = await fs.mkdir('/new').catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED', 'no master took the mutation')
  // The last attempt's failure: a refusal, the dead URL, or (on a busy machine) the deadline cutting the last
  // attempt short, which then ends as GRN_TIMEOUT.
  t.match(err.details, { lastCode: /^GRN_(UNAVAILABLE|NOT_MASTER|TIMEOUT)$/ })
  t.ok(shadow.count('/fs/mkdir') >= 1, 'the shadow was asked')
  t.notOk(shadow.entries.has('/new'), 'and applied nothing')
})

t.test('a retried mutation reuses its requestId and gets the original reply', async (t) => {
  const cluster = await startFakeCluster(1)
  t.teardown(cluster.stop)
  const fs = connect(clientOptions(cluster.master.url))
  t.teardown(async () => { await fs.close() })
  // The master applies the mkdir, then the connection drops before the reply (a crash after commit).
  cluster.master.failures.push({ route: '/fs/mkdir', code: 'GRN_UNAVAILABLE', times: 1, afterApply: true })
  const stat = await fs.mkdir('/once')
  t.equal(stat.path, '/once')
  const calls = cluster.master.requests.filter((r) => r.route === '/fs/mkdir')
  t.equal(calls.length, 2, 'the mkdir was sent twice')
  t.equal(typeof calls[0]?.body.requestId, 'string')
  t.equal(calls[0]?.body.requestId, calls[1]?.body.requestId, 'with the same requestId')
  t.equal(await codeOf(fs.mkdir('/once')), 'GRN_EXISTS', 'a new call gets a new requestId (and the truth)')
  t.not(cluster.master.requests.filter((r) => r.route === '/fs/mkdir')[2]?.body.requestId, calls[0]?.body.requestId)
})

t.test('retryable master errors are retried; non-retryable are not', async (t) => {
  const cluster = await startFakeCluster(1)
  t.teardown(cluster.stop)
  const fs = connect(clientOptions(cluster.master.url))
  t.teardown(async () => { await fs.close() })
  cluster.master.failures.push({ route: '/fs/mkdir', code: 'GRN_NOT_MASTER', times: 3 })
  await fs.mkdir('/a')
  t.equal(cluster.master.count('/fs/mkdir'), 4, 'three refusals, then success')
  t.equal(await codeOf(fs.stat('/nothing')), 'GRN_NOT_FOUND')
  t.equal(cluster.master.count('/fs/stat'), 1, 'GRN_NOT_FOUND is the answer, not a reason to retry')
  cluster.master.failures.push({ route: '/fs/stat', code: 'GRN_INTERNAL', times: 1000 })
  const err = await fs.stat('/a', { deadlineMs: 150 }).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED', 'a per-call deadline overrides the client default')
  // The last attempt may be the one cut short by the budget itself.
  t.match(err.details, { lastCode: /^GRN_(INTERNAL|TIMEOUT)$/ })
})

t.test('namespace calls: mkdir -p, rename, rm -r/force, du, readdir over many pages', async (t) => {
  const cluster = await startFakeCluster(1)
  t.teardown(cluster.stop)
  const fs = connect(clientOptions(cluster.master.url))
  t.teardown(async () => { await fs.close() })
  await fs.mkdir('/a/b/c', { recursive: true })
  t.equal(await codeOf(fs.mkdir('/x/y')), 'GRN_NOT_FOUND', 'without recursive the parent must exist')
  await fs.mkdir('/a/b/c', { recursive: true })
  t.equal((await fs.rename('/a/b', '/a/moved')).path, '/a/moved')
  t.same(await fs.readdir('/a'), ['moved'])
  t.equal(await codeOf(fs.rm('/a')), 'GRN_NOT_EMPTY')
  t.same(await fs.rm('/a', { recursive: true }), { deletedFiles: 0, deletedDirs: 3, deletedChunks: 0, trashPath: null })
  t.same(await fs.rm('/a', { force: true }), { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, trashPath: null }, 'force: missing is fine')
  t.equal(await codeOf(fs.stat('relative')), 'GRN_INVALID_PATH', 'paths are checked before any request')
  t.equal(await codeOf(fs.stat('/a/../etc')), 'GRN_INVALID_PATH')

  await fs.mkdir('/many')
  const names = Array.from({ length: 2345 }, (_, i) => `f${String(i).padStart(5, '0')}`)
  for (const name of names) cluster.master.entries.set(`/many/${name}`, { stat: { path: `/many/${name}`, inodeId: 99 as never, type: 'dir', sizeBytes: 0, mtimeMs: 0, replication: 0, chunkSizeBytes: 0, chunkCount: 0, mode: 0o755 }, chunks: [] })
  const listed = await fs.readdir('/many')
  t.same(listed, names, 'all pages, in order')
  t.equal(cluster.master.count('/fs/list') >= 3, true, 'more than one page was fetched')
  const stats = await fs.readdir('/many', { withStats: true })
  t.equal(stats[0]?.path, '/many/f00000')
  const page = await fs.list('/many', { after: 'f00010', limit: 2 })
  t.same(page.entries.map((e) => e.path), ['/many/f00011', '/many/f00012'])
  t.equal(page.nextAfter, 'f00012')
  t.match(await fs.du('/many'), { fileCount: 0, dirCount: 2346 })
})

t.test('connect() refuses unknown and bad options', async (t) => {
  t.throws(() => connect({ masters: 'http://127.0.0.1:1', nonsense: 1 } as never), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => connect({ masters: 'ftp://x' }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => connect({ replication: 0 }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => connect({ chunkSizeBytes: 1000 }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => connect({ requestTimeoutMs: 0 }), { code: 'GRN_INVALID_ARGUMENT' })
  const fs = connect({ masters: ['http://127.0.0.1:1', 'http://127.0.0.1:2'] })
  t.equal(fs.config.masters, 'http://127.0.0.1:1,http://127.0.0.1:2', 'an array of masters is accepted')
  await fs.close()
  t.equal(await codeOf(fs.stat('/')), 'GRN_ABORTED', 'a closed client refuses work')
})

t.test('masters [shadow, master]: the first mutation follows the shadow\'s refusal; later ones go straight to the master', async (t) => {
  const [master] = await startMasters(t, 1) as [FakeMaster]
  const shadow = new FakeMaster([], 'shadow', master.url)
  await shadow.start()
  t.teardown(async () => { await shadow.stop() })
  const fs = connect(clientOptions([shadow.url, master.url]))
  t.teardown(async () => { await fs.close() })

  t.equal((await fs.mkdir('/a')).path, '/a')
  t.equal(shadow.count('/fs/mkdir'), 1, 'refused once by the shadow')
  t.equal(master.count('/fs/mkdir'), 1, 'then applied by the master it named')
  t.equal(mkdirsOf(shadow)[0]?.body.requestId, mkdirsOf(master)[0]?.body.requestId, 'with the same requestId')
  t.equal((await fs.mkdir('/b')).path, '/b')
  t.equal(shadow.count('/fs/mkdir'), 1, 'the second mkdir never met the shadow')
  t.equal(master.count('/fs/mkdir'), 2)
  t.equal((await fs.stat('/b')).type, 'dir')
  t.equal(master.count('/fs/stat'), 1, 'reads go to the remembered master first')
  t.equal(shadow.count('/fs/stat'), 0)
})

t.test('after a promotion, mutations reach the new master with the SAME requestId; reads fall over from the deposed one', async (t) => {
  const [oldMaster] = await startMasters(t, 1) as [FakeMaster]
  const promoted = new FakeMaster([], 'shadow', oldMaster.url)
  await promoted.start()
  t.teardown(async () => { await promoted.stop() })
  const fs = connect(clientOptions([oldMaster.url, promoted.url]))
  t.teardown(async () => { await fs.close() })
  await fs.mkdir('/before')
  t.equal(oldMaster.count('/fs/mkdir'), 1)

  // The promotion: the shadow becomes the master, the old master learns of the newer term and is deposed.
  promoted.notMaster = undefined
  oldMaster.notMaster = { role: 'deposed', masterUrl: promoted.url }
  t.equal((await fs.mkdir('/after')).path, '/after')
  const refused = mkdirsOf(oldMaster)[1]
  const applied = mkdirsOf(promoted)
  t.equal(applied.length, 1, 'the new master applied the mkdir once')
  t.equal(typeof refused?.body.requestId, 'string')
  t.equal(applied[0]?.body.requestId, refused?.body.requestId, 'the retry on the new master reused the requestId')
  t.notOk(oldMaster.entries.has('/after'), 'the deposed master applied nothing')

  await fs.mkdir('/later')
  t.equal(oldMaster.count('/fs/mkdir'), 2, 'the next mutation went straight to the new master')
  t.equal(promoted.count('/fs/mkdir'), 2)

  // A client that still starts at the deposed master: its refusal of a read makes the read fall over.
  const fresh = connect(clientOptions([oldMaster.url, promoted.url]))
  t.teardown(async () => { await fresh.close() })
  t.equal((await fresh.stat('/after')).type, 'dir', 'answered by the new master')
  t.equal(oldMaster.count('/fs/stat'), 1, 'after the deposed master refused it')
})

t.test('a refusal that names no master sends the mutation to the next URL', async (t) => {
  const [refuser, master] = await startMasters(t, 2) as [FakeMaster, FakeMaster]
  refuser.notMaster = { role: 'shadow', masterUrl: null }
  const fs = connect(clientOptions([refuser.url, master.url]))
  t.teardown(async () => { await fs.close() })
  await fs.mkdir('/a')
  t.equal(refuser.count('/fs/mkdir'), 1)
  t.equal(master.count('/fs/mkdir'), 1, 'round robin to the next URL')
  t.equal(mkdirsOf(refuser)[0]?.body.requestId, mkdirsOf(master)[0]?.body.requestId)
  await fs.mkdir('/b')
  t.equal(refuser.count('/fs/mkdir'), 1, 'and remembered')
  t.equal(master.count('/fs/mkdir'), 2)
})

t.test('an unreachable or silent first URL sends the mutation to the next one', async (t) => {
  const [master] = await startMasters(t, 1) as [FakeMaster]
  const dead = await deadUrl()
  const events: Array<Record<string, unknown>> = []
  const listener = (message: unknown): void => { events.push(message as Record<string, unknown>) }
  diagnosticsChannel.subscribe(channelNames.failover, listener)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, listener) })

  const fs = connect(clientOptions([dead, master.url]))
  t.teardown(async () => { await fs.close() })
  await fs.mkdir('/a')
  t.equal(master.count('/fs/mkdir'), 1)
  t.match(events, [{ what: 'mkdir /a', from: dead, to: master.url, code: 'GRN_UNAVAILABLE' }])
  await fs.mkdir('/b')
  t.equal(master.count('/fs/mkdir'), 2)
  t.equal(events.length, 1, 'the second mkdir went straight to the master')

  // A URL that takes the connection but never answers times out, and the mutation moves on as well.
  let heard = 0
  const silent = await serve(t, (req) => { if (req.url?.startsWith('/fs/mkdir') === true) heard++ })   // the health ask for members is not the mutation
  const patient = connect(clientOptions([silent.url, master.url], { requestTimeoutMs: 100 }))
  t.teardown(async () => { await patient.close() })
  await patient.mkdir('/c')
  t.equal(heard, 1, 'the silent URL was asked once')
  t.equal(master.count('/fs/mkdir'), 3)
  t.match(events[1], { what: 'mkdir /c', from: silent.url, to: master.url, code: 'GRN_TIMEOUT' })
})

t.test('when every URL refuses, the mutation visits each and fails at its deadline with the last error', async (t) => {
  // Two shadows that name each other must not keep the mutation from the third URL.
  const [a, b, c] = await startMasters(t, 3) as [FakeMaster, FakeMaster, FakeMaster]
  a.notMaster = { role: 'shadow', masterUrl: b.url }
  b.notMaster = { role: 'shadow', masterUrl: a.url }
  c.notMaster = { role: 'deposed', masterUrl: null }
  const deadlineMs = 400
  const fs = connect(clientOptions([a.url, b.url, c.url], { deadlineMs }))
  t.teardown(async () => { await fs.close() })
  const startMs = Date.now()
  const err = await fs.mkdir('/x').catch((e: unknown) => e) as GranaryError
  const elapsedMs = Date.now() - startMs
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  // The last error is named: the refusal, or, when a busy machine made the final attempt outlive what was left of
  // the budget, that attempt's timeout.
  t.ok(['GRN_NOT_MASTER', 'GRN_TIMEOUT'].includes(String((err.details as { lastCode?: unknown } | undefined)?.lastCode)), `naming the last error (${JSON.stringify(err.details)})`)
  t.ok(elapsedMs < deadlineMs + 1000, `ended near its deadline (${elapsedMs} ms), not a hang`)
  for (const [name, m] of [['a', a], ['b', b], ['c', c]] as const) {
    t.ok(m.count('/fs/mkdir') >= 1, `${name} was asked`)
    t.notOk(m.entries.has('/x'), `${name} applied nothing`)
  }
  const ids = new Set([a, b, c].flatMap((m) => mkdirsOf(m).map((r) => r.body.requestId)))
  t.equal(ids.size, 1, 'one requestId on every URL')
})

t.test('a named master not in the list is learned; the list stays bounded by mastersKnownMax', async (t) => {
  // A chain of refusers, each naming the next, longer than the list may grow; the last one is the master.
  const chain = await startMasters(t, mastersKnownMax + 4)
  chain.forEach((m, i) => { const next = chain[i + 1]; if (next !== undefined) m.notMaster = { role: 'shadow', masterUrl: `${next.url}/` } })
  const master = chain[chain.length - 1] as FakeMaster
  const transport = new Transport({ requestTimeoutMs: 1000, keepAliveTimeoutMs: 10 })
  t.teardown(async () => { await transport.close() })
  const link = new MasterLink(transport, {
    masters: [(chain[0] as FakeMaster).url], deadlineMs: 10_000, requestTimeoutMs: 1000,
    policy: { retryDelayMsMin: 1, retryDelayMsMax: 5, attemptsMax: limits.retryAttemptsMax },
  })
  t.ok(chain.length < limits.retryAttemptsMax, 'the attempt limit lets the chain be walked')

  await link.mkdir('/a', false)
  t.ok(chain.every((m) => m.count('/fs/mkdir') === 1), 'each URL of the chain was asked once')
  t.equal(link.masters.length, mastersKnownMax, 'the list grew to its bound and no further')
  t.equal(link.masters[0], (chain[0] as FakeMaster).url, 'the configured URL stays')
  t.equal(link.masterUrl, master.url, 'the master at the end of the chain is remembered')
  await link.mkdir('/b', false)
  t.equal(master.count('/fs/mkdir'), 2, 'and gets the next mutation directly')
  t.equal((chain[0] as FakeMaster).count('/fs/mkdir'), 1)
})
