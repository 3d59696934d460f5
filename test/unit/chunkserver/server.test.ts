// Proves the server's edges through inject(): /status, unknown routes, schema errors, the server-id header on
// every reply, and that a failed assertion (our own bug) goes to onFatal instead of being served as an error.
import t from 'tap'
import { Agent } from 'node:http'
import { randomBytes } from 'node:crypto'
import { buildChunkserverServer } from '../../../chunkserver/server.js'
import { ChunkStore } from '../../../chunkserver/store.js'
import { AssertionError } from '../../../shared/assert.js'
import { signToken } from '../../../shared/token.js'
import { tokenHeader } from '../../../shared/protocol.js'
import { quietLog, newHandle } from './fixtures/servers.js'
import { signRequestWithSecret } from '../../../shared/auth.js'

t.test('inject', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const secret = randomBytes(32)
  const fatal: Error[] = []
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  const app = buildChunkserverServer({ store, secret, agent, url: () => 'http://127.0.0.1:1', syncEveryBytes: 8 * 1024 * 1024, log: quietLog, onFatal: (err) => fatal.push(err) })
  t.teardown(async () => await app.close())

  const status = await app.inject({ method: 'GET', url: '/status' })
  t.equal(status.statusCode, 200)
  t.same(status.json(), { role: 'chunkserver', serverId: store.serverId, term: 0, chunkCount: 0, freeBytes: status.json().freeBytes, activeWrites: 0 })
  t.equal(status.headers['x-granary-server-id'], store.serverId)

  const unknown = await app.inject({ method: 'GET', url: '/nope' })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'GRN_NOT_FOUND')

  const noVersion = await app.inject({ method: 'GET', url: `/chunks/${newHandle()}` })
  t.equal(noVersion.statusCode, 400)
  t.equal(noVersion.json().code, 'GRN_INVALID_ARGUMENT')

  const badPipeline = newHandle()
  const refused = await app.inject({
    method: 'PUT', url: `/chunks/${badPipeline}?version=1`, payload: Buffer.alloc(10),
    headers: { 'content-type': 'application/octet-stream', 'x-granary-pipeline': 'ftp://x', [tokenHeader]: signToken(secret, { chunkHandle: badPipeline, version: 1, mode: 'write', expiresAtMs: Date.now() + 10_000, term: 0 }) }
  })
  t.equal(refused.statusCode, 400, 'a pipeline entry must be an http URL')
  t.equal(refused.json().code, 'GRN_INVALID_ARGUMENT')

  const handle = newHandle()
  store.lookup = () => { throw new AssertionError('broken invariant') }
  const broken = await app.inject({
    method: 'GET', url: `/chunks/${handle}?version=1`,
    headers: { [tokenHeader]: signToken(secret, { chunkHandle: handle, version: 1, mode: 'read', expiresAtMs: Date.now() + 10_000, term: 0 }) }
  })
  t.equal(broken.statusCode, 500)
  t.equal(fatal.length, 1, 'onFatal got the assertion')
  t.equal(fatal[0]?.message, 'broken invariant')
})

// Issue 16 item 4 off loopback: a chunkserver's /metrics takes an admin key as Basic or Bearer "id:secret",
// checked against the hashes the master's signed heartbeat replies carry (operatorKey), or a cluster signature.
t.test('/metrics off loopback: an admin key in the Authorization header, nothing without', async (t) => {
  const store = await ChunkStore.open({ dataDir: t.testdir(), capacityBytes: 0, log: quietLog })
  const secret = randomBytes(32)
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  const admin = { id: 'GKAAAAAAAAAAAAAAAAAA', secret: 'a-secret-of-the-admin-key-000000000000' }
  const app = buildChunkserverServer({
    store, secret, agent, url: () => 'http://10.0.0.13:9100', syncEveryBytes: 8 * 1024 * 1024, log: quietLog, onFatal: () => {}, loopbackOnly: false,
    operatorKey: (id, given) => id === admin.id && given === admin.secret ? { kind: 'key', accessKeyId: id, name: 'admin', readOnly: false, admin: true, prefix: null } : null
  })
  t.teardown(async () => await app.close())
  const none = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'GRN_UNAUTHENTICATED')
  t.match(none.headers['www-authenticate'], /^Basic realm="granary"/, 'a browser is asked for the key')
  const bearer = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${admin.id}:${admin.secret}` } })
  t.equal(bearer.statusCode, 200, 'Prometheus: bearer_token "id:secret"')
  t.match(bearer.body, /# TYPE /)
  const basic = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Basic ${Buffer.from(`${admin.id}:${admin.secret}`).toString('base64')}` } })
  t.equal(basic.statusCode, 200, 'a browser: Basic')
  const wrong = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${admin.id}:not-it` } })
  t.equal(wrong.statusCode, 401)
  const signed = await app.inject({ method: 'GET', url: '/metrics', headers: signRequestWithSecret(secret, 'GET', '/metrics', null) })
  t.equal(signed.statusCode, 200, 'or signed with the cluster secret')
})
