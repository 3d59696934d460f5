// TLS options (issue 12 item 4): --tls-cert and --tls-key go together, every file must be a readable PEM, and
// the advertised scheme must be what the server speaks; refusals name the flag. No key material is committed:
// the PEM files here are placeholders (the checks read them, they do not parse them).
import t from 'tap'
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  advertisedUrl, checkAddress, configFromArgv, chunkserverDefaults, masterDefaults, parseMasterList, resolveChunkserverConfig, resolveClientConfig,
  resolveMasterConfig, resolveShadowConfig, shadowDefaults
} from '../../../shared/config.js'
import { metadataServerUrl } from '../../../shared/protocol.js'
import { certificateError, isCertificateFailure, loadCa, loadServerTls } from '../../../shared/tls.js'

function refusal (fn: () => unknown): string {
  try { fn() } catch (err) { return `${(err as { code?: string }).code ?? '?'}: ${(err as Error).message}` }
  return 'accepted'
}

const dir = mkdtempSync(join(tmpdir(), 'granary-tls-config-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
const notPem = join(dir, 'not.pem')
writeFileSync(cert, '-----BEGIN CERTIFICATE-----\nplaceholder\n-----END CERTIFICATE-----\n')
writeFileSync(key, '-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n')
writeFileSync(notPem, 'hello\n')

t.test('--tls-cert and --tls-key: both or neither, for every server role', async (t) => {
  const roles: Array<[string, (argv: string[]) => unknown]> = [
    ['master', (argv) => resolveMasterConfig(configFromArgv('master', masterDefaults, argv))],
    ['shadow', (argv) => resolveShadowConfig(configFromArgv('shadow', shadowDefaults, argv))],
    ['chunkserver', (argv) => resolveChunkserverConfig(configFromArgv('chunkserver', chunkserverDefaults, argv))]
  ]
  for (const [role, resolve] of roles) {
    t.match(refusal(() => resolve(['--tls-cert', cert])), /^GRN_INVALID_ARGUMENT: .*--tls-cert needs --tls-key/, `${role}: a certificate alone`)
    t.match(refusal(() => resolve(['--tls-key', key])), /^GRN_INVALID_ARGUMENT: .*--tls-key needs --tls-cert/, `${role}: a key alone`)
    t.equal(refusal(() => resolve(['--tls-cert', cert, '--tls-key', key])), 'accepted', `${role}: both`)
    t.equal(refusal(() => resolve([])), 'accepted', `${role}: neither (plain http, the default)`)
    t.match(refusal(() => resolve(['--tls-cert', join(dir, 'missing.pem'), '--tls-key', key])), /^GRN_INVALID_ARGUMENT: .*--tls-cert .*missing\.pem cannot be read: ENOENT/, `${role}: a missing certificate`)
    t.match(refusal(() => resolve(['--tls-cert', cert, '--tls-key', notPem])), /--tls-key .*not a PEM file/, `${role}: a key that is not PEM`)
    t.match(refusal(() => resolve(['--ca-file', dir])), /--ca-file .* cannot be read: EISDIR/, `${role}: a CA file that is a folder`)
    t.equal(refusal(() => resolve(['--ca-file', cert])), 'accepted', `${role}: a CA file alone (a plain server calling TLS ones)`)
  }
  t.match(refusal(() => resolveClientConfig({ caFile: join(dir, 'missing.pem') })), /client --ca-file .*cannot be read/, 'the client checks its CA file too')
})

t.test('the advertised scheme is what the server speaks', async (t) => {
  t.equal(advertisedUrl('127.0.0.1', 9000, '', true), 'https://127.0.0.1:9000', 'TLS: https://HOST:PORT by default')
  t.equal(advertisedUrl('127.0.0.1', 9000, ''), 'http://127.0.0.1:9000', 'no TLS: http:// as before')
  t.equal(advertisedUrl('::1', 9000, '', true), 'https://[::1]:9000', 'an IPv6 literal in brackets')
  t.equal(advertisedUrl('0.0.0.0', 9000, 'https://Node7.example:9200/', true), 'https://node7.example:9200', 'an advertised https origin')
  t.equal(refusal(() => checkAddress('master', '0.0.0.0', 'https://10.0.0.7:9000', true)), 'accepted', 'https advertised with TLS')
  t.match(refusal(() => checkAddress('master', '0.0.0.0', 'https://10.0.0.7:9000', false)), /master --advertise-url .* is https: but this server has no TLS: give --tls-cert and --tls-key/, 'https without TLS')
  t.match(refusal(() => checkAddress('chunkserver', '0.0.0.0', 'http://10.0.0.7:9000', true)), /chunkserver --advertise-url .* is http: but this server speaks TLS \(--tls-cert\)/, 'http with TLS')
  t.match(refusal(() => checkAddress('master', '0.0.0.0', '', true)), /--advertise-url https:\/\/ADDRESS:PORT/, 'a wildcard bind with TLS is told to advertise https')
  t.match(refusal(() => resolveMasterConfig({ advertiseUrl: 'http://127.0.0.1:9000', tlsCert: cert, tlsKey: key })), /is http: but this server speaks TLS/, 'resolveMasterConfig checks it')
})

t.test('clients take https:// URLs', async (t) => {
  t.same(parseMasterList('https://127.0.0.1:9000/,http://127.0.0.1:9001'), ['https://127.0.0.1:9000', 'http://127.0.0.1:9001'])
  t.match(refusal(() => parseMasterList('ftp://x')), /must use http: or https:/)
  t.equal(metadataServerUrl('https://10.0.0.7:9000'), 'https://10.0.0.7:9000', 'a refusal may name an https master')
  t.equal(metadataServerUrl('ftp://10.0.0.7:9000'), undefined)
})

t.test('loading and the certificate error', async (t) => {
  t.equal(loadServerTls('master', '', ''), null, 'no TLS')
  t.same(loadServerTls('master', cert, key)?.key.toString().startsWith('-----BEGIN PRIVATE KEY'), true)
  t.equal(loadCa('client', ''), undefined, 'the system CAs')
  t.ok(loadCa('client', cert)?.includes('CERTIFICATE'))
  t.ok(isCertificateFailure('UNABLE_TO_VERIFY_LEAF_SIGNATURE'))
  t.ok(isCertificateFailure('ERR_SSL_WRONG_VERSION_NUMBER'))
  t.notOk(isCertificateFailure('ECONNREFUSED'))
  const err = certificateError('https://127.0.0.1:1', 'SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain')
  t.equal(err.code, 'GRN_UNAVAILABLE')
  t.equal(err.retryable, false, 'the same handshake would fail the same way: not retried until the deadline')
  t.match(err.message, /certificate .*--ca-file/)
})
