// Proves what safe mode gates after a master restart (the lease, which replaced the start-up fence, is
// lease.test.ts's): no delete command leaves the master until every registered chunkserver has sent its full
// report (or deadAfterMs has passed) — an unknown chunk reported by the first server to come back is deleted
// only then; mutations are served meanwhile — and once over, safe mode does not come back. Also proves lazily
// compiled route schemas validate exactly as fastify's eager ones do.
import t from 'tap'
import { createRequire } from 'node:module'
import * as p from '../../../shared/protocol.js'
import { ajvOptionsFor, lazyValidator, lazySchemaController } from '../../../master/lazy-schemas.js'
import { addServers, heartbeat, renewLease, startTestMaster } from './fixture.js'

const unknownHandle = 'ffffffffffffff01'

t.test('after a restart, delete commands wait until every registered chunkserver has reported', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 2)
  await m1.close()

  const m2 = await startTestMaster(t, { dir })
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, true, 'in safe mode after the restart')
  const first = await heartbeat(m2, 1, { fullReport: [{ chunkHandle: unknownHandle as p.StoredChunk['chunkHandle'], version: 1, lengthBytes: 3 }] })
  t.same(first.commands, [], 'the unknown chunk is not deleted while server 2 has not reported')
  t.equal(await renewLease(m2, [1, 2]), true, 'both echo (server 2 without its full report): the lease is held')
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, true, 'still in safe mode: server 2 has not reported')
  t.equal((await m2.call('POST', '/fs/mkdir', { path: '/served' })).statusCode, 200, 'mutations are served in safe mode')
  t.equal((await m2.call<p.ClusterReport>('GET', '/cluster/report')).body.safeMode, true, 'the report says so')
  await heartbeat(m2, 2, { fullReport: [] })
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, false, 'over once both reported')
  const next = await heartbeat(m2, 1)
  t.same(next.commands, [{ type: 'delete', chunkHandle: unknownHandle, version: 1 }], 'the queued delete goes out now')
})

t.test('safe mode ends after deadAfterMs even if a server never reports, and does not come back', async (t) => {
  const dir = t.testdir()
  const m1 = await startTestMaster(t, { dir })
  await addServers(m1, 2)
  await m1.close()
  const m2 = await startTestMaster(t, { dir })
  await heartbeat(m2, 1, { fullReport: [{ chunkHandle: unknownHandle as p.StoredChunk['chunkHandle'], version: 1, lengthBytes: 3 }] })
  m2.clock.nowMs += m2.config.deadAfterMs - 1
  t.same((await heartbeat(m2, 1)).commands, [], 'still held just before deadAfterMs')
  m2.clock.nowMs += 1
  t.same((await heartbeat(m2, 1)).commands, [{ type: 'delete', chunkHandle: unknownHandle, version: 1 }], 'sent once deadAfterMs has passed')
  await heartbeat(m2, 3)   // a new server, not yet reported
  t.equal((await m2.call('GET', '/healthz')).body.safeMode, false, 'a new server does not bring safe mode back')
})

t.test('lazily compiled schemas accept and refuse exactly what eagerly compiled ones do', async (t) => {
  const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))
  const ajvOptions = { customOptions: { removeAdditional: false }, plugins: [] }
  const eagerCompilers = (requireFromFastify('@fastify/ajv-compiler') as () => (e: unknown, o: unknown) => (r: unknown) => ((d: unknown) => boolean) & { errors?: unknown })()
  const eagerBuild = (route: { httpPart: string }) => eagerCompilers({}, ajvOptionsFor(route.httpPart, ajvOptions))(route)   // bodies: no coercion
  const controller = lazySchemaController() as unknown as { compilersFactory: { buildValidator: (e: unknown, o: unknown) => (r: unknown) => ((d: unknown) => boolean) & { errors?: unknown } } }
  const lazyBuild = controller.compilersFactory.buildValidator({}, ajvOptions)
  const inputs: unknown[] = [{}, { path: '/a' }, { path: '/a', extra: 1 }, { path: 5 }, { path: '/a', limit: '7' }, { path: '' },
    { inodeId: 1, leaseId: 'l', chunkIndex: 0 }, { serverId: 'cs-000000000001', url: 'http://x', capacityBytes: 1, freeBytes: 1, usedBytes: 0, chunkCount: 0, activeWrites: 0, term: 1 }]
  let parts = 0
  for (const [name, value] of Object.entries(p)) {
    if (!name.endsWith('Schema') || typeof value !== 'object' || value === null) continue
    for (const [httpPart, schema] of Object.entries(value as Record<string, unknown>)) {
      const route = { schema, method: 'POST', url: `/${name}`, httpPart }
      const eager = eagerBuild(route)
      const lazy = lazyBuild(route)
      parts++
      for (const input of inputs) {
        const a = eager(structuredClone(input))
        const b = lazy(structuredClone(input))
        t.same([b, lazy.errors ?? null], [a, eager.errors ?? null], `${name}.${httpPart} on ${JSON.stringify(input)}`)
      }
    }
  }
  t.ok(parts >= 15, `every route schema part was compared (${parts})`)
  let compiles = 0
  const validate = lazyValidator(() => { compiles++; return Object.assign((d: unknown) => d === 1, { errors: null }) })
  t.equal(compiles, 0, 'nothing compiles before the first request')
  t.same([validate(1), validate(2), compiles], [true, false, 1], 'the first request compiles, once')
})
