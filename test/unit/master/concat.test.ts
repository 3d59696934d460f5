// Proves the master's concat (the S3 gateway's multipart Complete): the sources' chunks move into one new file
// in order (same handles, nothing copied), the sources are gone, the whole-file CRC32 is combined, attrs set,
// an existing target replaced; unaligned sources, folders, duplicates, a missing parent are refused and change
// nothing; a shadow replays it to the same tables.
import t from 'tap'
import type * as p from '../../../shared/protocol.js'
import { addServers, dumpTables, smallChunkBytes, startTestMaster, writeFile } from './fixture.js'
import { addServers as addPairServers, call, caughtUp, startPair, tables } from './shadow-fixture.js'

const handlesOf = async (m: Awaited<ReturnType<typeof startTestMaster>>, path: string): Promise<string[]> =>
  (await m.call<p.OpenReply>('GET', '/fs/open', { path })).body.chunks.sort((a, b) => a.chunkIndex - b.chunkIndex).map((c) => c.chunkHandle)

t.test('concat moves chunks into one new file', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/up' })
  await m.call('POST', '/fs/mkdir', { path: '/b' })
  const full = smallChunkBytes
  await writeFile(m, '/up/1', [full, full])
  await writeFile(m, '/up/2', [full])
  await writeFile(m, '/up/3', [100])
  const before = [...await handlesOf(m, '/up/1'), ...await handlesOf(m, '/up/2'), ...await handlesOf(m, '/up/3')]
  await writeFile(m, '/b/obj', [5])   // replaced
  const res = await m.call<p.FileStat>('POST', '/fs/concat', { target: '/b/obj', sources: ['/up/1', '/up/2', '/up/3'], attrs: { etag: 'x-3' } })
  t.equal(res.statusCode, 200, JSON.stringify(res.body))
  t.match(res.body, { path: '/b/obj', type: 'file', sizeBytes: 3 * full + 100, chunkCount: 4, chunkSizeBytes: full, attrs: { etag: 'x-3' } })
  t.type(res.body.crc32, 'number', 'the whole-file CRC32 is combined')
  t.same(await handlesOf(m, '/b/obj'), before, 'the same chunks, in order: nothing copied')
  for (const source of ['/up/1', '/up/2', '/up/3']) t.equal((await m.call('GET', '/fs/stat', { path: source })).statusCode, 404, `${source} is gone`)
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/up' })).body.entries, [])
})

t.test('what concat refuses changes nothing', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  const full = smallChunkBytes
  await writeFile(m, '/short', [100])
  await writeFile(m, '/whole', [full])
  await writeFile(m, '/other-size', [2 * full, 10], { chunkSizeBytes: 2 * full })
  await m.call('POST', '/fs/mkdir', { path: '/dir' })
  const before = dumpTables(m.db)
  const cases: Array<[string, p.ConcatRequest, string]> = [
    ['a short source before the last', { target: '/t', sources: ['/short', '/whole'] }, 'GRN_INVALID_ARGUMENT'],
    ['another chunk size', { target: '/t', sources: ['/whole', '/other-size'] }, 'GRN_INVALID_ARGUMENT'],
    ['a folder', { target: '/t', sources: ['/whole', '/dir'] }, 'GRN_IS_DIR'],
    ['a source twice', { target: '/t', sources: ['/whole', '/whole'] }, 'GRN_INVALID_ARGUMENT'],
    ['a missing source', { target: '/t', sources: ['/whole', '/none'] }, 'GRN_NOT_FOUND'],
    ['a missing parent', { target: '/no/t', sources: ['/whole'] }, 'GRN_NOT_FOUND'],
    ['a folder as target', { target: '/dir', sources: ['/whole'] }, 'GRN_IS_DIR'],
    ['the target among the sources', { target: '/whole', sources: ['/whole'] }, 'GRN_INVALID_ARGUMENT'],
  ]
  for (const [what, request, code] of cases) {
    const res = await m.call<{ code: string }>('POST', '/fs/concat', request)
    t.equal(res.body.code, code, what)
  }
  t.same(dumpTables(m.db), before, 'nothing changed')
  const ok = await m.call<p.FileStat>('POST', '/fs/concat', { target: '/t', sources: ['/whole', '/short'] })
  t.equal(ok.body.sizeBytes, full + 100, 'a short LAST source is fine')
})

t.test('a shadow replays concat to the same tables', async (t) => {
  const pair = await startPair(t)
  await addPairServers(pair.master)
  for (const name of ['/a', '/b']) {
    const created = (await call<p.CreateReply>(pair.master, 'POST', '/fs/create', { path: name, replication: 1, chunkSizeBytes: smallChunkBytes })).body
    await call(pair.master, 'POST', '/fs/complete', { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: 0, chunkCount: 0 })
  }
  const shadow = await pair.startShadow()
  const res = await call<p.FileStat>(pair.master, 'POST', '/fs/concat', { target: '/ab', sources: ['/a', '/b'], attrs: { k: 'v' } })
  t.equal(res.statusCode, 200, JSON.stringify(res.body))
  await caughtUp(shadow, pair.master)
  t.same(tables(shadow.node.db), tables(pair.master.db))
  t.same((await call<p.FileStat>(shadow.node, 'GET', '/fs/stat', { path: '/ab' })).body.attrs, { k: 'v' })
})
