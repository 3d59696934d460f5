// Proves the gateway's SigV4 checks as clients meet them: presigned PUT and GET with plain undici (a browser's
// view), a tampered or expired presigned URL, a wrong key or secret, clock skew, an unsigned request, the header
// form with UNSIGNED-PAYLOAD and with a SHA-256 that does not match the body (nothing stored), the SDK's
// aws-chunked body with a trailing checksum, and a key resolver's read-only and prefix limits.
import t from 'tap'
import { createHash, createHmac, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { SignatureV4 } from '@smithy/signature-v4'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import {
  CreateBucketCommand, GetObjectCommand, HeadObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, S3Client
} from '@aws-sdk/client-s3'
import { crc32c } from '../../gateway/crc32c.js'
import { deriveSigningKey, type KeyResolver } from '../../gateway/sigv4.js'
import { startCluster } from '../../testing/cluster.js'
import { startS3, testKeys } from '../helpers/s3.js'

async function codeOf (promise: Promise<unknown>): Promise<{ name: string, status: number | undefined }> {
  try { await promise } catch (err) {
    const e = err as { name: string, $metadata?: { httpStatusCode?: number } }
    return { name: e.name, status: e.$metadata?.httpStatusCode }
  }
  return { name: 'no error', status: 200 }
}

const xmlCode = (body: string): string | undefined => /<Code>([^<]+)<\/Code>/.exec(body)?.[1]

// The SHA-256 the smithy signer wants: a class with update/digest, keyed for HMAC.
class Sha256 {
  readonly #hash
  constructor (secret?: Uint8Array | ArrayBuffer | ArrayBufferView | string) { this.#hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret)) }
  update (data: Uint8Array | ArrayBuffer | ArrayBufferView | string): void { this.#hash.update(bytes(data)) }
  async digest (): Promise<Uint8Array> { return new Uint8Array(this.#hash.digest()) }
  reset (): void {}
}

function bytes (data: Uint8Array | ArrayBuffer | ArrayBufferView | string): Buffer | string {
  if (typeof data === 'string') return data
  if (data instanceof ArrayBuffer) return Buffer.from(data)
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}

t.test('SigV4 at the gateway', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  let clockOffsetMs = 0
  const harness = await startS3(cluster, t, { now: () => Date.now() + clockOffsetMs })
  const s3 = harness.s3()
  await s3.send(new CreateBucketCommand({ Bucket: 'web' }))

  t.test('presigned PUT and GET with plain undici', async (t) => {
    const data = randomBytes(300 * 1024)
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: 'web', Key: 'up/photo.jpg', ContentType: 'image/jpeg' }), { expiresIn: 300 })
    const put = await request(putUrl, { method: 'PUT', body: data, headers: { 'content-type': 'image/jpeg' } })
    t.equal(put.statusCode, 200, await put.body.text())
    const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'web', Key: 'up/photo.jpg', ResponseContentDisposition: 'attachment; filename="p.jpg"' }), { expiresIn: 300 })
    const got = await request(getUrl)
    t.equal(got.statusCode, 200)
    t.equal(got.headers['content-type'], 'image/jpeg', 'the stored Content-Type')
    t.equal(got.headers['content-disposition'], 'attachment; filename="p.jpg"', 'response-* overrides')
    t.equal(Buffer.from(await got.body.arrayBuffer()).compare(data), 0, 'the bytes come back')

    // A page on another origin: the preflight is answered, and the real requests carry CORS headers.
    const preflight = await request(putUrl, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'content-type' } })
    await preflight.body.dump()
    t.equal(preflight.statusCode, 200, 'CORS preflight answered')
    t.equal(preflight.headers['access-control-allow-origin'], 'http://app.example')
    t.match(String(preflight.headers['access-control-allow-methods']), /PUT/)
    t.equal(preflight.headers['access-control-allow-headers'], 'content-type')
    const fromPage = await request(getUrl, { headers: { origin: 'http://app.example' } })
    await fromPage.body.dump()
    t.equal(fromPage.headers['access-control-allow-origin'], 'http://app.example')
    t.match(String(fromPage.headers['access-control-expose-headers']), /ETag/, 'the page may read the ETag')

    const tampered = await request(getUrl.replace('up/photo.jpg', 'up/other.jpg'))
    t.equal(tampered.statusCode, 403)
    t.equal(xmlCode(await tampered.body.text()), 'SignatureDoesNotMatch', 'a URL changed after signing')
    const short = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'web', Key: 'up/photo.jpg' }), { expiresIn: 1 })
    clockOffsetMs = 5_000
    const expired = await request(short)
    clockOffsetMs = 0
    t.equal(expired.statusCode, 403)
    const expiredBody = await expired.body.text()
    t.equal(xmlCode(expiredBody), 'AccessDenied')
    t.match(expiredBody, /expired/)
  })

  t.test('wrong key, wrong secret, clock skew, no signature', async (t) => {
    t.match(await codeOf(harness.s3({ credentials: { accessKeyId: 'NOSUCHKEY', secretAccessKey: testKeys.secretAccessKey } }).send(new ListBucketsCommand({}))),
      { name: 'InvalidAccessKeyId', status: 403 })
    t.match(await codeOf(harness.s3({ credentials: { accessKeyId: testKeys.accessKeyId, secretAccessKey: 'wrong-secret-key' } }).send(new ListBucketsCommand({}))),
      { name: 'SignatureDoesNotMatch', status: 403 })
    const skewed = harness.s3({ systemClockOffset: 20 * 60_000, maxAttempts: 1 })
    t.match(await codeOf(skewed.send(new ListBucketsCommand({}))), { name: 'RequestTimeTooSkewed', status: 403 })
    const anonymous = await request(`${harness.url}/web/up/photo.jpg`)
    t.equal(anonymous.statusCode, 403)
    t.equal(xmlCode(await anonymous.body.text()), 'AccessDenied')
  })

  t.test('header form: UNSIGNED-PAYLOAD, and a body that does not match its SHA-256', async (t) => {
    const signer = new SignatureV4({ credentials: { ...testKeys }, region: 'us-east-1', service: 's3', sha256: Sha256, uriEscapePath: false })
    const url = new URL(harness.url)
    const signed = async (path: string, body: string, payloadHash: string): Promise<{ statusCode: number, text: string }> => {
      const req = await signer.sign({
        method: 'PUT', protocol: 'http:', hostname: url.hostname, port: Number(url.port), path, query: {},
        headers: { host: url.host, 'x-amz-content-sha256': payloadHash, 'content-length': String(Buffer.byteLength(body)) }, body
      })
      const res = await request(`${harness.url}${path}`, { method: 'PUT', headers: req.headers, body })
      return { statusCode: res.statusCode, text: await res.body.text() }
    }
    t.equal((await signed('/web/unsigned.txt', 'no hash', 'UNSIGNED-PAYLOAD')).statusCode, 200)
    const got = await s3.send(new GetObjectCommand({ Bucket: 'web', Key: 'unsigned.txt' }))
    t.equal(await got.Body?.transformToString(), 'no hash')
    const lied = await signed('/web/lied.txt', 'actual body', createHash('sha256').update('another body').digest('hex'))
    t.equal(lied.statusCode, 400)
    t.equal(xmlCode(lied.text), 'XAmzContentSHA256Mismatch')
    t.match(await codeOf(s3.send(new HeadObjectCommand({ Bucket: 'web', Key: 'lied.txt' }))), { status: 404 }, 'nothing was stored')
    const honest = await signed('/web/honest.txt', 'actual body', createHash('sha256').update('actual body').digest('hex'))
    t.equal(honest.statusCode, 200)
  })

  t.test("the SDK's aws-chunked body with a trailing checksum", async (t) => {
    const seen: string[] = []
    const client = harness.s3()
    client.middlewareStack.add((next) => async (args) => {
      const headers = (args.request as { headers: Record<string, string> }).headers
      seen.push(`${headers['x-amz-content-sha256'] ?? ''} ${headers['content-encoding'] ?? ''} ${headers['x-amz-trailer'] ?? ''}`)
      return await next(args)
    }, { step: 'deserialize' })
    const data = randomBytes(200 * 1024 + 3)
    const put = await client.send(new PutObjectCommand({ Bucket: 'web', Key: 'chunked.bin', Body: Readable.from([data.subarray(0, 70_000), data.subarray(70_000)]), ContentLength: data.length, ChecksumAlgorithm: 'CRC32C' }))
    t.match(seen[0], /STREAMING-UNSIGNED-PAYLOAD-TRAILER aws-chunked x-amz-checksum-crc32c/, 'the SDK sent aws-chunked with a trailer')
    const expected = Buffer.alloc(4)
    expected.writeUInt32BE(crc32c(data))
    t.equal(put.ChecksumCRC32C, expected.toString('base64'), 'the trailing CRC32C was checked and echoed')
    const got = await s3.send(new GetObjectCommand({ Bucket: 'web', Key: 'chunked.bin' }))
    t.equal(Buffer.from(await got.Body?.transformToByteArray() ?? []).compare(data), 0)
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'web', Key: 'chunked.bin' }))
    t.equal(head.ETag, `"${createHash('md5').update(data).digest('hex')}"`, 'the MD5 ETag of the decoded bytes')
    t.equal(head.ContentEncoding, undefined, 'aws-chunked is framing, not stored as an encoding')
  })

  t.test("a key's read-only and prefix limits", async (t) => {
    const resolver: KeyResolver = {
      resolve: async (accessKeyId, scope) => {
        if (accessKeyId === 'READER') return { signingKey: deriveSigningKey('reader-secret-key', scope), readOnly: true, prefix: null }
        if (accessKeyId === 'SCOPED') return { signingKey: deriveSigningKey('scoped-secret-key', scope), readOnly: false, prefix: '/web/team' }
        return null
      }
    }
    const limited = await startS3(cluster, t, { resolver })
    const reader = limited.s3({ credentials: { accessKeyId: 'READER', secretAccessKey: 'reader-secret-key' } })
    t.equal(await (await reader.send(new GetObjectCommand({ Bucket: 'web', Key: 'unsigned.txt' }))).Body?.transformToString(), 'no hash', 'a read-only key reads')
    t.match(await codeOf(reader.send(new PutObjectCommand({ Bucket: 'web', Key: 'nope', Body: 'x' }))), { name: 'AccessDenied', status: 403 })
    const scoped = limited.s3({ credentials: { accessKeyId: 'SCOPED', secretAccessKey: 'scoped-secret-key' } })
    await scoped.send(new PutObjectCommand({ Bucket: 'web', Key: 'team/ok.txt', Body: 'ok' }))
    t.match(await codeOf(scoped.send(new PutObjectCommand({ Bucket: 'web', Key: 'teammate.txt', Body: 'x' }))), { name: 'AccessDenied', status: 403 })
    t.match(await codeOf(scoped.send(new GetObjectCommand({ Bucket: 'web', Key: 'unsigned.txt' }))), { name: 'AccessDenied', status: 403 })
    t.match(await codeOf(scoped.send(new ListObjectsV2Command({ Bucket: 'web' }))), { name: 'AccessDenied', status: 403 }, 'listing outside the prefix')
    t.same((await scoped.send(new ListObjectsV2Command({ Bucket: 'web', Prefix: 'team/' }))).Contents?.map((c) => c.Key), ['team/ok.txt'])
    t.same((await scoped.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name), ['web'])
    t.match(await codeOf(new S3Client({ endpoint: limited.url, region: 'us-east-1', forcePathStyle: true, credentials: { ...testKeys } }).send(new ListBucketsCommand({}))),
      { name: 'InvalidAccessKeyId' }, 'this gateway knows only its resolver\'s keys')
  })
})

// Issue 12 × 15: the S3 gateway takes Granary access keys, checked with the signing key the master derives for
// the request's day, region and service (the gateway never holds a secret): the kit's admin key does everything,
// a key scoped to one bucket and read-only stays inside it, a revoked key stops working, an unknown one is refused.
t.test('Granary access keys at the gateway', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const harness = await startS3(cluster, t)
  const admin = harness.s3({ credentials: { accessKeyId: cluster.credentials.accessKeyId, secretAccessKey: cluster.credentials.secretAccessKey } })
  await admin.send(new CreateBucketCommand({ Bucket: 'open' }))
  await admin.send(new CreateBucketCommand({ Bucket: 'other' }))
  const body = randomBytes(100_000)
  await admin.send(new PutObjectCommand({ Bucket: 'open', Key: 'a/b.bin', Body: body }))
  await admin.send(new PutObjectCommand({ Bucket: 'other', Key: 'x.bin', Body: body }))
  const fs = cluster.client()
  const reader = await fs.createAccessKey({ name: 's3-reader', readOnly: true, prefix: '/open' })
  const asReader = harness.s3({ credentials: { accessKeyId: reader.accessKeyId, secretAccessKey: reader.secretAccessKey } })
  const got = await asReader.send(new GetObjectCommand({ Bucket: 'open', Key: 'a/b.bin' }))
  t.same(Buffer.from(await got.Body?.transformToByteArray() ?? []), body, 'a read-only key scoped to /open reads its bucket')
  t.match(await codeOf(asReader.send(new PutObjectCommand({ Bucket: 'open', Key: 'new.bin', Body: 'x' }))), { name: 'AccessDenied', status: 403 }, 'but cannot write')
  t.match(await codeOf(asReader.send(new GetObjectCommand({ Bucket: 'other', Key: 'x.bin' }))), { name: 'AccessDenied', status: 403 }, 'nor read another bucket')
  const wrongSecret = harness.s3({ credentials: { accessKeyId: reader.accessKeyId, secretAccessKey: cluster.credentials.secretAccessKey } })
  t.match(await codeOf(wrongSecret.send(new ListBucketsCommand({}))), { name: 'SignatureDoesNotMatch', status: 403 }, 'a real key id with a wrong secret')
  const unknown = harness.s3({ credentials: { accessKeyId: 'GKAAAAAAAAAAAAAAAAAA', secretAccessKey: reader.secretAccessKey } })
  t.match(await codeOf(unknown.send(new ListBucketsCommand({}))), { name: 'InvalidAccessKeyId', status: 403 }, 'an unknown Granary key id')
  await fs.revokeAccessKey(reader.accessKeyId)
  await cluster.waitFor(async () => (await codeOf(asReader.send(new HeadObjectCommand({ Bucket: 'open', Key: 'a/b.bin' })))).status === 403,
    { what: 'the revoked key refused by the gateway', timeoutMs: 10_000 })
  t.pass('a revoked key is refused once the gateway\'s short cache lapses')
})
