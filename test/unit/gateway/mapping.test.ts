// Proves the gateway's pure rules: which keys map to paths (and S3's code for those that cannot), bucket names,
// Range parsing, the chunk size a multipart part is written with (so equal parts tile and concat can join them),
// XML in and out (escaping, the request bodies' shapes, no DTDs), and the start-up checks of `granary s3`.
import t from 'tap'
import { checkKey, objectPath, isBucketName } from '../../../gateway/keys.js'
import { parseRange } from '../../../gateway/routes-object.js'
import { partChunkSizeBytes } from '../../../gateway/routes-multipart.js'
import { document, readItems, escapeXml } from '../../../gateway/xml.js'
import { resolveGatewayConfig } from '../../../gateway/main.js'
import { S3Error } from '../../../gateway/errors.js'
import { parseCommandLine } from '../../../client/cli/args.js'

const codeOf = (fn: () => unknown): string => {
  try { fn() } catch (err) { return err instanceof S3Error ? err.code : (err as { code?: string }).code ?? String(err) }
  return 'accepted'
}
const KiB = 1024
const MiB = 1024 * KiB

t.test('keys and buckets', async (t) => {
  t.equal(objectPath('b', 'a/b/c.txt'), '/b/a/b/c.txt')
  t.equal(objectPath('b', 'dir/'), '/b/dir', 'a folder marker is its folder')
  for (const key of ['a//b', '/a', 'a/./b', '..', 'a/..', '']) t.equal(codeOf(() => checkKey(key)), 'InvalidArgument', JSON.stringify(key))
  t.equal(codeOf(() => checkKey('a\u0001b')), 'InvalidArgument', 'control characters')
  t.equal(codeOf(() => checkKey('k'.repeat(1025))), 'KeyTooLongError')
  t.equal(codeOf(() => checkKey(`${'n'.repeat(256)}/x`)), 'KeyTooLongError', 'a segment past 255 bytes')
  t.equal(codeOf(() => checkKey('ünïcödé/ключ ok.txt')), 'accepted')
  for (const name of ['abc', 'my-bucket', 'a.b.c', '0ab']) t.ok(isBucketName(name), name)
  for (const name of ['ab', 'Abc', '-abc', 'abc-', 'a..b', '192.168.1.1', '.trash', '.s3-uploads', 'a_b']) t.notOk(isBucketName(name), name)
})

t.test('Range', async (t) => {
  t.same(parseRange('bytes=0-9', 100), { start: 0, end: 9 })
  t.same(parseRange('bytes=90-200', 100), { start: 90, end: 99 }, 'clipped to the object')
  t.same(parseRange('bytes=-10', 100), { start: 90, end: 99 })
  t.same(parseRange('bytes=-1000', 100), { start: 0, end: 99 })
  t.same(parseRange('bytes=5-', 100), { start: 5, end: 99 })
  t.equal(parseRange(undefined, 100), null)
  t.equal(parseRange('bytes=0-1,5-6', 100), null, 'several ranges: the whole object, as S3')
  t.equal(parseRange('bytes=9-1', 100), null, 'an inverted range is ignored')
  t.equal(codeOf(() => parseRange('bytes=100-', 100)), 'InvalidRange')
  t.equal(codeOf(() => parseRange('bytes=-5', 0)), 'InvalidRange')
})

t.test("a part's chunk size divides its length", async (t) => {
  t.equal(partChunkSizeBytes(5 * MiB), 5 * MiB)
  t.equal(partChunkSizeBytes(8 * MiB), 8 * MiB)
  t.equal(partChunkSizeBytes(64 * MiB), 64 * MiB)
  t.equal(partChunkSizeBytes(100 * MiB), 50 * MiB, 'the largest divisor within 64 MiB')
  t.equal(partChunkSizeBytes(5 * MiB + 1), undefined, 'not whole 64 KiB blocks')
  t.equal(partChunkSizeBytes(64 * KiB * 1031), undefined, 'only tiny divisors: copy at Complete instead')
  t.equal(partChunkSizeBytes(undefined), undefined)
  t.equal(partChunkSizeBytes(0), undefined)
  for (const length of [5 * MiB, 6 * MiB, 7 * MiB + 64 * KiB, 96 * MiB, 5 * 1024 * MiB]) {
    const size = partChunkSizeBytes(length) as number
    t.ok(length % size === 0 && size % (64 * KiB) === 0 && size <= 64 * MiB, `${length}: ${size}`)
  }
})

t.test('XML', async (t) => {
  t.equal(escapeXml(`<a & "b" 'c'>`), '&lt;a &amp; &quot;b&quot; &apos;c&apos;&gt;')
  t.match(document('R', [['Key', 'a&b'], ['N', 3], ['Empty', null], ['List', [['X', true]]]]), /<R xmlns="[^"]+"><Key>a&amp;b<\/Key><N>3<\/N><Empty\/><List><X>true<\/X><\/List><\/R>$/)
  const { items, top } = readItems('<?xml version="1.0"?><Delete><Quiet>true</Quiet><Object><Key>a&amp;b</Key></Object><Object><Key>c&#x2F;d</Key><VersionId>null</VersionId></Object></Delete>',
    'Delete', 'Object', ['Key', 'VersionId'])
  t.same(items.map((i) => [i.get('Key'), i.get('VersionId')]), [['a&b', undefined], ['c/d', 'null']])
  t.equal(top.get('Quiet'), 'true')
  t.equal(codeOf(() => readItems('<Other/>', 'Delete', 'Object', ['Key'])), 'MalformedXML')
  t.equal(codeOf(() => readItems('<!DOCTYPE x [<!ENTITY e "x">]><Delete></Delete>', 'Delete', 'Object', ['Key'])), 'MalformedXML', 'no DTDs')
})

t.test('granary s3 start-up checks', async (t) => {
  const base = { accessKeyId: 'KEY123', secretAccessKey: 'secret-key-1' }
  t.match(resolveGatewayConfig({ ...base }, {}), { port: 9300, region: 'us-east-1', corsOrigins: '*' })
  t.match(resolveGatewayConfig({}, { GRANARY_S3_ACCESS_KEY_ID: 'ENVKEY', GRANARY_S3_SECRET_ACCESS_KEY: 'env-secret-key' }), { accessKeyId: 'ENVKEY' }, 'keys from the environment')
  t.match(resolveGatewayConfig({}, {}), { accessKeyId: '', secretAccessKey: '' }, 'no static pair: Granary access keys only')
  t.throws(() => resolveGatewayConfig({ accessKeyId: 'KEY123' }, {}), { code: 'GRN_INVALID_ARGUMENT', message: /go together/ }, 'half a pair')
  t.throws(() => resolveGatewayConfig({ ...base, secretAccessKey: 'short' }, {}), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => resolveGatewayConfig({ ...base, host: '0.0.0.0' }, {}), { code: 'GRN_INVALID_ARGUMENT' }, 'a wildcard bind needs --advertise-url')
  t.throws(() => resolveGatewayConfig({ ...base, bogus: 1 }, {}), { code: 'GRN_INVALID_ARGUMENT' })
  t.match(parseCommandLine(['s3', '--port', '9300'], {}), { kind: 'server', spec: { name: 's3' }, argv: ['--port', '9300'] })
  t.match(parseCommandLine(['s3', '--help'], {}), { kind: 'help', text: /S3 gateway/ })
})
