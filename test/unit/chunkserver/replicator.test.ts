// Proves the target side of re-replication against a stand-in source (node:http): a good copy is written,
// indexed and announced ('added') with the bytes intact; a copy whose whole-chunk CRC differs from the
// master's, or that comes up short, is refused and leaves no file; a failing source falls over to the next
// one; the read token from the command is what the source receives; a corrupt local copy is replaced.
import t from 'tap'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { randomBytes } from 'node:crypto'
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

async function run (store: ChunkStore, cmd: ReplicateCommand): Promise<void> {
  const replicator = new ChunkReplicator({ store, syncEveryBytes: 1024 * 1024, log: quietLog })
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
  t.same(store.get(ok.chunkHandle), { chunkHandle: ok.chunkHandle, version: 3, lengthBytes: data.length })
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
