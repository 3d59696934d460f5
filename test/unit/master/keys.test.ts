// Access keys at the master (master/keys.ts, the admin routes): a key made through the oplog, its secret sealed
// (never in a table, an oplog record or a stored reply), listed without it, revoked for good; a retried create is
// the same key; admin keys reach chunkservers as [id, SHA-256(secret)] in every heartbeat reply (for /metrics)
// and a revoked one leaves that list; the SigV4 signing key matches one derived from the secret.
import t from 'tap'
import { createHash } from 'node:crypto'
import { newCredentials, sigV4SigningKey } from '../../../shared/auth.js'
import { addServers, heartbeat, startTestMaster } from './fixture.js'

t.test('access keys: create, list, revoke, the heartbeat hashes, the signing key', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 3)
  const key = newCredentials()
  const created = await m.call('POST', '/admin/keys', { ...key, name: 'ops', admin: true, requestId: 'k1' })
  t.equal(created.statusCode, 200, JSON.stringify(created.body))
  t.match(created.body, { accessKeyId: key.accessKeyId, name: 'ops', admin: true, readOnly: false, prefix: null, revokedAtMs: null })
  t.notOk(JSON.stringify(created.body).includes(key.secretAccessKey), 'the reply never carries the secret')
  const again = await m.call('POST', '/admin/keys', { ...key, name: 'ops', admin: true, requestId: 'k1' })
  t.same(again.body, created.body, 'a retried create (same request id) is the same key, not an error')
  const dump = JSON.stringify(m.db.prepare('SELECT * FROM accessKeys').all()) + JSON.stringify(m.db.prepare('SELECT op, result FROM oplog').all()) + JSON.stringify(m.db.prepare('SELECT reply FROM requests').all())
  t.notOk(dump.includes(key.secretAccessKey), 'no table, oplog record or stored reply holds the secret in clear')
  const reply = await heartbeat(m, 0)
  const hash = createHash('sha256').update(key.secretAccessKey).digest('hex')
  t.same(reply.operatorKeys, [[key.accessKeyId, hash]], 'heartbeat replies carry the admin key as [id, SHA-256(secret)]')
  const signing = await m.call('GET', '/admin/keys/signing-key', { accessKeyId: key.accessKeyId, date: '20261207', region: 'us-east-1', service: 's3' })
  t.equal(signing.body.signingKey, sigV4SigningKey(key.secretAccessKey, '20261207', 'us-east-1', 's3').toString('hex'), 'the SigV4 signing key for that scope')
  const listed = await m.call('GET', '/admin/keys')
  t.same(listed.body.keys.map((k: { accessKeyId: string }) => k.accessKeyId), [key.accessKeyId])
  const revoked = await m.call('POST', '/admin/keys/revoke', { accessKeyId: key.accessKeyId })
  t.match(revoked.body, { accessKeyId: key.accessKeyId, revokedAtMs: Number })
  t.same((await heartbeat(m, 0)).operatorKeys, [], 'a revoked admin key leaves the list at once')
  t.match(await m.call('GET', '/admin/keys/signing-key', { accessKeyId: key.accessKeyId, date: '20261207', region: 'us-east-1', service: 's3' }), { statusCode: 404, body: { code: 'GRN_NO_SUCH_KEY' } })
  t.match(await m.call('POST', '/admin/keys/revoke', { accessKeyId: 'GKZZZZZZZZZZZZZZZZZZ' }), { statusCode: 404, body: { code: 'GRN_NO_SUCH_KEY' } })
  t.match(await m.call('POST', '/admin/keys', { ...key, name: 'again' }), { statusCode: 409, body: { code: 'GRN_EXISTS' } }, 'an id is never reused')
})
