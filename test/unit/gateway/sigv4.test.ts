// Proves gateway/sigv4.ts and gateway/payload.ts against AWS's own published examples (the S3 SigV4 docs: GET
// with the Authorization header, the presigned URL, and the 66,560-byte aws-chunked upload with its chunk
// signatures), and their refusals: a changed header, a changed chunk, a short body, a wrong trailer checksum,
// expiry and skew, each with S3's code.
import t from 'tap'
import { pipeline } from 'node:stream/promises'
import { Readable, Writable } from 'node:stream'
import { crc32 } from 'node:zlib'
import { authenticate, StaticKeyResolver, type Authenticated } from '../../../gateway/sigv4.js'
import { PayloadReader } from '../../../gateway/payload.js'
import { S3Error } from '../../../gateway/errors.js'
import { crc32c } from '../../../gateway/crc32c.js'

const resolver = new StaticKeyResolver('AKIAIOSFODNN7EXAMPLE', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')
const exampleMs = Date.UTC(2013, 4, 24, 0, 0, 0)
const emptySha = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'

async function codeOf (promise: Promise<unknown>): Promise<string> {
  try { await promise } catch (err) { return err instanceof S3Error ? err.code : String(err) }
  return 'accepted'
}

const getHeaders = (signature: string): Record<string, string> => ({
  host: 'examplebucket.s3.amazonaws.com', range: 'bytes=0-9', 'x-amz-content-sha256': emptySha, 'x-amz-date': '20130524T000000Z',
  authorization: `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=${signature}`
})

t.test("AWS's GET example (Authorization header)", async (t) => {
  const good = 'f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41'
  const auth = await authenticate({ method: 'GET', url: '/test.txt', headers: getHeaders(good) }, resolver, exampleMs)
  t.equal(auth.accessKeyId, 'AKIAIOSFODNN7EXAMPLE')
  t.same(auth.payload, { kind: 'sha256', sha256Hex: emptySha })
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: { ...getHeaders(good), range: 'bytes=0-10' } }, resolver, exampleMs)), 'SignatureDoesNotMatch', 'a signed header changed')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test2.txt', headers: getHeaders(good) }, resolver, exampleMs)), 'SignatureDoesNotMatch', 'the path changed')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: getHeaders(good) }, resolver, exampleMs + 16 * 60_000)), 'RequestTimeTooSkewed')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: getHeaders(good) }, new StaticKeyResolver('OTHER', 'x'.repeat(40)), exampleMs)), 'InvalidAccessKeyId')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: { ...getHeaders(good), authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request' } }, resolver, exampleMs)), 'AuthorizationHeaderMalformed')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: { ...getHeaders(good), authorization: 'AWS AKIAIOSFODNN7EXAMPLE:abc' } }, resolver, exampleMs)), 'InvalidRequest', 'SigV2 is not supported')
  t.equal(await codeOf(authenticate({ method: 'GET', url: '/test.txt', headers: { host: 'x' } }, resolver, exampleMs)), 'AccessDenied', 'anonymous')
})

t.test("AWS's presigned URL example", async (t) => {
  const url = '/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404'
  const headers = { host: 'examplebucket.s3.amazonaws.com' }
  const auth = await authenticate({ method: 'GET', url, headers }, resolver, exampleMs + 3_600_000)
  t.same(auth.payload, { kind: 'unsigned' }, 'presigned URLs carry UNSIGNED-PAYLOAD')
  t.equal(await codeOf(authenticate({ method: 'GET', url, headers }, resolver, exampleMs + 86_401_000)), 'AccessDenied', 'expired')
  t.equal(await codeOf(authenticate({ method: 'GET', url: url.replace('86400', '86401'), headers }, resolver, exampleMs)), 'SignatureDoesNotMatch')
  t.equal(await codeOf(authenticate({ method: 'PUT', url, headers }, resolver, exampleMs)), 'SignatureDoesNotMatch', 'another method')
  t.equal(await codeOf(authenticate({ method: 'GET', url: url.replace('X-Amz-Expires=86400', 'X-Amz-Expires=704800'), headers }, resolver, exampleMs)), 'AuthorizationQueryParametersError', 'past 7 days')
})

// AWS's chunked upload example: 66,560 bytes of 'a' in chunks of 65,536 and 1,024, each signed.
const chunkedSignatures = ['ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648', '0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497',
  'b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9']
function chunkedBody (signatures = chunkedSignatures, lastChunk = Buffer.alloc(1024, 'a')): Buffer {
  return Buffer.concat([
    Buffer.from(`10000;chunk-signature=${signatures[0] as string}\r\n`), Buffer.alloc(65536, 'a'), Buffer.from('\r\n'),
    Buffer.from(`${lastChunk.length.toString(16)};chunk-signature=${signatures[1] as string}\r\n`), lastChunk, Buffer.from('\r\n'),
    Buffer.from(`0;chunk-signature=${signatures[2] as string}\r\n\r\n`)
  ])
}
const chunkedHeaders = {
  host: 's3.amazonaws.com', 'x-amz-date': '20130524T000000Z', 'x-amz-storage-class': 'REDUCED_REDUNDANCY', 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
  'content-encoding': 'aws-chunked', 'x-amz-decoded-content-length': '66560', 'content-length': '66824',
  authorization: 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9'
}

async function decodeAll (auth: Authenticated, headers: Record<string, string>, body: Buffer, pieceBytes = 1000): Promise<Buffer> {
  const out: Buffer[] = []
  const pieces: Buffer[] = []
  for (let at = 0; at < body.length; at += pieceBytes) pieces.push(body.subarray(at, at + pieceBytes))
  await pipeline(Readable.from(pieces), new PayloadReader({ mode: auth.payload, headers, sizeBytesMax: 1 << 30 }), new Writable({
    write (piece: Buffer, _e, callback) { out.push(piece); callback() }
  }))
  return Buffer.concat(out)
}

t.test("AWS's aws-chunked example: every chunk signature checked", async (t) => {
  const auth = await authenticate({ method: 'PUT', url: '/examplebucket/chunkObject.txt', headers: chunkedHeaders }, resolver, exampleMs)
  t.equal(auth.payload.kind, 'chunked')
  for (const pieceBytes of [1, 7, 1000, 70_000]) {
    const decoded = await decodeAll(auth, chunkedHeaders, chunkedBody(), pieceBytes)
    t.ok(decoded.equals(Buffer.alloc(66560, 'a')), `decoded whole, read ${pieceBytes} bytes at a time`)
  }
  const changed = Buffer.alloc(1024, 'a')
  changed[5] = 0x62
  t.equal(await codeOf(decodeAll(auth, chunkedHeaders, chunkedBody(chunkedSignatures, changed))), 'SignatureDoesNotMatch', 'a changed byte')
  t.equal(await codeOf(decodeAll(auth, chunkedHeaders, chunkedBody([chunkedSignatures[1], chunkedSignatures[0], chunkedSignatures[2]] as string[]))), 'SignatureDoesNotMatch', 'chunks reordered')
  const full = chunkedBody()
  t.equal(await codeOf(decodeAll(auth, chunkedHeaders, full.subarray(0, full.length - 40))), 'IncompleteBody', 'a body cut short')
})

t.test('unsigned aws-chunked with a trailing checksum', async (t) => {
  const data = Buffer.from('hello, trailer world')
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(data))
  const headers = { 'x-amz-trailer': 'x-amz-checksum-crc32', 'x-amz-decoded-content-length': String(data.length) }
  const auth: Authenticated = { accessKeyId: 'k', key: { signingKey: Buffer.alloc(32), readOnly: false, prefix: null }, payload: { kind: 'chunked', signed: false, trailer: true, chunkSigning: null } }
  const body = (checksum: string): Buffer => Buffer.from(`${data.length.toString(16)}\r\n${data.toString()}\r\n0\r\nx-amz-checksum-crc32:${checksum}\r\n\r\n`)
  t.ok((await decodeAll(auth, headers, body(crc.toString('base64')), 3)).equals(data))
  t.equal(await codeOf(decodeAll(auth, headers, body('AAAAAA=='))), 'BadDigest', 'a wrong trailing CRC32')
  t.equal(await codeOf(decodeAll(auth, { ...headers, 'x-amz-decoded-content-length': '5' }, body(crc.toString('base64')))), 'IncompleteBody', 'a length that disagrees')
})

t.test('CRC32C matches the published check value', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283)
  t.equal(crc32c(Buffer.from('6789'), crc32c(Buffer.from('12345'))), 0xe3069283, 'incremental')
})
