// Proves the write path against fake master and chunkservers: bytes are cut into chunks at exact boundaries
// and every commit carries the length and CRC32 of its slice; a pipeline that fails (refused, cut, a bad ack)
// is retried on a new allocation whose excludeServerIds names the failed server; a hopeless write ends in
// GRN_DEADLINE_EXCEEDED and is abandoned; empty files have no chunks; no more than chunksInFlightMax chunks
// are buffered; the lease is renewed while a slow writer holds it.
import t, { type Test } from 'tap'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { crc32 } from '../../../shared/checksum.js'
import { chunksInFlightMax } from '../../../shared/limits.js'
import type { GranaryError } from '../../../shared/errors.js'
import { connect } from '../../../client/index.js'
import { BufferPool } from '../../../client/buffer-pool.js'
import { startFakeCluster } from './fake-cluster.js'
import { clientOptions, chunkSizeBytes, pattern, codeOf, sha256 } from './helpers.js'

async function setup (t: Test, chunkservers = 3, extra: Record<string, unknown> = {}) {
  const cluster = await startFakeCluster(chunkservers)
  const fs = connect(clientOptions(cluster.master.url, extra))
  t.teardown(async () => { await fs.close(); await cluster.stop() })
  return { cluster, fs }
}

t.test('chunks are cut at exact boundaries and committed with their CRC32', async (t) => {
  const { cluster, fs } = await setup(t)
  const data = pattern(3 * chunkSizeBytes + chunkSizeBytes / 2)
  const stat = await fs.writeFile('/dir-less.bin', data)
  t.match(stat, { path: '/dir-less.bin', sizeBytes: data.length, chunkCount: 4, replication: 3 })
  const commits = cluster.master.requests.filter((r) => r.route === '/fs/commit').map((r) => r.body).sort((a, b) => Number(a.chunkIndex) - Number(b.chunkIndex))
  t.same(commits.map((c) => c.lengthBytes), [chunkSizeBytes, chunkSizeBytes, chunkSizeBytes, chunkSizeBytes / 2])
  commits.forEach((commit, i) => {
    const slice = data.subarray(i * chunkSizeBytes, Math.min(data.length, (i + 1) * chunkSizeBytes))
    t.equal(commit.crc32, crc32(slice), `chunk ${i} CRC32 is the CRC32 of its slice`)
    t.equal((commit.serverIds as string[]).length, 3, `chunk ${i} acked by 3 servers`)
  })
  // The file is completed by its own call, or by the last chunk's commit when every other chunk had committed
  // by then (one round trip fewer): either way once, with the whole size and chunk count.
  const completions = [
    ...cluster.master.requests.filter((r) => r.route === '/fs/complete').map((r) => r.body),
    ...cluster.master.requests.filter((r) => r.route === '/fs/commit' && r.body.complete !== undefined).map((r) => r.body.complete as Record<string, unknown>)
  ]
  t.equal(completions.length, 1, 'completed once')
  t.match(completions[0], { sizeBytes: data.length, chunkCount: 4 })
  // Every replica holds exactly its slice, and the head was told the rest of the pipeline.
  const entry = cluster.master.entries.get('/dir-less.bin')
  for (const chunk of entry?.chunks ?? []) {
    const slice = data.subarray(chunk.chunkIndex * chunkSizeBytes, chunk.chunkIndex * chunkSizeBytes + chunk.lengthBytes)
    for (const replica of chunk.replicas) {
      const server = cluster.chunkservers.find((cs) => cs.serverId === replica.serverId)
      t.ok(server?.chunks.get(`${chunk.chunkHandle}:${chunk.version}`)?.equals(slice), `chunk ${chunk.chunkIndex} on ${replica.serverId}`)
    }
  }
  const headPut = cluster.chunkservers.flatMap((cs) => cs.puts).find((p) => p.pipeline.split(',').length === 2)
  t.ok(headPut, 'the head got a two-URL pipeline header')
  t.equal(sha256(await fs.readFile('/dir-less.bin')), sha256(data))
})

t.test('an exact multiple of the chunk size makes no empty chunk; an empty file makes none at all', async (t) => {
  const { cluster, fs } = await setup(t)
  const data = pattern(2 * chunkSizeBytes, 7)
  // Many small, odd-sized writes: chunk boundaries fall inside them.
  async function * pieces (): AsyncGenerator<Buffer> { for (let o = 0; o < data.length; o += 1000) yield data.subarray(o, o + 1000) }
  t.match(await fs.writeFile('/exact.bin', pieces()), { sizeBytes: data.length, chunkCount: 2 })
  t.equal(cluster.master.count('/fs/allocate'), 2)
  t.ok((await fs.readFile('/exact.bin')).equals(data))

  t.match(await fs.writeFile('/empty', Buffer.alloc(0)), { sizeBytes: 0, chunkCount: 0 })
  t.match(await fs.writeFile('/empty-string', ''), { sizeBytes: 0, chunkCount: 0 })
  // create allocates chunk 0 ahead (one round trip fewer for small files); an empty file never uses it, and
  // complete drops it: no chunk, and no allocate call of its own.
  t.equal(cluster.master.requests.filter((r) => r.route === '/fs/allocate' && r.body.viaCreate !== true).length, 1, 'one allocate call in all: chunk 1 of /exact.bin, none for empty files')
  t.equal(cluster.master.count('/fs/commit'), 2, 'and nothing committed for them')
  t.equal((await fs.readFile('/empty')).length, 0)
  t.equal(await fs.readFile('/empty-string', 'utf8'), '')
  t.equal(await fs.readFile('/exact.bin', { encoding: 'hex' }), data.toString('hex'))
  const u8 = new Uint8Array([1, 2, 3, 4])
  await fs.writeFile('/u8', u8.subarray(1))
  t.same([...await fs.readFile('/u8')], [2, 3, 4], 'a Uint8Array view writes just its bytes')
  await fs.writeFile('/stream', Readable.from([Buffer.from('ab'), Buffer.from('cd')]))
  t.equal(await fs.readFile('/stream', 'utf8'), 'abcd')
})

t.test('a failed pipeline is retried without the failed server', async (t) => {
  const { cluster, fs } = await setup(t, 4)
  const [cs1, cs2, cs3, cs4] = cluster.chunkservers as [typeof cluster.chunkservers[0], typeof cluster.chunkservers[0], typeof cluster.chunkservers[0], typeof cluster.chunkservers[0]]
  const allocations = (): Array<Record<string, unknown>> => cluster.master.requests.filter((r) => r.route === '/fs/allocate').map((r) => r.body)

  // 1. The head refuses: the next allocation excludes it.
  cs1.putFaults = ['refuse']
  const one = pattern(1000, 11)
  await fs.writeFile('/refused.bin', one)
  t.same(allocations().map((a) => a.excludeServerIds ?? []), [[], [cs1.serverId]])
  t.ok((await fs.readFile('/refused.bin')).equals(one))

  // 2. A downstream server fails: the error names it, and it is the one excluded.
  const before = allocations().length
  cluster.master.rotation = 1   // the next pipeline is cs2 → cs3 → cs4
  cs3.putFaults = ['refuse']
  await fs.writeFile('/downstream.bin', one)
  t.same(allocations().slice(before).map((a) => a.excludeServerIds ?? []), [[], [cs3.serverId]], 'the middle server, not the head')

  // 3. The head cuts the connection mid-chunk: the resend starts from the chunk's first byte.
  const big = pattern(chunkSizeBytes + 5000, 12)
  cs4.cutAfterBytes = 20_000
  cs4.putFaults = ['cut']
  cluster.master.rotation = 3   // the next pipeline starts at cs4
  await fs.writeFile('/cut.bin', big)
  t.ok(allocations().some((a) => (a.excludeServerIds as string[] | undefined)?.includes(cs4.serverId) === true), 'the cutting head was excluded')
  t.equal(sha256(await fs.readFile('/cut.bin')), sha256(big), 'bytes intact after the resend')

  // 4. A token from before a failover (GRN_STALE_TERM): allocated again from the master of now, no server blamed.
  for (const cs of cluster.chunkservers) cs.putFaults = []
  cs1.putFaults = ['stale-term']
  cluster.master.rotation = 0
  const s0 = allocations().length
  await fs.writeFile('/stale.bin', one)
  t.same(allocations().slice(s0).map((a) => a.excludeServerIds ?? []), [[], []], 'a second allocation, excluding nobody')
  t.ok((await fs.readFile('/stale.bin')).equals(one))

  // 5. A server acks a CRC32 that is not ours: GRN_INTEGRITY, and that server is excluded.
  for (const cs of cluster.chunkservers) cs.putFaults = []
  cs2.putFaults = ['bad-crc']
  cluster.master.rotation = 0   // the next pipeline is cs1 → cs2 → cs3
  const n = allocations().length
  await fs.writeFile('/bad-ack.bin', one)
  const retried = allocations().slice(n).map((a) => a.excludeServerIds ?? [])
  t.ok(retried.some((ids) => (ids as string[]).includes(cs2.serverId)), 'the server with the wrong CRC was excluded')
})

t.test('exclusions that leave too few servers are dropped rather than failing the write', async (t) => {
  const { cluster, fs } = await setup(t, 3)
  cluster.chunkservers[0]!.putFaults = ['disk-full']
  await fs.writeFile('/tight.bin', 'abc')
  const allocations = cluster.master.requests.filter((r) => r.route === '/fs/allocate').map((r) => r.body.excludeServerIds ?? [])
  t.same(allocations, [[], [cluster.chunkservers[0]!.serverId], []], 'excluded once, refused (3 needed), retried without exclusions')
  t.equal(await fs.readFile('/tight.bin', 'utf8'), 'abc')
})

t.test('chunks are allocated in index order even when the master is briefly away', async (t) => {
  const { cluster, fs } = await setup(t)
  for (let round = 0; round < 5; round++) {
    cluster.master.failures.push({ route: '/fs/allocate', code: 'GRN_UNAVAILABLE', times: 4 })
    const data = pattern(5 * chunkSizeBytes + 3, round)
    await fs.writeFile(`/order-${round}.bin`, data)   // the fake master, like the real one, refuses holes
    t.ok((await fs.readFile(`/order-${round}.bin`)).equals(data), `round ${round}`)
  }
  const indexes = cluster.master.requests.filter((r) => r.route === '/fs/allocate' && r.body.excludeServerIds === undefined).map((r) => Number(r.body.chunkIndex))
  t.ok(indexes.every((index, i) => i === 0 || index >= (indexes[i - 1] as number) || index === 0), 'first allocations never skip ahead')
})

t.test('a pipeline that keeps failing ends in GRN_DEADLINE_EXCEEDED and the file is abandoned', async (t) => {
  const { cluster, fs } = await setup(t, 3, { deadlineMs: 300 })
  for (const cs of cluster.chunkservers) cs.putFaults = Array(1000).fill('refuse')
  const err = await fs.writeFile('/doomed.bin', pattern(5000)).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  t.match(err.details, { lastCode: 'GRN_REPLICA_FAILED' })
  t.equal(cluster.master.count('/fs/abandon'), 1, 'the unfinished file was abandoned')
  t.equal(cluster.master.count('/fs/complete'), 0)
  t.equal(await codeOf(fs.stat('/doomed.bin')), 'GRN_NOT_FOUND')
})

t.test('at most chunksInFlightMax chunks are buffered while the pipeline is slow', async (t) => {
  const { cluster, fs } = await setup(t, 1, { replication: 1 })
  let release: () => void = () => {}
  cluster.chunkservers[0]!.holdPuts = new Promise<void>((resolve) => { release = resolve })
  const data = pattern(8 * chunkSizeBytes, 5)
  const stream = fs.createWriteStream('/slow.bin')
  const done = pipeline(Readable.from((function * () { for (let o = 0; o < data.length; o += 4096) yield data.subarray(o, o + 4096) })()), stream)
  await sleep(300)
  t.ok(stream.bytesWritten > 0, 'writing started')
  t.ok(stream.bytesWritten <= chunksInFlightMax * chunkSizeBytes, `${stream.bytesWritten} bytes buffered, at most ${chunksInFlightMax} chunks`)
  t.equal(cluster.master.count('/fs/allocate'), chunksInFlightMax, 'only the in-flight chunks were allocated')
  cluster.chunkservers[0]!.holdPuts = undefined
  release()
  await done
  t.equal(stream.stat?.sizeBytes, data.length)
  t.ok((await fs.readFile('/slow.bin')).equals(data))
})

t.test('destroying a write abandons it; the lease is renewed while a slow writer holds it', async (t) => {
  const { cluster, fs } = await setup(t)
  const stream = fs.createWriteStream('/broken.bin')
  stream.write(pattern(100))
  await sleep(50)
  const failed = new Promise((resolve) => stream.once('error', resolve))
  const closed = new Promise((resolve) => stream.once('close', resolve))
  stream.destroy(new Error('the source went away'))
  t.match(await failed, { message: 'the source went away' }, 'the stream fails with the cause it was given')
  await closed
  t.equal(cluster.master.count('/fs/abandon'), 1)
  t.equal(await codeOf(fs.stat('/broken.bin')), 'GRN_NOT_FOUND')

  cluster.master.leaseTtlMs = 300
  const slow = fs.createWriteStream('/slow-writer.bin')
  slow.write('a')
  await sleep(700)
  slow.end('b')
  await new Promise((resolve, reject) => { slow.once('finish', resolve); slow.once('error', reject) })
  t.ok(cluster.master.count('/fs/renew') >= 2, `renewed ${cluster.master.count('/fs/renew')} times`)
  t.equal(await fs.readFile('/slow-writer.bin', 'utf8'), 'ab')
})

t.test('overwrite replaces atomically; without it an existing file is refused; parents are made', async (t) => {
  const { fs } = await setup(t)
  await fs.writeFile('/f', 'first')
  t.equal(await fs.readFile('/f', 'utf8'), 'first')   // now cached
  t.equal(await codeOf(fs.writeFile('/f', 'second')), 'GRN_EXISTS')
  await fs.writeFile('/f', 'second', { overwrite: true })
  t.equal(await fs.readFile('/f', 'utf8'), 'second', 'the cache did not serve the old file')
  t.equal((await fs.writeFile('/new/parents/file', 'x')).path, '/new/parents/file', 'missing parents are made (like HDFS create)')
  t.equal((await fs.stat('/new/parents')).type, 'dir')
  t.equal(await codeOf(fs.writeFile('/other/file', 'x', { parents: false })), 'GRN_NOT_FOUND', 'unless parents: false')
  t.equal(await codeOf(fs.writeFile('/f/below-a-file', 'x')), 'GRN_NOT_DIR', 'a file is not a parent')
  t.throws(() => fs.createWriteStream('/g', { replication: 9 }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => fs.createWriteStream('/g', { chunkSizeBytes: 1000 }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => fs.createWriteStream('g'), { code: 'GRN_INVALID_PATH' })
  const controller = new AbortController()
  const aborted = fs.writeFile('/h', (async function * () { yield Buffer.from('x'); await sleep(5000, undefined, { signal: controller.signal }).catch(() => {}); yield Buffer.from('y') })(), { signal: controller.signal })
  setTimeout(() => { controller.abort() }, 50)
  t.equal(await codeOf(aborted), 'GRN_ABORTED')
})

// onBufferReleased lets a producer refill its Buffers (client/buffer-pool.ts; the CLI's put). Each Buffer must
// come back only once every chunk holding a part of it is committed: a pipeline cut mid-chunk resends from the
// kept Buffers. The producer here poisons each Buffer the moment it comes back, before refilling it from the
// pool, and its pieces straddle chunk boundaries: a Buffer given back after its first chunk's commit but while
// its second chunk is resent would reach a chunkserver as 0xEE bytes (GRN_INTEGRITY, then a failed write) or
// read back wrong.
t.test('onBufferReleased gives a Buffer back only after every chunk holding it is committed, across resends', async (t) => {
  const { cluster, fs } = await setup(t, 4)
  const pieceBytes = 24 * 1024   // not a divisor of the 64 KiB chunk: pieces straddle chunk boundaries
  const pool = new BufferPool(pieceBytes, 8)
  const data = pattern(24 * chunkSizeBytes + 777, 21)
  const [cs1, , cs3] = cluster.chunkservers
  cs1!.cutAfterBytes = 20_000
  cs1!.putFaults = ['cut']
  cs3!.cutAfterBytes = 40_000
  cs3!.putFaults = ['refuse', 'cut']
  const ranges = new Map<Buffer, { start: number, end: number }>()
  const early: string[] = []
  let released = 0
  const committed = (chunkIndex: number): boolean => cluster.master.requests.some((r) => r.route === '/fs/commit' && r.body.chunkIndex === chunkIndex)
  async function * source (): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < data.length; offset += pieceBytes) {
      const piece = pool.take()
      const length = data.copy(piece, 0, offset, offset + pieceBytes)
      const view = length === pieceBytes ? piece : piece.subarray(0, length)
      ranges.set(view, { start: offset, end: offset + length })
      yield view
    }
  }
  const stream = fs.createWriteStream('/pooled.bin', {
    highWaterMark: pieceBytes,   // the producer waits on the stream (else the whole file would sit in its queue)
    onBufferReleased: (buffer) => {
      const range = ranges.get(buffer)
      if (range === undefined) { early.push('a Buffer that was never written'); return }
      ranges.delete(buffer)
      for (let chunk = Math.floor(range.start / chunkSizeBytes); chunk <= Math.floor((range.end - 1) / chunkSizeBytes); chunk++) {
        if (!committed(chunk)) early.push(`bytes ${range.start}..${range.end} before chunk ${chunk} was committed`)
      }
      released++
      buffer.fill(0xee)
      pool.give(buffer)
    },
  })
  await pipeline(source(), stream)
  t.same(early, [], 'no Buffer came back before all its chunks were committed')
  t.equal(ranges.size, 0, 'every Buffer came back once the write finished')
  t.equal(released, Math.ceil(data.length / pieceBytes), 'each exactly once')
  t.ok(pool.reusedCount > 0, `the pool lent Buffers again (${pool.reusedCount} times), so reuse was tested`)
  const excluded = cluster.master.requests.filter((r) => r.route === '/fs/allocate' && Array.isArray(r.body.excludeServerIds) && (r.body.excludeServerIds as string[]).length > 0)
  t.ok(excluded.length >= 2, `pipelines failed and chunks were resent (${excluded.length} re-allocations)`)
  t.equal(sha256(await fs.readFile('/pooled.bin')), sha256(data), 'and the file reads back byte-identical')
})

t.test('a failed write gives back the Buffers its chunks held, each once', async (t) => {
  const { cluster, fs } = await setup(t, 3, { deadlineMs: 300 })
  for (const cs of cluster.chunkservers) cs.putFaults = Array(1000).fill('refuse')
  const pool = new BufferPool(16 * 1024, 16)
  const given: Buffer[] = []
  const stream = fs.createWriteStream('/doomed-pool.bin', { onBufferReleased: (buffer) => { given.push(buffer); pool.give(buffer) } })
  const taken: Buffer[] = []
  async function * source (): AsyncGenerator<Buffer> {
    for (let i = 0; i < 20; i++) {
      const piece = pool.take()
      pattern(piece.length, i).copy(piece)
      taken.push(piece)
      yield piece
    }
  }
  const err = await pipeline(source(), stream).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  t.equal(new Set(given).size, given.length, 'no Buffer was given back twice (BufferPool.give would also throw)')
  t.ok(given.every((buffer) => taken.includes(buffer)), 'only Buffers the producer wrote')
  t.ok(given.length > 0, `the Buffers of the failed chunks came back (${given.length})`)
})

// writeFile writes bytes in hand (a Buffer, a Uint8Array, a string) straight into its write stream and ends it,
// without stream.pipeline: the same file, the same stat, and a failure still rejects. Data of another type is
// refused before anything reaches the master.
t.test('writeFile of bytes in hand: each kind of data, a failing write, and data it cannot take', async (t) => {
  const { cluster, fs } = await setup(t)
  const data = pattern(chunkSizeBytes + 100)
  const kinds: Array<[string, Buffer | Uint8Array | string]> = [['buffer', data], ['uint8array', new Uint8Array(data)], ['string', 'héllo']]
  for (const [kind, value] of kinds) {
    const stat = await fs.writeFile(`/${kind}`, value)
    const expected = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value)
    t.equal(stat.sizeBytes, expected.length, `${kind}: the stat has the size`)
    t.equal(sha256(await fs.readFile(`/${kind}`)), sha256(expected), `${kind}: the same bytes back`)
  }
  t.equal((await fs.writeFile('/empty', '')).sizeBytes, 0, 'an empty string makes an empty file')
  t.equal(await codeOf(fs.writeFile('/buffer', data)), 'GRN_EXISTS', 'a failing write rejects')
  const creates = cluster.master.requests.filter((r) => r.route === '/fs/create').length
  for (const bad of [42, null, { not: 'bytes' }]) {
    t.equal(await codeOf(fs.writeFile('/bad', bad as unknown as string)), 'GRN_INVALID_ARGUMENT', `${JSON.stringify(bad)} is refused`)
  }
  t.equal(cluster.master.requests.filter((r) => r.route === '/fs/create').length, creates, 'nothing reached the master for refused data')
})
