// Proves the S3 gateway (issue 15) with the AWS SDK v3 as an application would use it, against a real cluster:
// buckets, objects with metadata and MD5 ETags, ranged GETs across chunk boundaries, conditionals, copies,
// deletes, the listings in S3's key order with their paging, unversioned-bucket answers, unmappable keys, and
// S3's error codes. Bytes are compared by SHA-256.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import {
  CopyObjectCommand, CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, DeleteObjectsCommand, GetBucketLocationCommand,
  GetBucketVersioningCommand, GetObjectCommand, HeadBucketCommand, HeadObjectCommand, ListBucketsCommand, ListObjectVersionsCommand,
  ListObjectsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client, type ListObjectsV2CommandOutput
} from '@aws-sdk/client-s3'
import { startCluster } from '../../testing/cluster.js'
import { startS3 } from '../helpers/s3.js'

const sha = (data: Buffer | Uint8Array): string => createHash('sha256').update(data).digest('hex')
const md5 = (data: Buffer | string): string => createHash('md5').update(data).digest('hex')

async function bodyOf (s3: S3Client, input: { Bucket: string, Key: string, Range?: string }): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand(input))
  return Buffer.from(await (got.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray())
}

async function codeOf (promise: Promise<unknown>): Promise<{ name: string, status: number | undefined }> {
  try {
    await promise
  } catch (err) {
    const e = err as { name: string, $metadata?: { httpStatusCode?: number } }
    return { name: e.name, status: e.$metadata?.httpStatusCode }
  }
  return { name: 'no error', status: 200 }
}

t.test('the AWS SDK against the gateway', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const harness = await startS3(cluster, t)
  const s3 = harness.s3()
  const fs = cluster.client()

  t.test('buckets', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'photos' }))
    t.equal((await fs.stat('/photos')).type, 'dir', 'a bucket is a top-level folder')
    t.match(await codeOf(s3.send(new CreateBucketCommand({ Bucket: 'photos' }))), { name: 'BucketAlreadyOwnedByYou', status: 409 })
    t.match(await codeOf(s3.send(new CreateBucketCommand({ Bucket: 'Bad_Name' }))), { name: 'InvalidBucketName', status: 400 })
    await s3.send(new HeadBucketCommand({ Bucket: 'photos' }))
    t.match(await codeOf(s3.send(new HeadBucketCommand({ Bucket: 'nothere' }))), { status: 404 })
    t.match(await codeOf(s3.send(new ListObjectsV2Command({ Bucket: 'nothere' }))), { name: 'NoSuchBucket', status: 404 })
    const names = (await s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)
    t.same(names, ['photos'], 'only buckets: /.trash and /.s3-uploads are not listed')
    t.equal((await s3.send(new GetBucketLocationCommand({ Bucket: 'photos' }))).LocationConstraint, undefined, 'us-east-1 answers an empty constraint')
    t.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: 'photos' }))).Status, undefined, 'never versioned')
    await s3.send(new PutObjectCommand({ Bucket: 'photos', Key: 'keep.txt', Body: 'x' }))
    t.match(await codeOf(s3.send(new DeleteBucketCommand({ Bucket: 'photos' }))), { name: 'BucketNotEmpty', status: 409 })
    await s3.send(new CreateBucketCommand({ Bucket: 'empty-one' }))
    await s3.send(new DeleteBucketCommand({ Bucket: 'empty-one' }))
    t.match(await codeOf(s3.send(new HeadBucketCommand({ Bucket: 'empty-one' }))), { status: 404 })
  })

  t.test('objects: metadata, MD5 ETags, ranges across chunks, conditionals', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'data' }))
    const data = randomBytes(3 * 1024 * 1024 + 777)   // 1 MiB chunks at the gateway: four chunks
    const put = await s3.send(new PutObjectCommand({
      Bucket: 'data', Key: 'dir/sub/blob.bin', Body: data, ContentType: 'application/x-test', Metadata: { owner: 'ann', note: 'two words' },
      CacheControl: 'max-age=60', ContentDisposition: 'attachment'
    }))
    t.equal(put.ETag, `"${md5(data)}"`, 'the ETag is the MD5 of the bytes')
    const stat = await fs.stat('/data/dir/sub/blob.bin')
    t.equal(stat.chunkCount, 4, 'keys with / map to folders, the file spans chunks')
    t.same(stat.attrs?.etag, md5(data), 'the MD5 is stored with the file')
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin' }))
    t.equal(head.ContentLength, data.length)
    t.equal(head.ETag, `"${md5(data)}"`)
    t.equal(head.ContentType, 'application/x-test')
    t.equal(head.CacheControl, 'max-age=60')
    t.equal(head.ContentDisposition, 'attachment')
    t.same(head.Metadata, { owner: 'ann', note: 'two words' })
    t.equal(sha(await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin' })), sha(data), 'GET returns the bytes')
    const MiB = 1024 * 1024
    for (const [from, to] of [[MiB - 10, MiB + 10], [0, 0], [2 * MiB - 1, 3 * MiB], [3 * MiB, data.length - 1], [100, 3 * MiB + 5]] as Array<[number, number]>) {
      const part = await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin', Range: `bytes=${from}-${to}` })
      t.equal(sha(part), sha(data.subarray(from, to + 1)), `range ${from}-${to} across chunk boundaries`)
    }
    t.equal(sha(await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin', Range: 'bytes=-100' })), sha(data.subarray(data.length - 100)), 'suffix range')
    t.equal(sha(await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin', Range: `bytes=${data.length - 5}-` })), sha(data.subarray(data.length - 5)), 'open range')
    const ranged = await s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', Range: 'bytes=10-19' }))
    t.equal(ranged.ContentRange, `bytes 10-19/${data.length}`)
    await ranged.Body?.transformToByteArray()
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', Range: `bytes=${data.length}-` }))), { name: 'InvalidRange', status: 416 })

    const etag = `"${md5(data)}"`
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', IfNoneMatch: etag }))), { status: 304 }, 'If-None-Match: not modified')
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', IfMatch: '"0000"' }))), { name: 'PreconditionFailed', status: 412 })
    t.match(await codeOf(s3.send(new HeadObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', IfModifiedSince: new Date(Date.now() + 60_000) }))), { status: 304 })
    const matched = await s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', IfMatch: etag, Range: 'bytes=0-3' }))
    t.equal(Buffer.from(await (matched.Body as { transformToByteArray: () => Promise<Uint8Array> }).transformToByteArray()).toString('hex'), data.subarray(0, 4).toString('hex'))
    t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', VersionId: 'null' }))).ContentLength, data.length, 'versionId=null is the object')

    // A bad Content-MD5 is refused with BadDigest and the stored object is untouched.
    const wrong = Buffer.from(md5('other'), 'hex').toString('base64')
    t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', Body: 'replacement', ContentMD5: wrong }))), { name: 'BadDigest', status: 400 })
    t.equal(sha(await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin' })), sha(data), 'the old object stays whole')
    const right = Buffer.from(md5('replacement'), 'hex').toString('base64')
    await s3.send(new PutObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin', Body: 'replacement', ContentMD5: right }))
    t.equal((await bodyOf(s3, { Bucket: 'data', Key: 'dir/sub/blob.bin' })).toString(), 'replacement', 'a PUT replaces')
    t.same((await s3.send(new HeadObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin' }))).Metadata, {}, 'with its own metadata')

    const empty = await s3.send(new PutObjectCommand({ Bucket: 'data', Key: 'empty', Body: '' }))
    t.equal(empty.ETag, `"${md5('')}"`)
    t.equal((await bodyOf(s3, { Bucket: 'data', Key: 'empty' })).length, 0)
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'missing' }))), { name: 'NoSuchKey', status: 404 })
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir' }))), { name: 'NoSuchKey', status: 404 }, 'a folder is not an object')
    t.match(await codeOf(s3.send(new GetObjectCommand({ Bucket: 'data', Key: 'dir/sub/blob.bin/x' }))), { name: 'NoSuchKey', status: 404 })
    t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'nobucket', Key: 'k', Body: 'x' }))), { name: 'NoSuchBucket', status: 404 })
    await t.rejects(fs.stat('/nobucket'), 'a PUT to a missing bucket creates nothing')
  })

  t.test('keys that cannot map are refused with S3 codes and change nothing', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'odd' }))
    await s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'file', Body: 'f' }))
    await s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'folder/inner', Body: 'i' }))
    for (const key of ['a//b', 'a/./b', 'a/../b', '..']) {
      t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'odd', Key: key, Body: 'x' }))), { name: 'InvalidArgument', status: 400 }, `key ${key}`)
    }
    t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'file/below', Body: 'x' }))), { name: 'InvalidRequest', status: 400 }, 'below an object')
    t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'folder', Body: 'x' }))), { name: 'InvalidRequest', status: 400 }, 'a key that is a prefix')
    t.match(await codeOf(s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'k'.repeat(1025), Body: 'x' }))), { name: 'KeyTooLongError', status: 400 })
    t.same((await fs.readdir('/odd')).sort(), ['file', 'folder'], 'nothing was created')
    t.equal((await bodyOf(s3, { Bucket: 'odd', Key: 'file' })).toString(), 'f')
    await s3.send(new PutObjectCommand({ Bucket: 'odd', Key: 'marker/', Body: '' }))
    t.equal((await fs.stat('/odd/marker')).type, 'dir', 'a key ending in / is a folder marker')
    t.equal((await s3.send(new HeadObjectCommand({ Bucket: 'odd', Key: 'marker/' }))).ContentLength, 0)
  })

  t.test('copy, delete, delete many', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'copies' }))
    const data = randomBytes(1500 * 1024)
    await s3.send(new PutObjectCommand({ Bucket: 'copies', Key: 'src/one', Body: data, ContentType: 'text/x-one', Metadata: { a: '1' } }))
    const copied = await s3.send(new CopyObjectCommand({ Bucket: 'copies', Key: 'dst/one', CopySource: 'copies/src/one' }))
    t.equal(copied.CopyObjectResult?.ETag, `"${md5(data)}"`)
    const head = await s3.send(new HeadObjectCommand({ Bucket: 'copies', Key: 'dst/one' }))
    t.equal(head.ContentType, 'text/x-one', 'COPY keeps the metadata')
    t.same(head.Metadata, { a: '1' })
    t.equal(sha(await bodyOf(s3, { Bucket: 'copies', Key: 'dst/one' })), sha(data))
    await s3.send(new CopyObjectCommand({ Bucket: 'copies', Key: 'dst/two', CopySource: encodeURI('copies/src/one'), MetadataDirective: 'REPLACE', ContentType: 'text/x-two', Metadata: { b: '2' } }))
    const replaced = await s3.send(new HeadObjectCommand({ Bucket: 'copies', Key: 'dst/two' }))
    t.equal(replaced.ContentType, 'text/x-two')
    t.same(replaced.Metadata, { b: '2' })
    t.match(await codeOf(s3.send(new CopyObjectCommand({ Bucket: 'copies', Key: 'x', CopySource: 'copies/none' }))), { name: 'NoSuchKey', status: 404 })

    await s3.send(new DeleteObjectCommand({ Bucket: 'copies', Key: 'src/one' }))
    t.match(await codeOf(s3.send(new HeadObjectCommand({ Bucket: 'copies', Key: 'src/one' }))), { status: 404 })
    await t.rejects(fs.stat('/copies/src'), 'the emptied folder went with its last object')
    await s3.send(new DeleteObjectCommand({ Bucket: 'copies', Key: 'never-was' }))
    t.pass('deleting a missing key succeeds, as in S3')
    const many = await s3.send(new DeleteObjectsCommand({
      Bucket: 'copies', Delete: { Objects: [{ Key: 'dst/one' }, { Key: 'dst/two', VersionId: 'null' }, { Key: 'nothing' }, { Key: 'dst/one', VersionId: 'v2' }] }
    }))
    t.same(many.Deleted?.map((d) => d.Key).sort(), ['dst/one', 'dst/two', 'nothing'])
    t.same(many.Errors?.map((e) => [e.Key, e.Code]), [['dst/one', 'NoSuchVersion']])
    for (let i = 0; i < 30; i++) await s3.send(new PutObjectCommand({ Bucket: 'copies', Key: `bulk/${i % 3}/k${i}`, Body: `v${i}` }))
    const bulk = await s3.send(new DeleteObjectsCommand({ Bucket: 'copies', Delete: { Quiet: true, Objects: Array.from({ length: 30 }, (_, i) => ({ Key: `bulk/${i % 3}/k${i}` })) } }))
    t.equal(bulk.Deleted, undefined, 'quiet: no Deleted entries')
    t.equal(bulk.Errors, undefined)
    t.same(await fs.readdir('/copies'), [], 'the bucket is empty again')
    await s3.send(new DeleteBucketCommand({ Bucket: 'copies' }))
  })

  t.test('listings: S3 key order, prefixes, delimiters, paging', async (t) => {
    await s3.send(new CreateBucketCommand({ Bucket: 'list' }))
    // 'a-b' sorts before 'a/…' ('-' < '/') although folder 'a' lists before file 'a-b': the gateway must interleave.
    const keys = ['a-b', 'a/1', 'a/2/x', 'a/2/y', 'a.c', 'a0', 'b/deep/deeper/k', 'b/z', 'c', 'a/2-z', 'a/2/-']
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: 'list', Key: key, Body: key }))
    const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)))
    const all = await s3.send(new ListObjectsV2Command({ Bucket: 'list' }))
    t.same(all.Contents?.map((c) => c.Key), sorted, 'every key, in S3 order')
    t.equal(all.KeyCount, keys.length)
    t.equal(all.Contents?.find((c) => c.Key === 'c')?.ETag, `"${md5('c')}"`, 'ETags in listings')
    t.equal(all.Contents?.find((c) => c.Key === 'c')?.Size, 1)

    const top = await s3.send(new ListObjectsV2Command({ Bucket: 'list', Delimiter: '/' }))
    t.same(top.Contents?.map((c) => c.Key), ['a-b', 'a.c', 'a0', 'c'])
    t.same(top.CommonPrefixes?.map((p) => p.Prefix), ['a/', 'b/'])
    const inA = await s3.send(new ListObjectsV2Command({ Bucket: 'list', Delimiter: '/', Prefix: 'a/' }))
    t.same(inA.Contents?.map((c) => c.Key), ['a/1', 'a/2-z'])
    t.same(inA.CommonPrefixes?.map((p) => p.Prefix), ['a/2/'])
    const partial = await s3.send(new ListObjectsV2Command({ Bucket: 'list', Prefix: 'a/2' }))
    t.same(partial.Contents?.map((c) => c.Key), ['a/2-z', 'a/2/-', 'a/2/x', 'a/2/y'], 'a prefix that ends mid-name')
    t.same((await s3.send(new ListObjectsV2Command({ Bucket: 'list', Prefix: 'zz/' }))).Contents, undefined, 'a missing prefix lists nothing')

    for (const [maxKeys, delimiter] of [[1, undefined], [2, undefined], [3, undefined], [1, '/'], [2, '/'], [1, '2']] as const) {
      const seen: string[] = []
      let token: string | undefined
      let pages = 0
      do {
        const page: ListObjectsV2CommandOutput = await s3.send(new ListObjectsV2Command({ Bucket: 'list', MaxKeys: maxKeys, ContinuationToken: token, Delimiter: delimiter }))
        seen.push(...(page.Contents ?? []).map((c) => c.Key as string), ...(page.CommonPrefixes ?? []).map((p) => `prefix:${p.Prefix as string}`))
        t.ok((page.KeyCount ?? 0) <= maxKeys, 'a page holds at most max-keys')
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
        pages++
      } while (token !== undefined && pages < 100)
      const whole = await s3.send(new ListObjectsV2Command({ Bucket: 'list', Delimiter: delimiter }))
      const expected = [...(whole.Contents ?? []).map((c) => c.Key as string), ...(whole.CommonPrefixes ?? []).map((p) => `prefix:${p.Prefix as string}`)]
      t.same(seen.sort(), expected.sort(), `pages of ${maxKeys} (delimiter ${delimiter ?? 'none'}) cover the listing exactly once`)
    }
    const after = await s3.send(new ListObjectsV2Command({ Bucket: 'list', StartAfter: 'a-b' }))
    t.same(after.Contents?.map((c) => c.Key), sorted.slice(sorted.indexOf('a-b') + 1), 'start-after a name whose prefix is a folder')
    const afterDeep = await s3.send(new ListObjectsV2Command({ Bucket: 'list', StartAfter: 'a/2/x' }))
    t.same(afterDeep.Contents?.map((c) => c.Key), sorted.slice(sorted.indexOf('a/2/x') + 1))

    const v1: string[] = []
    let marker: string | undefined
    for (let i = 0; i < 100; i++) {
      const page = await s3.send(new ListObjectsCommand({ Bucket: 'list', MaxKeys: 4, Marker: marker }))
      v1.push(...(page.Contents ?? []).map((c) => c.Key as string))
      if (page.IsTruncated !== true) break
      marker = page.NextMarker ?? page.Contents?.at(-1)?.Key
    }
    t.same(v1, sorted, 'ListObjects v1 pages by marker')
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: 'list' }))
    t.same(versions.Versions?.map((v) => [v.Key, v.VersionId, v.IsLatest]), sorted.map((k) => [k, 'null', true]), 'each object once, version "null"')
    t.equal(versions.DeleteMarkers, undefined)
  })
})
