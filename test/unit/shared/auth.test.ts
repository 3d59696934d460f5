// shared/auth.ts on its own: a signature checks out only for the exact request and secret, inside the window,
// once; the nonce memory stays bounded and refuses what it can no longer check; sealed secrets open only with
// the same cluster secret; rights and prefixes; AWS's published SigV4 signing-key example.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import {
  authWindowMs, isLoopbackHost, newCredentials, NonceCache, parseCredentials, permits, RequestVerifier, sealSecret, signClient,
  signRequest, signRequestWithSecret, sigV4SigningKey, unsealSecret, type KeyRecord, type Principal
} from '../../../shared/auth.js'

const secret = randomBytes(32)
const key = newCredentials()
const reader: Principal = { kind: 'key', accessKeyId: key.accessKeyId, name: 'r', readOnly: true, admin: false, prefix: '/a' }
const lookup = (id: string): KeyRecord | null => id === key.accessKeyId ? { key: key.secretAccessKey, principal: reader } : null

t.test('a signature holds for that request only, once, inside the window', async (t) => {
  const now = { ms: Date.now() }
  const v = new RequestVerifier({ clusterSecret: secret, lookup, now: () => now.ms })
  const body = '{"path":"/a/x"}'
  const headers = signClient(key, 'POST', '/fs/mkdir', body)
  t.same(v.verify('POST', '/fs/mkdir', headers, body), reader, 'the key it was signed with')
  t.throws(() => v.verify('POST', '/fs/mkdir', headers, body), { code: 'GRN_UNAUTHENTICATED', message: /replayed/ }, 'the same request twice')
  const other = signClient(key, 'POST', '/fs/mkdir', body)
  t.throws(() => v.verify('POST', '/fs/mkdir', other, body.replace('x', 'y')), { code: 'GRN_UNAUTHENTICATED', message: /does not match/ }, 'another body')
  t.throws(() => v.verify('POST', '/fs/delete', signClient(key, 'POST', '/fs/mkdir', body), body), { code: 'GRN_UNAUTHENTICATED' }, 'another path')
  t.throws(() => v.verify('GET', '/fs/stat?path=/a', signRequest(key.accessKeyId, key.secretAccessKey, 'GET', '/fs/stat?path=/a', null, now.ms - authWindowMs - 1), null),
    { code: 'GRN_UNAUTHENTICATED', message: /check both clocks/ }, 'signed before the window')
  t.throws(() => v.verify('GET', '/x', signClient(newCredentials(), 'GET', '/x', null), null), { code: 'GRN_UNAUTHENTICATED', message: /unknown or revoked/ }, 'an unknown key')
  t.throws(() => v.verify('GET', '/x', {}, null), { code: 'GRN_UNAUTHENTICATED', message: /not signed/ }, 'no signature')
  t.same(v.verify('GET', '/oplog', signRequestWithSecret(secret, 'GET', '/oplog', null), null), { kind: 'cluster' }, 'the cluster key')
  t.throws(() => v.verify('GET', '/oplog', signRequestWithSecret(randomBytes(32), 'GET', '/oplog', null), null), { code: 'GRN_UNAUTHENTICATED' }, 'another secret')
})

t.test('the nonce memory is bounded: past it, what it forgot is refused, never accepted twice', async (t) => {
  const cache = new NonceCache(3)
  const now = 1_000_000
  t.ok(cache.admit('a', now - 40, now))
  t.ok(cache.admit('b', now - 30, now))
  t.ok(cache.admit('c', now - 20, now))
  t.ok(cache.admit('d', now - 10, now), 'a fourth forgets the oldest')
  t.equal(cache.size, 3)
  t.notOk(cache.admit('a', now - 40, now), 'the forgotten one is refused (signed at or before what was forgotten)')
  t.notOk(cache.admit('b', now - 30, now), 'a remembered one is refused as a replay')
  t.ok(cache.admit('e', now - 5, now), 'newer ones still pass')
  t.ok(cache.admit('f', now + 10, now + authWindowMs + 100), 'past the window, entries simply expire')
  t.ok(cache.size <= 3)
})

t.test('sealed secrets, rights, credentials files, loopback', async (t) => {
  const sealed = sealSecret(secret, key.secretAccessKey)
  t.notOk(sealed.includes(key.secretAccessKey), 'not in clear')
  t.equal(unsealSecret(secret, sealed), key.secretAccessKey)
  t.throws(() => unsealSecret(randomBytes(32), sealed), { code: 'GRN_INTERNAL' }, 'another cluster secret cannot open it')
  t.ok(permits(reader, 'read', ['/a', '/a/b']))
  t.notOk(permits(reader, 'read', ['/ab']), 'a prefix is a folder, not a string prefix')
  t.notOk(permits(reader, 'write', ['/a/b']), 'read-only')
  t.notOk(permits(reader, 'admin', []))
  t.ok(permits({ kind: 'cluster' }, 'admin', []))
  t.same(parseCredentials(JSON.stringify(key), 'f'), key)
  t.throws(() => parseCredentials('{"accessKeyId":"x"}', 'f'), { code: 'GRN_INVALID_ARGUMENT', message: /not a credentials file/ })
  t.ok(isLoopbackHost('127.0.0.5') && isLoopbackHost('::1') && isLoopbackHost('[::1]'))
  t.notOk(isLoopbackHost('0.0.0.0') || isLoopbackHost('10.0.0.1') || isLoopbackHost('::'))
})

t.test("SigV4 signing key: AWS's published example", async (t) => {
  // docs.aws.amazon.com, "Examples of how to derive a signing key for Signature Version 4".
  t.equal(sigV4SigningKey('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY', '20120215', 'us-east-1', 'iam').toString('hex'),
    'f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d')
})

t.test('--auth off only on a loopback bind', async (t) => {
  const { resolveMasterConfig, resolveChunkserverConfig } = await import('../../../shared/config.js')
  t.equal(resolveMasterConfig({ auth: 'off' }).auth, 'off', 'on 127.0.0.1: allowed (tests, demos)')
  t.throws(() => resolveMasterConfig({ auth: 'off', host: '0.0.0.0', advertiseUrl: 'http://10.0.0.11:9000' }), { code: 'GRN_INVALID_ARGUMENT', message: /--auth off is refused on --host 0\.0\.0\.0/ })
  t.throws(() => resolveChunkserverConfig({ auth: 'off', host: '10.0.0.13' }), { code: 'GRN_INVALID_ARGUMENT', message: /only a server bound to a loopback address/ })
  t.throws(() => resolveMasterConfig({ auth: 'maybe' }), { code: 'GRN_INVALID_ARGUMENT', message: /'on' or 'off'/ })
})
