// Proves the shared building blocks refuse bad input with stable codes and do what the wire relies on:
// path normalisation, config validation (unknown keys, types, relations), chunk tokens and block checksums.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { normalizePath, parentPath, baseName, joinPath } from '../../../shared/paths.js'
import { resolveMasterConfig, resolveChunkserverConfig, resolveClientConfig, configFromArgv, masterDefaults, parseMasterList } from '../../../shared/config.js'
import { signToken, verifyToken, loadSecret } from '../../../shared/token.js'
import { BlockCrcs, blockCount } from '../../../shared/checksum.js'
import { blockSizeBytes } from '../../../shared/limits.js'
import { chunkHandleFromNumber } from '../../../shared/ids.js'

function codeOf (fn: () => unknown): string | undefined {
  try { fn(); return undefined } catch (err) { return (err as { code?: string }).code }
}

t.test('paths: normalised, and bad ones refused with GRN_INVALID_PATH', async (t) => {
  t.equal(normalizePath('/'), '/')
  t.equal(normalizePath('//a///b/'), '/a/b')
  t.equal(parentPath('/a/b/c'), '/a/b')
  t.equal(parentPath('/a'), '/')
  t.equal(baseName('/a/b'), 'b')
  t.equal(joinPath('/', 'x'), '/x')
  t.equal(joinPath('/a', 'x'), '/a/x')
  for (const bad of ['a/b', '', '/a/../b', '/a/./b', '/..', '/a\u0000b', '/a\nb', '/' + 'x'.repeat(256), '/' + 'a/'.repeat(2100), 42]) {
    t.equal(codeOf(() => normalizePath(bad)), 'GRN_INVALID_PATH', `refused: ${JSON.stringify(bad).slice(0, 40)}`)
  }
  t.equal(normalizePath('/' + 'é'.repeat(127)), '/' + 'é'.repeat(127), '254 bytes of UTF-8 is a legal name')
  t.equal(codeOf(() => normalizePath('/' + 'é'.repeat(128))), 'GRN_INVALID_PATH', '256 bytes of UTF-8 is not')
})

t.test('config: defaults, flags, unknown keys and relations', async (t) => {
  t.same(resolveMasterConfig({}), masterDefaults)
  const fromFlags = configFromArgv('master', masterDefaults, ['--port', '0', '--sync-mode=full', '--create-secret', '--dead-after-ms', '900', '--heartbeat-interval-ms', '300'])
  const config = resolveMasterConfig(fromFlags)
  t.equal(config.port, 0)
  t.equal(config.syncMode, 'full')
  t.equal(config.createSecret, true)
  t.equal(config.deadAfterMs, 900)
  t.equal(codeOf(() => configFromArgv('master', masterDefaults, ['--no-such-flag', '1'])), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => configFromArgv('master', masterDefaults, ['--port'])), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveMasterConfig({ bogus: 1 })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveMasterConfig({ port: 'abc' })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveMasterConfig({ port: 70000 })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveMasterConfig({ syncMode: 'sometimes' })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveMasterConfig({ heartbeatIntervalMs: 1000, deadAfterMs: 2000 })), 'GRN_INVALID_ARGUMENT', 'dead timeout below 3 heartbeats')
  t.equal(codeOf(() => resolveChunkserverConfig({ syncEveryBytes: 1000 })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveClientConfig({ chunkSizeBytes: 1000 })), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => resolveClientConfig({ replication: 0 })), 'GRN_INVALID_ARGUMENT')
  t.same(parseMasterList('http://127.0.0.1:1, http://127.0.0.1:2/'), ['http://127.0.0.1:1', 'http://127.0.0.1:2'])
  t.equal(codeOf(() => parseMasterList('ftp://x')), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOf(() => parseMasterList('')), 'GRN_INVALID_ARGUMENT')
})

t.test('tokens: signed claims round-trip; forged, expired and malformed ones are refused', async (t) => {
  const secret = randomBytes(32)
  const claims = { chunkHandle: chunkHandleFromNumber(7), version: 2, mode: 'write' as const, expiresAtMs: 2_000, term: 3 }
  const token = signToken(secret, claims)
  t.same(verifyToken(secret, token, 1_000), claims)
  t.equal(codeOf(() => verifyToken(secret, token, 3_000)), 'GRN_TOKEN_EXPIRED')
  t.equal(codeOf(() => verifyToken(randomBytes(32), token, 1_000)), 'GRN_TOKEN_INVALID', 'another secret')
  const [payload, sig] = token.split('.') as [string, string]
  const forged = Buffer.from(JSON.stringify(['0000000000000007', 2, 'write', 9_999_999, 3])).toString('base64url')
  t.equal(codeOf(() => verifyToken(secret, `${forged}.${sig}`, 1_000)), 'GRN_TOKEN_INVALID', 'changed claims')
  t.equal(codeOf(() => verifyToken(secret, payload, 1_000)), 'GRN_TOKEN_INVALID', 'no signature')
  t.equal(codeOf(() => verifyToken(secret, undefined, 1_000)), 'GRN_TOKEN_INVALID', 'missing')
  t.equal(codeOf(() => verifyToken(secret, 'x'.repeat(5000), 1_000)), 'GRN_TOKEN_INVALID', 'too long')
  const dir = t.testdir({})
  const made = loadSecret(`${dir}/s/secret`, true)
  t.equal(made.length, 32)
  t.same(loadSecret(`${dir}/s/secret`, false), made, 'the same secret is read back')
  t.equal(codeOf(() => loadSecret(`${dir}/missing`, false)), 'GRN_INVALID_ARGUMENT')
})

t.test('block checksums: any split of the input gives the same block and chunk CRCs', async (t) => {
  const data = randomBytes(3 * blockSizeBytes + 1234)
  const whole = new BlockCrcs()
  whole.update(data)
  const a = whole.finish()
  const pieces = new BlockCrcs()
  for (let i = 0; i < data.length; i += 7_777) pieces.update(data.subarray(i, i + 7_777))
  const b = pieces.finish()
  t.same(b, a)
  t.equal(a.blockCrcs.length, blockCount(data.length))
  t.equal(a.blockCrcs.length, 4)
  t.equal(a.blockCrcs[1], crc32(data.subarray(blockSizeBytes, 2 * blockSizeBytes)))
  t.equal(a.blockCrcs[3], crc32(data.subarray(3 * blockSizeBytes)))
  t.equal(a.chunkCrc32, crc32(data))
  t.equal(a.lengthBytes, data.length)
  t.equal(new BlockCrcs().finish().blockCrcs.length, 0, 'an empty chunk has no blocks')
})
