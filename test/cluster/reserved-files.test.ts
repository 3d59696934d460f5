// Proves a small file in one master call on a real cluster (issue 13, client/reservations.ts): writeFile of
// bytes that fit one chunk takes a file the master reserved ahead, streams to its pipeline and names, commits and
// completes it with one commit. Counted from the client's own requests (undici's diagnostics channel): past the
// first writes, files cost one master call each, not two; every file reads back byte-identical (sha256) through
// the library and from every replica; and a client with reserveFiles off still creates each file.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { masterCallsDuring } from '../../testing/master-calls.js'
import { signedRequest as request, startCluster } from '../../testing/cluster.js'
import type { OpenReply } from '../../shared/protocol.js'

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')

t.test('small files in one master call: reserved ahead, named by their commit, intact on every replica', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, test: t })
  const fs = cluster.client({ replication: 3 })
  const written = new Map<string, string>()
  const files = 160
  const { calls } = await masterCallsDuring(async () => {
    for (let i = 0; i < 40; i++) {   // one writer, then 16 at once
      const data = randomBytes(1 + (i * 997) % 8192)
      await fs.writeFile(`/one/f${i}`, data)
      written.set(`/one/f${i}`, sha256(data))
    }
    let next = 40
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < files) {
        const i = next++
        const data = randomBytes(4096)
        await fs.writeFile(`/many/f${i}`, data, { mode: 0o600 })
        written.set(`/many/f${i}`, sha256(data))
      }
    }))
  })
  const creates = calls.get('/fs/create') ?? 0
  const reserves = calls.get('/fs/reserve') ?? 0
  t.ok(reserves >= 1, `the client reserved files (${reserves} reserve calls)`)
  t.ok(creates < files / 4, `most files were reserved, not created: ${creates} creates for ${files} files`)
  t.equal(calls.get('/fs/commit'), files, 'one commit per file, which completes it')
  t.equal(calls.get('/fs/complete') ?? 0, 0, 'no separate complete')
  t.ok(creates + (calls.get('/fs/commit') ?? 0) + reserves < 1.3 * files, `master calls per file ${((creates + files + reserves) / files).toFixed(2)}`)

  t.equal((await fs.readdir('/one')).length, 40, 'every file is listed')
  t.match(await fs.stat('/many/f50'), { sizeBytes: 4096, mode: 0o600 }, 'create\'s options reach a reserved file')
  const mismatched: string[] = []
  let replicaReads = 0
  for (const [path, digest] of written) {
    if (sha256(await fs.readFile(path)) !== digest) mismatched.push(`${path} via the library`)
    const reply = await (await request(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)).body.json() as OpenReply
    const chunk = reply.chunks[0]
    if (chunk === undefined || chunk.replicas.length !== 3) { mismatched.push(`${path}: ${JSON.stringify(reply.chunks)}`); continue }
    for (const replica of chunk.replicas) {
      const res = await request(`${replica.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}&offset=0&length=${chunk.lengthBytes}`, { headers: { 'x-granary-token': chunk.token } })
      replicaReads++
      if (res.statusCode !== 200 || sha256(Buffer.from(await res.body.arrayBuffer())) !== digest) mismatched.push(`${path} on ${replica.serverId}: HTTP ${res.statusCode}`)
    }
  }
  t.same(mismatched, [], `${written.size} files byte-identical through the library and on all 3 replicas (${replicaReads} replica reads)`)

  // The usual errors, from the binding commit instead of a create.
  await t.rejects(fs.writeFile('/one/f1', 'again'), { code: 'GRN_EXISTS' }, 'an existing file is not replaced without overwrite')
  await t.rejects(fs.writeFile('/one/f1/under', 'x'), { code: 'GRN_NOT_DIR' }, 'a file on the way is not a folder')
  t.match(await fs.writeFile('/one/f1', 'again', { overwrite: true }), { sizeBytes: 5 }, 'overwrite replaces it')
  t.equal((await fs.readFile('/one/f1')).toString(), 'again')

  // A stream told its size takes a reserved file too (the S3 gateway's PUT, granary put and cp); the size is a
  // hint, and a stream given other than it said is written all the same.
  await cluster.waitFor(() => fs.reservedFiles > 0, { what: 'the client to hold reserved files', timeoutMs: 10_000 })
  const streamed = [randomBytes(1000), randomBytes(2000), randomBytes(3000)]
  const { calls: streamCalls } = await masterCallsDuring(async () => {
    for (const [i, data] of streamed.entries()) {
      await pipeline(Readable.from([data.subarray(0, 500), data.subarray(500)]), fs.createWriteStream(`/stream/f${i}`, { sizeBytes: i === 2 ? 10 : data.length }))
    }
  })
  t.ok((streamCalls.get('/fs/create') ?? 0) < streamed.length, `streams with sizeBytes took reserved files: ${streamCalls.get('/fs/create') ?? 0} creates for ${streamed.length}`)
  for (const [i, data] of streamed.entries()) t.equal(sha256(await fs.readFile(`/stream/f${i}`)), sha256(data), `stream ${i} reads back`)
  t.throws(() => fs.createWriteStream('/stream/bad', { sizeBytes: -1 }), { code: 'GRN_INVALID_ARGUMENT' }, 'a negative sizeBytes is refused')

  const plain = cluster.client({ replication: 3, reserveFiles: false })
  await plain.mkdir('/plain')
  const { calls: plainCalls } = await masterCallsDuring(async () => {
    for (let i = 0; i < 10; i++) await plain.writeFile(`/plain/f${i}`, randomBytes(100))
  })
  t.equal(plainCalls.get('/fs/create'), 10, 'reserveFiles off: a create per file')
  t.equal(plainCalls.get('/fs/reserve') ?? 0, 0, 'and no reserve')
})
