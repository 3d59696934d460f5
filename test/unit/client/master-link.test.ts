// Proves how the client talks to masters: reads fall over at once from a dead master to the shadow; a
// mutation is retried on the master with the SAME requestId, so an op applied before its reply was lost is
// not applied twice; non-retryable answers are not retried; a dead master ends in GRN_DEADLINE_EXCEEDED
// whose details name the last code; and the open() metadata cache saves round trips until the client
// itself changes the path.
import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { connect } from '../../../client/index.js'
import { channelNames } from '../../../client/diagnostics.js'
import type { GranaryError } from '../../../shared/errors.js'
import { FakeMaster, startFakeCluster } from './fake-cluster.js'
import { clientOptions, deadUrl, codeOf } from './helpers.js'

t.test('reads fall over to the next URL at once; mutations stay on the master', async (t) => {
  const cluster = await startFakeCluster(1)
  const shadow = new FakeMaster(cluster.chunkservers, 'shadow')
  await shadow.start()
  t.teardown(async () => { await shadow.stop(); await cluster.stop() })
  const dead = await deadUrl()
  const events: unknown[] = []
  const listener = (message: unknown): void => { events.push(message) }
  diagnosticsChannel.subscribe(channelNames.failover, listener)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, listener) })

  const fs = connect(clientOptions([dead, shadow.url], { deadlineMs: 400 }))
  t.teardown(async () => { await fs.close() })
  const startMs = Date.now()
  t.equal((await fs.stat('/')).type, 'dir', 'stat answered by the shadow')
  t.same(await fs.readdir('/'), [])
  t.equal((await fs.report()).role, 'shadow')
  t.ok(Date.now() - startMs < 300, 'no backoff before falling over')
  t.equal(shadow.count('/fs/stat'), 1)
  t.match(events[0], { from: dead, to: shadow.url, code: 'GRN_UNAVAILABLE' })

  const err = await fs.mkdir('/new').catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED', 'a mutation is never sent to a shadow')
  t.match(err.details, { lastCode: 'GRN_UNAVAILABLE' })
  t.equal(shadow.count('/fs/mkdir'), 0)
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
