// Proves a stale replica is deleted and never served: chunk 0 of a file is written at version 1 to three
// chunkservers, the first of them is SIGKILLed with its copy on disk, and the writer re-allocates the chunk
// (version 2) on the other servers, writes different bytes and completes the file. When the killed server
// returns and reports its version-1 copy, the master tells it to delete it; meanwhile no open reply names
// that server for the chunk, and the file reads back as version 2's bytes.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'
import type { AllocateReply, CreateReply, OpenReply, WriteChunkReply } from '../../shared/protocol.js'

const KiB = 1024
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function post<T> (url: string, body: unknown): Promise<T> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const json = await res.body.json() as T
  if (res.statusCode !== 200) throw new Error(`${url}: ${res.statusCode} ${JSON.stringify(json)}`)
  return json
}

async function putChunk (allocated: AllocateReply, data: Buffer): Promise<WriteChunkReply> {
  const [first, ...rest] = allocated.pipeline
  const res = await request(`${first?.url ?? ''}/chunks/${allocated.chunkHandle}?version=${allocated.version}`, {
    method: 'PUT', body: data,
    headers: { 'content-type': 'application/octet-stream', 'x-granary-token': allocated.token, 'x-granary-pipeline': rest.map((s) => s.url).join(',') }
  })
  const json = await res.body.json() as WriteChunkReply
  if (res.statusCode !== 200) throw new Error(`PUT ${res.statusCode} ${JSON.stringify(json)}`)
  return json
}

t.test('a returning server\'s older version is deleted and never served', async (t) => {
  const cluster = await startCluster({ chunkservers: 4, test: t })
  const master = cluster.master.url
  await post(`${master}/fs/mkdir`, { path: '/stale' })
  const created = await post<CreateReply>(`${master}/fs/create`, { path: '/stale/f.bin', replication: 3, chunkSizeBytes: 64 * KiB })
  const v1 = await post<AllocateReply>(`${master}/fs/allocate`, { inodeId: created.inodeId, leaseId: created.leaseId, chunkIndex: 0 })
  const old = randomBytes(60 * KiB)
  await putChunk(v1, old)
  const victimIndex = cluster.chunkservers.findIndex((cs) => cs.url === v1.pipeline[0]?.url)
  const victim = cluster.chunkservers[victimIndex]
  if (victim === undefined) { t.fail('no victim'); return }
  t.equal(cluster.chunkFiles(victimIndex, v1.chunkHandle).length, 1, 'the victim stored version 1')
  await victim.kill()

  const victimId = v1.pipeline[0]?.serverId
  const v2 = await post<AllocateReply>(`${master}/fs/allocate`, { inodeId: created.inodeId, leaseId: created.leaseId, chunkIndex: 0, excludeServerIds: [victimId] })
  t.equal(v2.chunkHandle, v1.chunkHandle, 'same chunk handle')
  t.equal(v2.version, 2, 'a new version')
  t.notOk(v2.pipeline.some((s) => s.serverId === victimId), 'the new pipeline avoids the killed server')
  const fresh = randomBytes(60 * KiB)
  const acks = await putChunk(v2, fresh)
  await post(`${master}/fs/commit`, {
    inodeId: created.inodeId, leaseId: created.leaseId, chunkIndex: 0, chunkHandle: v2.chunkHandle, version: 2,
    lengthBytes: fresh.length, crc32: acks.replicas[0]?.crc32, serverIds: acks.replicas.map((r) => r.serverId)
  })
  await post(`${master}/fs/complete`, { inodeId: created.inodeId, leaseId: created.leaseId, sizeBytes: fresh.length, chunkCount: 1 })

  // Checked before the restart: once the server is up, the master may delete the stale copy before any look
  // at the disk (it has, ~0.4 s after the ready line on a busy machine).
  t.ok(cluster.chunkFiles(victimIndex, v1.chunkHandle).some((f) => f.endsWith('_1.chunk')), 'the stale copy is on the dead server\'s disk')
  await victim.start()
  const open = await (await request(`${master}/fs/open?path=/stale/f.bin`)).body.json() as OpenReply
  t.notOk(open.chunks[0]?.replicas.some((r) => r.serverId === victimId), 'the open reply never names the stale holder')
  await cluster.waitFor(() => cluster.chunkFiles(victimIndex, v1.chunkHandle).length === 0, { timeoutMs: 30_000, what: 'the stale replica deleted' })
  t.pass('the stale version-1 replica was deleted')
  const fs = cluster.client()
  t.equal(sha256(await fs.readFile('/stale/f.bin')), sha256(fresh), 'the file reads as version 2')
  const reopened = await (await request(`${master}/fs/open?path=/stale/f.bin`)).body.json() as OpenReply
  t.equal(reopened.chunks[0]?.version, 2)
  t.notOk(reopened.chunks[0]?.replicas.some((r) => r.serverId === victimId), 'still never named')
})
