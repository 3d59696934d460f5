// Proves the gateway as `granary up` runs it: a real `granary s3` process, its endpoint printed and listed in
// cluster.json with role s3, a key pair generated into DATA/s3-credentials (mode 0600); SIGKILLed, it is
// restarted on the same port. And the master SIGKILLed (restarted by the supervisor, the shadow serving
// meanwhile) during a multipart upload and during a large GET: the SDK's upload and read carry through on the
// library's own retries, the object is not visible before Complete, and the bytes agree by SHA-256.
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'
import type { Readable } from 'node:stream'
import t from 'tap'
import { Upload } from '@aws-sdk/lib-storage'
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import type { ClusterMember } from '../../client/cluster/chaos-cluster.js'
import { upClusterIn } from '../helpers/up-cluster.js'

const MiB = 1024 * 1024
const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

function members (dataDir: string): ClusterMember[] {
  return (JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: ClusterMember[] }).processes
}

async function until (predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

t.test('granary up runs an S3 gateway and keeps it, and the master, going', async (t) => {
  const { cluster, dataDir } = upClusterIn(t, { chunkservers: 3, shadows: 1, heartbeatIntervalMs: 200, restartDelayMs: 0, startTimeoutMs: 60_000, s3Port: 0 })
  await cluster.start()
  const gateway = members(dataDir).find((m) => m.role === 's3') as ClusterMember
  t.ok(gateway !== undefined && gateway.url.startsWith('http://127.0.0.1:'), 'cluster.json lists the gateway with role s3')
  const keys = JSON.parse(readFileSync(join(dataDir, 's3-credentials'), 'utf8')) as { accessKeyId: string, secretAccessKey: string }
  t.equal(statSync(join(dataDir, 's3-credentials')).mode & 0o777, 0o600, 'the generated key pair is readable by its owner only')
  t.ok(cluster.lines.some((l) => l.text.includes(`S3 endpoint ${gateway.url}`) && l.text.includes(keys.accessKeyId)), 'the summary prints the endpoint and key')
  const s3 = new S3Client({ endpoint: gateway.url, region: 'us-east-1', forcePathStyle: true, credentials: { ...keys }, maxAttempts: 10 })
  t.teardown(() => s3.destroy())
  await s3.send(new CreateBucketCommand({ Bucket: 'up-bucket' }))
  await s3.send(new PutObjectCommand({ Bucket: 'up-bucket', Key: 'hello', Body: 'hello' }))

  // The gateway SIGKILLed: restarted on the same port, the same key pair.
  process.kill(gateway.pid, 'SIGKILL')
  await until(() => { const g = members(dataDir).find((m) => m.role === 's3'); return g !== undefined && g.pid !== gateway.pid && g.state === 'running' }, 30_000, 'the gateway restarted')
  t.equal(members(dataDir).find((m) => m.role === 's3')?.url, gateway.url, 'on the same URL')
  t.equal(await (await s3.send(new GetObjectCommand({ Bucket: 'up-bucket', Key: 'hello' }))).Body?.transformToString(), 'hello')

  t.test('the master killed during a multipart upload', async (t) => {
    const data = randomBytes(40 * MiB)
    const upload = new Upload({ client: s3, queueSize: 4, partSize: 5 * MiB, params: { Bucket: 'up-bucket', Key: 'mp/killed.bin', Body: data } })
    let killed = false
    let visibleAtKill: boolean | undefined
    upload.on('httpUploadProgress', (progress) => {
      if (killed || (progress.loaded ?? 0) < 15 * MiB) return
      killed = true
      process.kill(cluster.master().pid, 'SIGKILL')
      void s3.send(new HeadObjectCommand({ Bucket: 'up-bucket', Key: 'mp/killed.bin' })).then(() => { visibleAtKill = true }, () => { visibleAtKill = false })
    })
    const done = await upload.done()
    t.ok(killed, 'the master was killed mid-upload')
    t.equal(visibleAtKill, false, 'the object was not visible before Complete')
    t.match(done.ETag, /-8"$/, 'eight parts')
    const got = await s3.send(new GetObjectCommand({ Bucket: 'up-bucket', Key: 'mp/killed.bin' }))
    const hash = createHash('sha256')
    for await (const piece of got.Body as Readable) hash.update(piece as Buffer)
    t.equal(hash.digest('hex'), sha(data), 'the bytes are whole')
  })

  t.test('the master killed during a large GET', async (t) => {
    const data = randomBytes(48 * MiB)
    await new Upload({ client: s3, queueSize: 4, partSize: 8 * MiB, params: { Bucket: 'up-bucket', Key: 'big/read.bin', Body: data } }).done()
    const got = await s3.send(new GetObjectCommand({ Bucket: 'up-bucket', Key: 'big/read.bin' }))
    const hash = createHash('sha256')
    let readBytes = 0
    let killed = false
    for await (const piece of got.Body as Readable) {
      hash.update(piece as Buffer)
      readBytes += (piece as Buffer).length
      if (!killed && readBytes > 8 * MiB) {
        killed = true
        process.kill(cluster.master().pid, 'SIGKILL')
      }
    }
    t.ok(killed, 'the master was killed mid-read')
    t.equal(hash.digest('hex'), sha(data), 'the read carried through')
    await until(() => members(dataDir).every((m) => m.state === 'running'), 30_000, 'every member running again')
  })
})
