// Proves the open() metadata cache: entries expire after the TTL and never outlive their read tokens, the
// least recently used entry goes first when full, and invalidating a directory drops everything below it.
import t from 'tap'
import { MetadataCache } from '../../../client/cache.js'
import type { OpenReply } from '../../../shared/protocol.js'

function reply (tokenExpiresAtMs: number, sizeBytes = 0): OpenReply {
  return { stat: { path: '/x', inodeId: 2 as never, type: 'file', sizeBytes, mtimeMs: 0, replication: 3, chunkSizeBytes: 65536, chunkCount: 0, mode: 0o644 }, chunks: [], term: 1, tokenExpiresAtMs }
}

t.test('TTL and token expiry bound an entry', async (t) => {
  let nowMs = 1_000_000
  const cache = new MetadataCache({ ttlMs: 1000, entriesMax: 10, tokenMarginMs: 100, now: () => nowMs })
  cache.set('/a', reply(nowMs + 60_000))
  cache.set('/b', reply(nowMs + 500))
  t.ok(cache.get('/a'))
  t.ok(cache.get('/b'))
  nowMs += 400
  t.equal(cache.get('/b'), undefined, 'gone before its token expires (margin)')
  t.ok(cache.get('/a'))
  nowMs += 600
  t.equal(cache.get('/a'), undefined, 'gone after the TTL')
  cache.set('/c', reply(nowMs + 50))
  t.equal(cache.size, 0, 'a reply whose tokens are about to expire is not cached at all')
})

t.test('least recently used goes first', async (t) => {
  const cache = new MetadataCache({ ttlMs: 60_000, entriesMax: 3 })
  const far = Date.now() + 600_000
  cache.set('/1', reply(far, 1))
  cache.set('/2', reply(far, 2))
  cache.set('/3', reply(far, 3))
  t.ok(cache.get('/1'), 'touch /1')
  cache.set('/4', reply(far, 4))
  t.equal(cache.size, 3)
  t.equal(cache.get('/2'), undefined, '/2 was least recently used')
  t.equal(cache.get('/1')?.stat.sizeBytes, 1)
  t.equal(cache.get('/4')?.stat.sizeBytes, 4)
})

t.test('invalidate drops a path and everything below it', async (t) => {
  const cache = new MetadataCache({ ttlMs: 60_000, entriesMax: 10 })
  const far = Date.now() + 600_000
  for (const path of ['/d', '/d/a', '/d/e/f', '/dx', '/other']) cache.set(path, reply(far))
  cache.invalidate('/d')
  t.equal(cache.get('/d'), undefined)
  t.equal(cache.get('/d/a'), undefined)
  t.equal(cache.get('/d/e/f'), undefined)
  t.ok(cache.get('/dx'), 'a sibling with the same prefix stays')
  t.ok(cache.get('/other'))
  cache.invalidate('/')
  t.equal(cache.size, 0, 'the root covers everything')
})
