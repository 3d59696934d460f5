// Proves the target side of re-replication against a stand-in source (node:http): a good copy is written,
// indexed and announced ('added') with the bytes intact; a copy whose whole-chunk CRC differs from the
// master's, or that comes up short, is refused and leaves no file; a failing source falls over to the next
// one; the read token from the command is what the source receives; a corrupt local copy is replaced.
// A corrupt local copy whose delete fails (EIO on a failing disk) ends the copy cleanly and logged: no
// unhandled rejection takes the server down, the source is not asked, and the next command still runs.
// A command for a copy this server already holds whole (the master lost its replica row) is answered by
// reporting that copy again ('added', as a finished copy is), not by silence; one of the wrong length is replaced.
import t from 'tap'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { ChunkReplicator } from '../../../chunkserver/replicator.js'
import { ChunkStore } from '../../../chunkserver/store.js'
import { readChunk } from '../../../chunkserver/chunk-reader.js'
import { crc32 } from '../../../shared/checksum.js'
import type { ServerId } from '../../../shared/ids.js'
import type { ReplicateCommand, StoredChunk } from '../../../shared/protocol.js'
import { chunkFiles, newHandle, quietLog, tmpFiles } from './fixtures/servers.js'

async function source (t: { teardown: (fn: () => void) => void }, respond: (url: string, token: string | undefined) => { status: number, body: Buffer }): Promise<{ url: string, tokens: string[] }> {
  const tokens: string[] = []
  const server: Server = createServer((req, res) => {
    const token = req.headers['x-granary-token'] as string | undefined
    tokens.push(token ?? '')
    const { status, body } = respond(req.url ?? '', token)
    res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': body.length })
    res.end(body)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tokens }
}

function command (data: Buffer, urls: string[], over: Partial<ReplicateCommand> = {}): ReplicateCommand {
  return {
    type: 'replicate', chunkHandle: newHandle(), version: 3, lengthBytes: data.length, crc32: crc32(data),
    sources: urls.map((url, i) => ({ serverId: `cs-00000000000${i}` as ServerId, url })), token: 'read-token', ...over
  }
}

async function run (store: ChunkStore, cmd: ReplicateCommand, log = quietLog): Promise<void> {
  const replicator = new ChunkReplicator({ store, syncEveryBytes: 1024 * 1024, log })
  replicator.enqueue(cmd)
  await replicator.stop()   // waits for the running copy
}

async function readAll (store: ChunkStore, cmd: ReplicateCommand): Promise<Buffer> {
  const read = await readChunk(store, quietLog, cmd.chunkHandle, cmd.version, { offsetBytes: 0, lengthBytes: null })
  const pieces: Buffer[] = []
  for await (const piece of read.body ?? []) pieces.push(piece as Buffer)
  return Buffer.concat(pieces)
}

t.test('copies, checks, falls over, refuses bad copies', async (t) => {
  const dataDir = t.testdir()
  const store = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  const added: StoredChunk[] = []
  store.onChange((event, chunk) => { if (event === 'added') added.push(chunk) })
  const data = randomBytes(300 * 1024 + 17)
  const good = await source(t, () => ({ status: 200, body: data }))
  const broken = await source(t, () => ({ status: 502, body: Buffer.from('{"code":"GRN_CHECKSUM_MISMATCH"}') }))
  const short = await source(t, () => ({ status: 200, body: data.subarray(0, 1000) }))

  const ok = command(data, [good.url])
  await run(store, ok)
  t.same(store.get(ok.chunkHandle), { chunkHandle: ok.chunkHandle, version: 3, lengthBytes: data.length, crc32: crc32(data) })
  t.ok((await readAll(store, ok)).equals(data), 'the copy reads back verified and identical')
  t.same(added.map((c) => c.chunkHandle), [ok.chunkHandle], 'announced for the next heartbeat')
  t.same(good.tokens, ['read-token'], 'the command\'s read token is sent to the source')

  const wrongCrc = command(data, [good.url], { crc32: (crc32(data) + 1) >>> 0 })
  await run(store, wrongCrc)
  t.equal(store.get(wrongCrc.chunkHandle), undefined, 'a CRC different from the master\'s is refused')

  const truncated = command(data, [short.url])
  await run(store, truncated)
  t.equal(store.get(truncated.chunkHandle), undefined, 'a short copy is refused')

  const fallover = command(data, [broken.url, good.url])
  await run(store, fallover)
  t.ok((await readAll(store, fallover)).equals(data), 'a failing source falls over to the next')

  t.same(tmpFiles(dataDir), [], 'no temp file left behind')
  t.equal(chunkFiles(dataDir).length, 2, 'only the two good copies are on disk')

  store.noteCorrupt(ok.chunkHandle, ok.version)
  const again = command(data, [good.url], { chunkHandle: ok.chunkHandle })
  await run(store, again)
  t.same(store.corruptChunks(), [], 'the corrupt local copy was deleted ...')
  t.ok((await readAll(store, again)).equals(data), '... and replaced by a good one')
})

// A pino logger whose lines are kept, parsed, for the test to assert on fields.
function recordingLog (): { log: typeof quietLog, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  return { log: pino({ level: 'info' }, sink), lines }
}

t.test('a corrupt copy that cannot be deleted (EIO) fails the copy cleanly', async (t) => {
  const dataDir = t.testdir()
  const store = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  const data = randomBytes(100 * 1024 + 3)
  const good = await source(t, () => ({ status: 200, body: data }))
  const first = command(data, [good.url])
  await run(store, first)
  store.noteCorrupt(first.chunkHandle, first.version)
  const askedBefore = good.tokens.length

  // The disk starts failing: unlink answers EIO, which store.delete rethrows (only ENOENT is ignored).
  const realDelete = store.delete.bind(store)
  let deleteCalls = 0
  store.delete = async () => {
    deleteCalls++
    throw Object.assign(new Error('EIO: i/o error, unlink'), { code: 'EIO', errno: -5, syscall: 'unlink' })
  }
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => { rejections.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })

  const { log, lines } = recordingLog()
  let copiedCount = 0
  const replicator = new ChunkReplicator({ store, syncEveryBytes: 1024 * 1024, log, onCopied: () => { copiedCount++ } })
  replicator.enqueue(command(data, [good.url], { chunkHandle: first.chunkHandle }))
  // The copy is still running in the background when enqueue returns; let a few turns pass so a rejection
  // from it would surface as unhandled before stop() waits for it.
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))

  // The replicator is not wedged: the next command, for another chunk, is copied.
  store.delete = realDelete
  const next = command(data, [good.url])
  replicator.enqueue(next)
  await replicator.stop()
  await new Promise((resolve) => setImmediate(resolve))

  t.same(rejections, [], 'no unhandled rejection')
  t.equal(deleteCalls, 1, 'the corrupt copy\'s delete was tried once')
  t.equal(good.tokens.length, askedBefore + 1, 'the source was not asked for the chunk whose old copy could not go')
  const failed = lines.find((l) => l.msg === 'corrupt replica not deleted; copy abandoned')
  t.match(failed, { level: 50, chunkHandle: first.chunkHandle, version: first.version, code: 'EIO' }, 'the failure is logged with its code')
  t.ok((await readAll(store, next)).equals(data), 'the next command is copied')
  t.equal(copiedCount, 1, 'only that copy is reported as copied')
  t.same(tmpFiles(dataDir), [], 'no temp file left behind')
})

t.test('a command for a good copy already held reports it again, like a finished copy', async (t) => {
  const dataDir = t.testdir()
  const store = await ChunkStore.open({ dataDir, capacityBytes: 0, log: quietLog })
  const data = randomBytes(64 * 1024 + 5)
  const good = await source(t, () => ({ status: 200, body: data }))
  const held = command(data, [good.url])
  await run(store, held)
  const added: StoredChunk[] = []
  store.onChange((event, chunk) => { if (event === 'added') added.push(chunk) })
  const askedBefore = good.tokens.length

  let copiedCount = 0
  const replicator = new ChunkReplicator({ store, syncEveryBytes: 1024 * 1024, log: quietLog, onCopied: () => { copiedCount++ } })
  replicator.enqueue({ ...held, token: 'another-read-token' })
  await replicator.stop()
  t.same(added, [{ chunkHandle: held.chunkHandle, version: held.version, lengthBytes: data.length, crc32: crc32(data) }], 'the held copy is announced for the next heartbeat')
  t.equal(copiedCount, 1, 'and the heartbeat is asked to go at once, as after a copy')
  t.equal(good.tokens.length, askedBefore, 'nothing is fetched: the copy here is good')
  t.equal(chunkFiles(dataDir).length, 1)

  // Same version, but not the length the master committed: not a good copy, so it is replaced.
  const longer = Buffer.concat([data, randomBytes(100)])
  const other = await source(t, () => ({ status: 200, body: longer }))
  added.length = 0
  await run(store, command(longer, [other.url], { chunkHandle: held.chunkHandle }))
  t.same(store.get(held.chunkHandle), { chunkHandle: held.chunkHandle, version: held.version, lengthBytes: longer.length, crc32: crc32(longer) }, 'a copy of the wrong length is replaced')
  t.same(added.map((c) => c.lengthBytes), [longer.length], 'and the new copy announced')

  // Same version and length, other bytes (not the CRC the master committed): replaced too.
  const same = randomBytes(longer.length)
  const third = await source(t, () => ({ status: 200, body: same }))
  await run(store, command(same, [third.url], { chunkHandle: held.chunkHandle }))
  t.same(store.get(held.chunkHandle), { chunkHandle: held.chunkHandle, version: held.version, lengthBytes: same.length, crc32: crc32(same) }, 'a copy of the wrong CRC is replaced')
})
