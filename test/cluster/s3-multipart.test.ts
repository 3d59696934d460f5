// Proves multipart uploads through the gateway: a 200 MiB upload with @aws-sdk/lib-storage (4 parts in flight,
// progress events up to the total, S3's md5-of-md5s-N ETag, the bytes back by SHA-256, nothing visible before
// Complete), and each multipart call with its errors (InvalidPartOrder, InvalidPart, EntityTooSmall,
// NoSuchUpload), ListParts, ListMultipartUploads, Abort and UploadPartCopy.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { Upload } from '@aws-sdk/lib-storage'
import {
  AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateBucketCommand, CreateMultipartUploadCommand, GetObjectCommand,
  HeadObjectCommand, ListMultipartUploadsCommand, ListPartsCommand, PutObjectCommand, UploadPartCommand, UploadPartCopyCommand, type S3Client
} from '@aws-sdk/client-s3'
import { startCluster } from '../../testing/cluster.js'
import { startS3 } from '../helpers/s3.js'

const MiB = 1024 * 1024
const md5 = (data: Buffer): Buffer => createHash('md5').update(data).digest()

async function codeOf (promise: Promise<unknown>): Promise<{ name: string, status: number | undefined }> {
  try { await promise } catch (err) {
    const e = err as { name: string, $metadata?: { httpStatusCode?: number } }
    return { name: e.name, status: e.$metadata?.httpStatusCode }
  }
  return { name: 'no error', status: 200 }
}

async function shaOfObject (s3: S3Client, bucket: string, key: string, range?: string): Promise<string> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }))
  const hash = createHash('sha256')
  for await (const piece of got.Body as Readable) hash.update(piece as Buffer)
  return hash.digest('hex')
}

t.test('multipart through the gateway', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const harness = await startS3(cluster, t)
  const s3 = harness.s3()
  await s3.send(new CreateBucketCommand({ Bucket: 'big' }))

  t.test('a 200 MiB upload with lib-storage: progress, ETag, bytes', async (t) => {
    const partSize = 8 * MiB
    const data = randomBytes(200 * MiB)
    const upload = new Upload({ client: s3, queueSize: 4, partSize, params: { Bucket: 'big', Key: 'videos/huge.bin', Body: Readable.from(chunksOf(data, MiB)), ContentType: 'video/x-test', Metadata: { take: '7' } } })
    const loaded: number[] = []
    let visibleEarly = false
    upload.on('httpUploadProgress', (progress) => {
      loaded.push(progress.loaded ?? 0)
      if (loaded.length === 10) void s3.send(new HeadObjectCommand({ Bucket: 'big', Key: 'videos/huge.bin' })).then(() => { visibleEarly = true }, () => {})
    })
    const done = await upload.done()
    const parts = Math.ceil(data.length / partSize)
    const expected = `"${createHash('md5').update(Buffer.concat(Array.from({ length: parts }, (_, i) => md5(data.subarray(i * partSize, (i + 1) * partSize))))).digest('hex')}-${parts}"`
    t.equal(done.ETag, expected, "S3's md5-of-md5s-N ETag")
    t.ok(loaded.length >= parts, 'a progress event per part at least')
    t.equal(Math.max(...loaded), data.length, 'progress reaches the total')
    t.notOk(visibleEarly, 'the object was not visible before Complete')
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'big', Key: 'videos/huge.bin' }))
    t.equal(head.ContentLength, data.length)
    t.equal(head.ETag, expected, 'HEAD answers the stored ETag')
    t.equal(head.ContentType, 'video/x-test')
    t.same(head.Metadata, { take: '7' })
    t.equal(await shaOfObject(s3, 'big', 'videos/huge.bin'), createHash('sha256').update(data).digest('hex'), 'the bytes come back whole')
    t.equal(await shaOfObject(s3, 'big', 'videos/huge.bin', `bytes=${8 * MiB - 3}-${24 * MiB + 2}`),
      createHash('sha256').update(data.subarray(8 * MiB - 3, 24 * MiB + 3)).digest('hex'), 'a range across part and chunk boundaries')
    t.same(await cluster.client().readdir('/.s3-uploads/big'), [], 'the upload folder is gone')
    t.equal((await cluster.client().stat('/big/videos/huge.bin')).chunkSizeBytes, partSize, "the parts' own 8 MiB chunks: joined by concat, not copied")
  })

  t.test('each call and its errors', async (t) => {
    const created = await s3.send(new CreateMultipartUploadCommand({ Bucket: 'big', Key: 'parts/obj', ContentType: 'text/x-parts' }))
    const uploadId = created.UploadId as string
    const one = randomBytes(5 * MiB)
    const two = randomBytes(1234)
    const p1 = await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, PartNumber: 1, Body: one }))
    const p2 = await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, PartNumber: 2, Body: two }))
    t.equal(p1.ETag, `"${md5(one).toString('hex')}"`, 'a part\'s ETag is its MD5')
    const listed = await s3.send(new ListPartsCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId }))
    t.same(listed.Parts?.map((p) => [p.PartNumber, p.Size, p.ETag]), [[1, one.length, p1.ETag], [2, two.length, p2.ETag]])
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: 'big' }))
    t.same(uploads.Uploads?.map((u) => [u.Key, u.UploadId]), [['parts/obj', uploadId]])
    t.match(await codeOf(s3.send(new HeadObjectCommand({ Bucket: 'big', Key: 'parts/obj' }))), { status: 404 }, 'nothing visible before Complete')

    const complete = (parts: Array<{ PartNumber: number, ETag?: string }>): Promise<unknown> =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, MultipartUpload: { Parts: parts } }))
    t.match(await codeOf(complete([{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 1, ETag: p1.ETag }])), { name: 'InvalidPartOrder', status: 400 })
    t.match(await codeOf(complete([{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }, { PartNumber: 2, ETag: p2.ETag }])), { name: 'InvalidPart', status: 400 })
    t.match(await codeOf(complete([{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 3, ETag: p2.ETag }])), { name: 'InvalidPart', status: 400 })
    t.match(await codeOf(complete([{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 3, ETag: p2.ETag }])), { name: 'InvalidPart', status: 400 })
    // A part smaller than 5 MiB that is not the last: EntityTooSmall.
    const p3 = await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, PartNumber: 3, Body: two }))
    t.match(await codeOf(complete([{ PartNumber: 2, ETag: p2.ETag }, { PartNumber: 3, ETag: p3.ETag }])), { name: 'EntityTooSmall', status: 400 })
    // UploadPartCopy: part 4 is a range of an existing object.
    const source = randomBytes(3 * MiB)
    await s3.send(new PutObjectCommand({ Bucket: 'big', Key: 'source', Body: source }))
    const p4 = await s3.send(new UploadPartCopyCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, PartNumber: 4, CopySource: 'big/source', CopySourceRange: 'bytes=100-1099' }))
    t.equal(p4.CopyPartResult?.ETag, `"${md5(source.subarray(100, 1100)).toString('hex')}"`)

    const result = await s3.send(new CompleteMultipartUploadCommand({
      Bucket: 'big', Key: 'parts/obj', UploadId: uploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: p1.ETag }, { PartNumber: 4, ETag: p4.CopyPartResult?.ETag }] }
    }))
    const whole = Buffer.concat([one, source.subarray(100, 1100)])
    t.equal(result.ETag, `"${createHash('md5').update(Buffer.concat([md5(one), md5(source.subarray(100, 1100))])).digest('hex')}-2"`)
    t.equal(await shaOfObject(s3, 'big', 'parts/obj'), createHash('sha256').update(whole).digest('hex'), 'parts 1 and 4 in order; parts 2 and 3 left out')
    t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'big', Key: 'parts/obj' }))).ContentType, 'text/x-parts', 'the upload\'s metadata')
    t.match(await codeOf(s3.send(new ListPartsCommand({ Bucket: 'big', Key: 'parts/obj', UploadId: uploadId }))), { name: 'NoSuchUpload', status: 404 }, 'completed: gone')

    // Parts whose sizes are not whole chunks of one size cannot be joined by concat: Complete copies them.
    const odd = (await s3.send(new CreateMultipartUploadCommand({ Bucket: 'big', Key: 'parts/odd' }))).UploadId as string
    const oddOne = randomBytes(5 * MiB + 1)
    const o1 = await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/odd', UploadId: odd, PartNumber: 1, Body: oddOne }))
    const o2 = await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/odd', UploadId: odd, PartNumber: 2, Body: two }))
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: 'big', Key: 'parts/odd', UploadId: odd, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: o1.ETag }, { PartNumber: 2, ETag: o2.ETag }] } }))
    t.equal(await shaOfObject(s3, 'big', 'parts/odd'), createHash('sha256').update(Buffer.concat([oddOne, two])).digest('hex'), 'unaligned parts: copied, whole')
    t.equal((await cluster.client().stat('/big/parts/odd')).chunkSizeBytes, MiB, "written anew with the gateway's chunk size")

    const aborted = (await s3.send(new CreateMultipartUploadCommand({ Bucket: 'big', Key: 'parts/aborted' }))).UploadId as string
    await s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/aborted', UploadId: aborted, PartNumber: 1, Body: two }))
    await s3.send(new AbortMultipartUploadCommand({ Bucket: 'big', Key: 'parts/aborted', UploadId: aborted }))
    t.match(await codeOf(s3.send(new UploadPartCommand({ Bucket: 'big', Key: 'parts/aborted', UploadId: aborted, PartNumber: 2, Body: two }))), { name: 'NoSuchUpload', status: 404 })
    t.match(await codeOf(s3.send(new AbortMultipartUploadCommand({ Bucket: 'big', Key: 'parts/aborted', UploadId: 'f'.repeat(32) }))), { name: 'NoSuchUpload', status: 404 })
    t.match(await codeOf(s3.send(new HeadObjectCommand({ Bucket: 'big', Key: 'parts/aborted' }))), { status: 404 })
    t.same((await s3.send(new ListMultipartUploadsCommand({ Bucket: 'big' }))).Uploads, undefined, 'no upload left')
  })
})

function * chunksOf (data: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size)
}
