// Proves the read path against fake chunkservers: a replica that cuts the stream, answers
// GRN_CHECKSUM_MISMATCH or ends short is left for the next replica, which takes over at the exact byte reached
// (bytes checked by sha256); a whole chunk whose CRC32 does not match is re-read elsewhere by readFile and
// fails a plain stream with GRN_INTEGRITY; ranges at and across chunk boundaries give exactly fs semantics;
// reads pull chunk by chunk (backpressure), and open() metadata is cached.
import t, { type Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import diagnosticsChannel from 'node:diagnostics_channel'
import { channelNames } from '../../../client/diagnostics.js'
import type { GranaryError } from '../../../shared/errors.js'
import { connect, type GranaryClient } from '../../../client/index.js'
import { startFakeCluster, type FakeChunkserver } from './fake-cluster.js'
import { clientOptions, chunkSizeBytes, pattern, codeOf, sha256 } from './helpers.js'

const C = chunkSizeBytes
const data = pattern(3 * C + C / 2, 3)

async function setup (t: Test, extra: Record<string, unknown> = {}) {
  const cluster = await startFakeCluster(3)
  const fs = connect(clientOptions(cluster.master.url, extra))
  t.teardown(async () => { await fs.close(); await cluster.stop() })
  await fs.writeFile('/file.bin', data)
  // replicas(i)[k]: the k-th replica the client will try for chunk i.
  const replicas = (chunkIndex: number): FakeChunkserver[] => {
    const chunk = cluster.master.entries.get('/file.bin')?.chunks[chunkIndex]
    return (chunk?.replicas ?? []).map((r) => cluster.chunkservers.find((cs) => cs.serverId === r.serverId) as FakeChunkserver)
  }
  return { cluster, fs, replicas }
}

async function readAll (fs: GranaryClient, path: string, options = {}): Promise<Buffer> {
  return Buffer.concat(await fs.createReadStream(path, options).toArray())
}

t.test('gray replicas: one that never answers is raced by the next; one that stalls mid-body is left at the exact byte', async (t) => {
  const { cluster, fs, replicas } = await setup(t, { requestTimeoutMs: 5_000 })
  const chunks = cluster.master.entries.get('/file.bin')?.chunks ?? []
  const hung = chunks[0]?.chunkHandle as string
  const [hungFirst, hungSecond] = replicas(0) as [FakeChunkserver, FakeChunkserver]
  // The stalling replica on another server: once raced as hung, a server is asked last for a while.
  const stallIndex = [2, 1, 3].find((i) => replicas(i)[0] !== hungFirst)
  t.ok(stallIndex !== undefined, 'a chunk whose first replica is another server')
  const stalled = chunks[stallIndex as number]?.chunkHandle as string
  const stallFirst = replicas(stallIndex as number)[0] as FakeChunkserver
  hungFirst.getFaultsFor.set(hung, ['hang'])
  stallFirst.cutAfterBytes = 20_000
  stallFirst.getFaultsFor.set(stalled, ['stall'])
  const startedMs = performance.now()
  t.equal(sha256(await readAll(fs, '/file.bin')), sha256(data), 'the right bytes')
  const tookMs = performance.now() - startedMs
  t.ok(tookMs < 5_000, `read in ${Math.round(tookMs)} ms: within the hedge delay and the stall bound, not at the 5 s request timeout`)
  t.ok(hungSecond.gets.some((g) => g.chunkHandle === hung && g.offset === 0), 'the hung replica was raced from the start of the chunk')
  // Taken over by another replica (the second, or the third when the second is the server raced as hung).
  const resumed = cluster.chunkservers.filter((cs) => cs !== stallFirst).flatMap((cs) => cs.gets).find((g) => g.chunkHandle === stalled)
  t.equal(resumed?.offset, 20_000, 'the stalled replica was left at the exact byte it reached')
})

// The chunk hedge tells a hung server (nothing to this client since the request went out: raced after
// chunkHedgeDelayMs) from a busy one (sending this client other bytes meanwhile: the request waits in the
// client's own queue, raced only after chunkHedgeWaitMsMax). Which rule fired is in the hedge's message.
t.test('chunk hedge: a server silent since it was asked is raced as hung; one sending other reads their bytes is not', async (t) => {
  const { cluster, fs, replicas } = await setup(t, { requestTimeoutMs: 5_000 })
  await fs.writeFile('/slow.bin', data.subarray(0, 64 * 1024))
  const chunks = cluster.master.entries.get('/file.bin')?.chunks ?? []
  const hedges: Array<{ from: string, message: string }> = []
  const onFailover = (message: unknown): void => {
    const m = message as { code?: string, from: string, message: string }
    if (m.code === 'GRN_HEDGE') hedges.push(m)
  }
  diagnosticsChannel.subscribe(channelNames.failover, onFailover)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, onFailover) })

  // Hung: every GET to the first replica of chunk 0 is taken and never answered, so it sends this client nothing.
  const hung = replicas(0)[0] as FakeChunkserver
  for (const chunk of chunks) hung.getFaultsFor.set(chunk.chunkHandle, Array(10).fill('hang'))
  t.equal(sha256(await readAll(fs, '/file.bin')), sha256(data), 'the right bytes, from the other replicas')
  const fromHung = hedges.filter((h) => h.from === hung.url)
  t.ok(fromHung.length >= 1, 'the hung server\'s reads were raced')
  t.ok(fromHung.every((h) => /nothing from its server since/.test(h.message)), `raced as hung, not after the busy bound: ${JSON.stringify(fromHung.map((h) => h.message))}`)
  for (const chunk of chunks) hung.getFaultsFor.delete(chunk.chunkHandle)

  // Raced as hung, that server is now asked last: reading again costs no hedge.
  hedges.length = 0
  t.equal(sha256(await readAll(fs, '/file.bin')), sha256(data), 'read again')
  t.same(hedges, [], 'no hedge: the hung server is asked after the others for a while')

  // Busy (a new client: this one remembers the server above as hung): the first replica of /slow.bin's chunk
  // trickles it to this client while the same server holds a chunk-0 read of /file.bin unanswered: that read
  // is raced only by the busy bound.
  const fresh = connect(clientOptions(cluster.master.url, { requestTimeoutMs: 5_000 }))
  t.teardown(async () => { await fresh.close() })
  hedges.length = 0
  const slowChunk = cluster.master.entries.get('/slow.bin')?.chunks[0]
  const slowFirst = cluster.chunkservers.find((cs) => cs.serverId === slowChunk?.replicas[0]?.serverId) as FakeChunkserver
  slowFirst.trickleEveryMs = 5
  slowFirst.getFaultsFor.set(slowChunk?.chunkHandle as string, ['trickle'])   // 64 pieces, 5 ms apart: ~320 ms+ of bytes
  const chunkOnBusy = chunks.find((chunk) => chunk.replicas[0]?.serverId === slowFirst.serverId)
  t.ok(chunkOnBusy !== undefined, 'a chunk of /file.bin is first asked of the same server')
  slowFirst.getFaultsFor.set(chunkOnBusy?.chunkHandle as string, ['hang'])
  const trickled = readAll(fresh, '/slow.bin')
  await new Promise<void>((resolve) => { const check = (): void => { if (slowFirst.gets.some((g) => g.chunkHandle === slowChunk?.chunkHandle)) resolve(); else setImmediate(check) }; check() })
  const [slow, whole] = await Promise.all([trickled, readAll(fresh, '/file.bin')])
  t.equal(sha256(slow), sha256(data.subarray(0, 64 * 1024)), 'the trickled file whole')
  t.equal(sha256(whole), sha256(data), 'the other file whole')
  const fromBusy = hedges.filter((h) => h.from === slowFirst.url)
  t.ok(fromBusy.length >= 1, 'the unanswered read was raced in the end')
  t.ok(fromBusy.every((h) => /its server busy with other reads/.test(h.message)), `raced by the busy bound, not as hung: ${JSON.stringify(fromBusy.map((h) => h.message))}`)
})

t.test('a replica that cuts the stream: the next one continues from the exact byte', async (t) => {
  const { cluster, fs, replicas } = await setup(t)
  const handle = cluster.master.entries.get('/file.bin')?.chunks[1]?.chunkHandle as string
  const [first, second] = replicas(1) as [FakeChunkserver, FakeChunkserver]
  first.cutAfterBytes = 10_000
  first.getFaultsFor.set(handle, ['cut'])
  t.equal(sha256(await readAll(fs, '/file.bin')), sha256(data))
  const resumed = second.gets.find((g) => g.chunkHandle === handle)
    t.equal((resumed?.offset ?? 0) + (resumed?.length ?? 0), C, 'up to the end of the chunk')
  t.ok((resumed?.offset ?? 0) > 0 && (resumed?.offset ?? 0) <= 10_000, 'from the byte the first replica reached, not from 0')
})

t.test('GRN_CHECKSUM_MISMATCH, a short body or a refusal send the read to the next replica', async (t) => {
  const { cluster, fs, replicas } = await setup(t)
  const handle = (i: number): string => cluster.master.entries.get('/file.bin')?.chunks[i]?.chunkHandle as string
  replicas(0)[0]!.getFaultsFor.set(handle(0), ['checksum'])
  replicas(2)[0]!.getFaultsFor.set(handle(2), ['short'])
  replicas(3)[0]!.getFaultsFor.set(handle(3), ['refuse'])
  replicas(3)[1]!.getFaultsFor.set(handle(3), ['checksum'])
  t.equal(sha256(await readAll(fs, '/file.bin')), sha256(data))
  t.same(replicas(3).map((cs) => cs.gets.filter((g) => g.chunkHandle === handle(3)).length), [1, 1, 1], 'chunk 3 tried on each replica once, served by the third')
})

t.test('a whole chunk with the wrong CRC32: readFile re-reads it elsewhere; a stream fails', async (t) => {
  const { cluster, fs, replicas } = await setup(t)
  const handle = cluster.master.entries.get('/file.bin')?.chunks[1]?.chunkHandle as string
  replicas(1)[0]!.getFaultsFor.set(handle, ['corrupt'])
  t.equal(sha256(await fs.readFile('/file.bin')), sha256(data), 'readFile held the chunk and took it from the next replica')
  t.equal(replicas(1)[1]!.gets.filter((g) => g.chunkHandle === handle).length, 1, 'the chunk was re-read from the second replica')
  replicas(1)[0]!.getFaultsFor.set(handle, ['corrupt'])
  const err = await readAll(fs, '/file.bin').catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_INTEGRITY', 'bytes already given out cannot be taken back: the stream fails')
})

t.test('when every replica fails the read ends within its budget, after re-opening the file', async (t) => {
  const { cluster, fs, replicas } = await setup(t, { deadlineMs: 300 })
  for (const cs of replicas(0)) cs.getFaults = Array(1000).fill('refuse')
  const opensBefore = cluster.master.count('/fs/open')
  const err = await readAll(fs, '/file.bin').catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  // Refusals are GRN_UNAVAILABLE; on a loaded machine the last attempt may instead be cut by the 300 ms budget.
  t.match(err.details, { lastCode: /^GRN_(UNAVAILABLE|TIMEOUT)$/ })
  t.ok(cluster.master.count('/fs/open') > opensBefore, 'fresh metadata was fetched between rounds')
})

t.test('ranges at and across chunk boundaries', async (t) => {
  const { fs, cluster } = await setup(t)
  const size = data.length
  const cases: Array<[number, number]> = [
    [0, 0], [0, C - 1], [C - 1, C - 1], [C - 1, C], [C, C], [C, 2 * C - 1], [C - 5, 3 * C + 5],
    [3 * C, size - 1], [size - 1, size - 1], [size - 1, size + 100], [size, size + 10], [size + 5, size + 10], [2 * C + 7, 3 * C - 1],
  ]
  for (const [start, end] of cases) {
    const got = await readAll(fs, '/file.bin', { start, end })
    t.ok(got.equals(data.subarray(start, end + 1)), `[${start}, ${end}] gives ${Math.max(0, Math.min(end + 1, size) - start)} bytes`)
  }
  t.ok((await readAll(fs, '/file.bin', { start: 100 })).equals(data.subarray(100)), 'start only')
  t.ok((await readAll(fs, '/file.bin', { end: 99 })).equals(data.subarray(0, 100)), 'end only')
  const gets = cluster.chunkservers.flatMap((cs) => cs.gets)
  t.ok(gets.some((g) => g.offset === 0 && g.length === C), 'a whole chunk is fetched in one GET')
  t.ok(gets.some((g) => g.offset === C - 1 && g.length === 1), 'the last byte of a chunk alone')
  t.ok(gets.every((g) => g.length > 0), 'no empty GETs')
  t.equal(cluster.master.count('/fs/open'), 1, 'open() metadata was cached across all these reads')
  t.throws(() => fs.createReadStream('/file.bin', { start: 10, end: 5 }), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => fs.createReadStream('/file.bin', { start: -1 }), { code: 'GRN_INVALID_ARGUMENT' })
})

t.test('reads pull chunk by chunk with backpressure; errors and aborts have codes', async (t) => {
  const { fs, cluster } = await setup(t)
  const big = pattern(8 * C, 9)
  await fs.writeFile('/big.bin', big)
  const getsBefore = cluster.chunkservers.flatMap((cs) => cs.gets).length
  const stream = fs.createReadStream('/big.bin', { highWaterMark: 16 * 1024 })
  const first = await new Promise<Buffer>((resolve) => stream.once('data', (piece: Buffer) => { stream.pause(); resolve(piece) }))
  t.ok(first.length > 0)
  await sleep(200)
  const fetched = cluster.chunkservers.flatMap((cs) => cs.gets).length - getsBefore
  t.ok(fetched <= 2, `a paused reader fetched ${fetched} chunk(s) of 8, not the whole file`)
  stream.destroy()

  t.equal(await codeOf(fs.readFile('/nope')), 'GRN_NOT_FOUND')
  t.equal(await codeOf(fs.readFile('/')), 'GRN_IS_DIR')
  const controller = new AbortController()
  const aborted = fs.createReadStream('/big.bin', { signal: controller.signal, highWaterMark: 1024 })
  aborted.once('data', () => { controller.abort() })
  t.equal(await codeOf(aborted.toArray()), 'GRN_ABORTED')
})
