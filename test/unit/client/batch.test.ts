// client/batch.ts against a fake exchange: a lone call goes alone and at once; calls that queue behind the ones
// out travel together, each getting its own reply, error and position; a call's own timeout and abort still end
// it (and leave it out of the batch, or abort a batch whose calls have all ended); a server without the batch
// route gets each call alone; a read sent back ({ single: true }) is asked alone; a malformed reply fails each
// call with GRN_INTERNAL rather than giving one call another's answer.
import t from 'tap'
import { Batcher, batchKindOf } from '../../../client/batch.js'
import type { JsonRequest } from '../../../client/transport.js'
import { GranaryError, isGranaryError } from '../../../shared/errors.js'
import { batchesInFlightMax, batchOpsMax } from '../../../shared/limits.js'

interface Sent { request: JsonRequest & { rawBody?: string }, resolve: (value: unknown) => void, reject: (err: unknown) => void }

function fakeServer () {
  const sent: Sent[] = []
  const waiters: Array<() => void> = []
  const send = async <T>(request: JsonRequest & { rawBody?: string }): Promise<T> => await new Promise<T>((resolve, reject) => {
    sent.push({ request, resolve: resolve as (value: unknown) => void, reject })
    request.signal?.addEventListener('abort', () => { reject(request.signal?.reason) }, { once: true })
    for (const wake of waiters.splice(0)) wake()
  })
  const until = async (count: number): Promise<void> => {
    while (sent.length < count) await new Promise<void>((resolve) => { waiters.push(resolve) })
  }
  return { sent, send, until }
}

const stat = (path: string, extra: Partial<JsonRequest> = {}): JsonRequest => ({ method: 'GET', origin: 'http://m', path: '/fs/stat', query: { path }, ...extra })
const mkdir = (path: string): JsonRequest => ({ method: 'POST', origin: 'http://m', path: '/fs/mkdir', body: { path, requestId: `r${path}` } })
// The calls one exchange carried: a batch's ops, or the one call sent alone.
const opsOf = (s: Sent): Array<{ route: string, query?: unknown, body?: unknown }> =>
  s.request.path === '/fs/batch' ? JSON.parse(s.request.rawBody ?? '{}').ops : [{ route: s.request.path, query: s.request.query, body: s.request.body }]

t.test('which calls may be batched', async (t) => {
  t.equal(batchKindOf(stat('/a')), 'read')
  t.equal(batchKindOf(mkdir('/a')), 'mutation')
  t.equal(batchKindOf({ method: 'GET', origin: 'http://m', path: '/fs/list' }), null)
  t.equal(batchKindOf({ method: 'POST', origin: 'http://m', path: '/fs/stat' }), null, 'a read route by POST is not a read')
  t.equal(batchKindOf({ method: 'GET', origin: 'http://m', path: '/healthz' }), null)
})

t.test('lone calls go alone; queued calls travel together with their own replies, errors and positions', async (t) => {
  const server = fakeServer()
  const batcher = new Batcher(server.send, 5_000)
  const positions = Array.from({ length: 6 }, () => ({ position: null as { term: number, seq: number } | null }))
  const calls = positions.map((reply, i) => batcher.call(stat(`/f${i}`, { reply }), 'read'))
  await server.until(batchesInFlightMax)
  t.equal(server.sent.length, batchesInFlightMax, 'the first calls go alone, at once')
  t.equal(server.sent[0]?.request.path, '/fs/stat')
  server.sent[0]?.resolve({ path: '/f0' })
  await server.until(batchesInFlightMax + 1)
  const batch = server.sent[batchesInFlightMax] as Sent
  t.equal(batch.request.path, '/fs/batch')
  t.same(opsOf(batch).map((op) => op.query), [{ path: '/f2' }, { path: '/f3' }, { path: '/f4' }, { path: '/f5' }], 'the waiting calls, in order')
  batch.resolve({
    results: [
      { reply: { path: '/f2' }, position: '1.10' },
      { error: { statusCode: 404, code: 'GRN_NOT_FOUND', error: 'Not Found', message: 'no such file or directory: /f3' }, position: '1.11' },
      { reply: { path: '/f4' }, position: '1.12' },
      { reply: { path: '/f5' }, position: '1.13' }
    ]
  })
  server.sent[1]?.resolve({ path: '/f1' })
  const settled = await Promise.allSettled(calls)
  t.match(settled.map((s) => s.status === 'fulfilled' ? s.value : (s.reason as GranaryError).code), [{ path: '/f0' }, { path: '/f1' }, { path: '/f2' }, 'GRN_NOT_FOUND', { path: '/f4' }, { path: '/f5' }])
  t.same(positions.slice(2).map((p) => p.position), [{ term: 1, seq: 10 }, { term: 1, seq: 11 }, { term: 1, seq: 12 }, { term: 1, seq: 13 }], 'each call gets its own position')
  t.ok(settled[3]?.status === 'rejected' && isGranaryError(settled[3].reason) && !settled[3].reason.retryable)
})

t.test('under load: reads and mutations never share a batch, batches and lanes stay bounded, every call gets its own answer', async (t) => {
  const out = { read: 0, mutation: 0 }
  const outMax = { read: 0, mutation: 0 }
  const batches: Array<Array<{ route: string }>> = []
  const send = async <T>(request: JsonRequest & { rawBody?: string }): Promise<T> => {
    const ops = request.path === '/fs/batch' ? JSON.parse(request.rawBody ?? '{}').ops as Array<{ route: string, query?: unknown, body?: unknown }> : [{ route: request.path, query: request.query, body: request.body }]
    const kind = ops[0]?.route === '/fs/stat' ? 'read' : 'mutation'
    out[kind]++
    outMax[kind] = Math.max(outMax[kind], out[kind])
    if (request.path === '/fs/batch') batches.push(ops)
    await new Promise((resolve) => setImmediate(resolve))
    out[kind]--
    if (request.path !== '/fs/batch') return (request.query ?? request.body) as T
    return { results: ops.map((op) => ({ reply: op.query ?? op.body, position: '1.1' })) } as T
  }
  const batcher = new Batcher(send, 5_000)
  const reads = Array.from({ length: batchOpsMax * 3 }, (_, i) => batcher.call(stat(`/q${i}`), 'read'))
  const mutations = Array.from({ length: 40 }, (_, i) => batcher.call(mkdir(`/m${i}`), 'mutation'))
  t.same(await Promise.all(reads), reads.map((_, i) => ({ path: `/q${i}` })), 'every read got its own answer')
  t.same(await Promise.all(mutations), mutations.map((_, i) => ({ path: `/m${i}`, requestId: `r/m${i}` })), 'every mutation got its own answer')
  t.ok(batches.length >= 3, `the queued calls travelled in batches (${batches.length})`)
  for (const ops of batches) {
    t.ok(ops.length >= 2 && ops.length <= batchOpsMax, `2..${batchOpsMax} calls in a batch (${ops.length})`)
    t.equal(new Set(ops.map((op) => op.route)).size, 1, 'one kind per batch')
  }
  t.ok(outMax.read <= batchesInFlightMax && outMax.mutation <= batchesInFlightMax, `at most ${batchesInFlightMax} exchanges out per kind (${outMax.read}, ${outMax.mutation})`)
})

t.test('a call ends by its own timeout or abort; a batch whose calls all ended is aborted', async (t) => {
  const server = fakeServer()
  const batcher = new Batcher(server.send, 5_000)
  const blockers = Array.from({ length: batchesInFlightMax }, (_, i) => batcher.call(stat(`/b${i}`), 'read'))
  await server.until(batchesInFlightMax)
  const abort = new AbortController()
  const aborted = batcher.call(stat('/aborted', { signal: abort.signal }), 'read')
  const timed = batcher.call(stat('/timed', { timeoutMs: 20 }), 'read')
  const kept = batcher.call(stat('/kept'), 'read')
  abort.abort(new GranaryError('GRN_ABORTED', ['another server answered first']))
  await t.rejects(aborted, { code: 'GRN_ABORTED' }, 'aborted while waiting')
  await t.rejects(timed, { code: 'GRN_TIMEOUT' }, 'timed out while waiting')
  server.sent[0]?.resolve({})
  await server.until(batchesInFlightMax + 1)
  t.same(opsOf(server.sent[batchesInFlightMax] as Sent).map((op) => op.query), [{ path: '/kept' }], 'ended calls are left out (a lone call goes alone)')
  t.equal(server.sent[batchesInFlightMax]?.request.path, '/fs/stat')
  server.sent[batchesInFlightMax]?.resolve({ path: '/kept' })
  t.same(await kept, { path: '/kept' })

  // Two calls in one batch, both ending early: the batch request itself is aborted.
  const refill = batcher.call(stat('/b2'), 'read')   // both slots busy again, so the next calls wait
  await server.until(batchesInFlightMax + 2)
  const a1 = new AbortController()
  const a2 = new AbortController()
  const both = [batcher.call(stat('/c1', { signal: a1.signal }), 'read'), batcher.call(stat('/c2', { signal: a2.signal }), 'read')]
  server.sent[1]?.resolve({})
  await server.until(batchesInFlightMax + 3)
  const batch = server.sent[batchesInFlightMax + 2] as Sent
  t.equal(batch.request.path, '/fs/batch')
  a1.abort(new GranaryError('GRN_ABORTED', ['one']))
  t.notOk(batch.request.signal?.aborted, 'one call left: the batch goes on')
  a2.abort(new GranaryError('GRN_ABORTED', ['two']))
  t.ok(batch.request.signal?.aborted, 'no call left: the batch is aborted')
  server.sent[batchesInFlightMax + 1]?.resolve({})
  await Promise.allSettled([...both, ...blockers, refill])
})

t.test('an older server, a read sent back, a malformed or failed batch', async (t) => {
  const server = fakeServer()
  const batcher = new Batcher(server.send, 5_000)
  // Two calls that wait behind busy slots, then travel as one batch once a slot frees: the calls, that batch,
  // and done() to answer the blockers still out.
  const batchOfTwo = async (a: string, b: string) => {
    const from = server.sent.length
    const blockers = Array.from({ length: batchesInFlightMax }, (_, i) => batcher.call(stat(`/b${i}`), 'read'))
    await server.until(from + batchesInFlightMax)
    const calls = [batcher.call(stat(a), 'read'), batcher.call(stat(b), 'read')]
    server.sent[from]?.resolve({})
    await server.until(from + batchesInFlightMax + 1)
    const batch = server.sent[from + batchesInFlightMax] as Sent
    t.equal(batch.request.path, '/fs/batch')
    const done = async (): Promise<void> => {
      for (const blocker of server.sent.slice(from + 1, from + batchesInFlightMax)) blocker.resolve({})
      await Promise.all(blockers)
    }
    return { calls, batch, done }
  }
  // Failed batch: every call gets the failure (master-link retries them one by one).
  let round = await batchOfTwo('/1', '/2')
  round.batch.reject(new GranaryError('GRN_UNAVAILABLE', ['http://m', 'ECONNRESET']))
  for (const call of round.calls) await t.rejects(call, { code: 'GRN_UNAVAILABLE' })
  await round.done()

  // A reply without a result per call: GRN_INTERNAL for each, never another call's answer.
  round = await batchOfTwo('/3', '/4')
  round.batch.resolve({ results: [{ reply: { path: '/3' }, position: '1.1' }] })
  for (const call of round.calls) await t.rejects(call, { code: 'GRN_INTERNAL' })
  await round.done()

  // { single: true }: asked alone.
  round = await batchOfTwo('/5', '/6')
  round.batch.resolve({ results: [{ single: true }, { reply: { path: '/6' }, position: '1.1' }] })
  await server.until(server.sent.length + 1)
  const alone = server.sent[server.sent.length - 1] as Sent
  t.same(alone.request.query, { path: '/5' }, 'the read sent back is asked alone')
  alone.resolve({ path: '/5' })
  t.same(await Promise.all(round.calls), [{ path: '/5' }, { path: '/6' }])
  await round.done()

  // 404 on the batch route: an older server; these calls and later ones go alone.
  round = await batchOfTwo('/7', '/8')
  round.batch.reject(new GranaryError('GRN_NOT_FOUND', ['route POST /fs/batch']))
  await server.until(server.sent.length + 2)
  for (const s of server.sent.slice(-2)) s.resolve({ path: (s.request.query as { path: string }).path })
  t.same(await Promise.all(round.calls), [{ path: '/7' }, { path: '/8' }])
  await round.done()
  const before = server.sent.length
  const later = [batcher.call(stat('/9'), 'read'), batcher.call(stat('/10'), 'read'), batcher.call(stat('/11'), 'read')]
  await server.until(before + 3)
  t.same(server.sent.slice(before).map((s) => s.request.path), ['/fs/stat', '/fs/stat', '/fs/stat'], 'no more batches to that server')
  for (const s of server.sent.slice(before)) s.resolve({})
  await Promise.all(later)
})
