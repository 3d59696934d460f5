// POST /fs/batch (master/batch.ts): each op answers exactly what its own route answers (replies compared with
// the single route's, byte for byte; a batched mutation retried alone with its requestId gets the same reply,
// never a second entry), ops fail one by one with their own codes, a bad op changes nothing, and the batch's
// own limits (op count, body) refuse the whole request.
import t from 'tap'
import { batchOpsMax, batchBodyBytesMax } from '../../../shared/limits.js'
import type * as p from '../../../shared/protocol.js'
import { parsePosition } from '../../../shared/protocol.js'
import { addServers, dumpTables, startTestMaster, writeFile } from './fixture.js'

type Result = { reply?: any, error?: any, position?: string, single?: true }
const resultsOf = (res: { statusCode: number, body: any }): Result[] => {
  if (res.statusCode !== 200) throw new Error(`batch answered ${res.statusCode}: ${JSON.stringify(res.body)}`)
  return res.body.results as Result[]
}

t.test('each batched op answers what its own route answers', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const made = resultsOf(await m.call('POST', '/fs/batch', {
    ops: [
      { route: '/fs/mkdir', body: { path: '/a', requestId: 'r-a' } },
      { route: '/fs/mkdir', body: { path: '/b/c', parents: true, mode: 0o700, requestId: 'r-bc' } }
    ]
  }))
  t.equal(made.length, 2)
  t.match(made[0], { reply: { path: '/a', type: 'dir' } })
  t.match(made[1], { reply: { path: '/b/c', type: 'dir', mode: 0o700 } })
  // A retry of a batched mutation, alone, with the same request id: the original reply, no second folder.
  const again = await m.call('POST', '/fs/mkdir', { path: '/a', requestId: 'r-a' })
  t.same(again.body, made[0]?.reply, 'the request id made it idempotent across the two paths')
  const seqAfter = parsePosition(made[1]?.position)?.seq ?? -1
  t.ok(seqAfter >= 2, `a mutation's position counts its own record (${made[1]?.position})`)

  await writeFile(m, '/b/f', [1000])
  const reads = resultsOf(await m.call('POST', '/fs/batch', {
    ops: [
      { route: '/fs/stat', query: { path: '/a' } },
      { route: '/fs/stat', query: { path: '/nope' } },
      { route: '/fs/open', query: { path: '/b/f' } },
      { route: '/fs/stat', query: { path: '/b/f' } }
    ]
  }))
  const single = async (route: string, path: string): Promise<unknown> => (await m.call('GET', route, { path })).body
  t.same(reads[0]?.reply, await single('/fs/stat', '/a'))
  t.same(reads[1]?.error, await single('/fs/stat', '/nope'), 'a miss is its own error body')
  t.match(reads[1]?.error, { statusCode: 404, code: 'GRN_NOT_FOUND' })
  t.same(reads[2]?.reply, await single('/fs/open', '/b/f'))
  t.same(reads[3]?.reply, await single('/fs/stat', '/b/f'))
  for (const r of reads) t.ok(parsePosition(r.position) !== null, 'every result carries a position')

  const chunkOps = resultsOf(await m.call('POST', '/fs/batch', {
    ops: [{ route: '/fs/create', body: { path: '/g', replication: 2, chunkSizeBytes: 65_536, allocateFirstChunk: true, requestId: 'r-g' } }]
  }))
  const created = chunkOps[0]?.reply as p.CreateReply
  t.ok(created.firstChunk !== undefined, 'create with its first chunk, batched')
  t.same((await m.call('POST', '/fs/create', { path: '/g', replication: 2, chunkSizeBytes: 65_536, allocateFirstChunk: true, requestId: 'r-g' })).body.inodeId, created.inodeId)
  // /metrics counts batched ops under their own routes (3 batched stats, 1 of them a miss), besides the batches.
  const metrics = (await m.app.inject({ method: 'GET', url: '/metrics' })).body
  t.match(metrics, /granary_http_requests_total\{method="GET",route="\/fs\/stat",code="200"\} [4-9]/, 'batched and single stats that answered')
  t.match(metrics, /granary_http_requests_total\{method="GET",route="\/fs\/stat",code="404"\} 2/, 'the batched miss and the single one')
  t.match(metrics, /granary_http_requests_total\{method="POST",route="\/fs\/batch",code="200"\} 3/, 'the batches themselves')
  t.same(m.fatal, [])
})

t.test('bad ops fail alone, with their own codes, and change nothing', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const before = dumpTables(m.db)
  const results = resultsOf(await m.call('POST', '/fs/batch', {
    ops: [
      { route: '/fs/mkdir', body: {} },                                        // no path
      { route: '/fs/mkdir', body: { path: '/x', color: 'red' } },             // unknown field
      { route: '/fs/mkdir', body: { path: 'relative' } },                     // not a path
      { route: '/fs/list', query: { path: '/' } },                            // not batchable
      { route: '/chunkservers/heartbeat', body: {} },                         // a server-only route
      { route: '/fs/stat', query: { path: 7 } },                              // wrong type
      { route: '/fs/stat', body: { path: '/' } },                             // the wrong part
      { route: '/fs/commit', body: { inodeId: -1, leaseId: 'x', chunkIndex: 0, chunkHandle: 'zz', version: 1, lengthBytes: 1, crc32: 0, serverIds: [] } },
      { route: '/fs/delete', body: { path: '/missing' } }
    ]
  }))
  t.equal(results.length, 9)
  t.match(results[0], { error: { statusCode: 400, code: 'GRN_INVALID_ARGUMENT', message: /must have required property 'path'/ } })
  t.match(results[1], { error: { code: 'GRN_INVALID_ARGUMENT', message: /additional properties/ } })
  t.match(results[2], { error: { code: 'GRN_INVALID_PATH' } })
  t.match(results[3], { error: { code: 'GRN_INVALID_ARGUMENT', message: /cannot be batched/ } })
  t.match(results[4], { error: { code: 'GRN_INVALID_ARGUMENT', message: /cannot be batched/ } })
  t.match(results[5], { error: { code: 'GRN_INVALID_ARGUMENT' } })
  t.match(results[6], { error: { code: 'GRN_INVALID_ARGUMENT', message: /required property 'path'/ } })
  t.match(results[7], { error: { code: 'GRN_INVALID_ARGUMENT' } })
  t.match(results[8], { error: { code: 'GRN_NOT_FOUND' } })
  t.same(dumpTables(m.db), before, 'nothing changed')

  // The batch itself: its limits and shape refuse the whole request.
  const tooMany = await m.call('POST', '/fs/batch', { ops: Array.from({ length: batchOpsMax + 1 }, () => ({ route: '/fs/stat', query: { path: '/' } })) })
  t.match(tooMany, { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT' } })
  t.match(await m.call('POST', '/fs/batch', { ops: [] }), { statusCode: 400, body: { code: 'GRN_INVALID_ARGUMENT' } })
  t.match(await m.call('POST', '/fs/batch', { ops: [{ route: '/fs/stat', query: { path: '/' }, extra: 1 }] }), { statusCode: 400 })
  t.match(await m.call('POST', '/fs/batch', { ops: 'stat' }), { statusCode: 400 })
  const big = await m.call('POST', '/fs/batch', { ops: [{ route: '/fs/mkdir', body: { path: '/' + 'y'.repeat(200), pad: 'x'.repeat(batchBodyBytesMax) } }] })
  t.match(big, { statusCode: 413, body: { code: 'GRN_LIMIT_EXCEEDED' } })
  t.same(dumpTables(m.db), before, 'still nothing changed')
  t.same(m.fatal, [])
})

t.test('a deposed master refuses every batched op, as it refuses each route', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const before = resultsOf(await m.call('POST', '/fs/batch', { ops: [{ route: '/fs/stat', query: { path: '/' } }, { route: '/fs/stat', query: { path: '/' } }] }))
  t.match(before, [{ reply: { path: '/', type: 'dir' } }, { reply: { path: '/', type: 'dir' } }])
  t.ok(m.queue.depose(m.queue.term + 1), 'deposed by a newer term')
  const after = resultsOf(await m.call('POST', '/fs/batch', { ops: [{ route: '/fs/stat', query: { path: '/' } }, { route: '/fs/mkdir', body: { path: '/late', requestId: 'r-late' } }] }))
  t.match(after, [{ error: { code: 'GRN_NOT_MASTER' } }, { error: { code: 'GRN_NOT_MASTER' } }])
  t.equal((await m.call('GET', '/fs/stat', { path: '/late' })).body.code, 'GRN_NOT_MASTER')
  t.same(m.db.prepare("SELECT count(*) AS n FROM inodes WHERE name = 'late'").get(), { n: 0 }, 'nothing applied')
})
