// Proves bit rot is caught and repaired: a byte flipped in one replica is refused by that chunkserver's
// block CRC, the client reads the right bytes from another replica, the chunkserver reports the replica
// corrupt in its heartbeat and the master has it replaced, so every replica on disk is byte-identical again.
// The repair is judged by the replicas the master lists and what those servers serve, wherever the copy landed.
// And the background scrubber finds rot in a chunk nobody reads, with the same repair.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster, type Cluster } from '../../testing/cluster.js'
import type { ChunkLocation, FsckReply, OpenReply } from '../../shared/protocol.js'

const KiB = 1024
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

// Every chunkserver's copy of the handle, as bytes (index → file content).
function replicaFiles (cluster: Cluster, chunkHandle: string): Buffer[] {
  const out: Buffer[] = []
  for (let i = 0; i < cluster.chunkservers.length; i++) for (const file of cluster.chunkFiles(i, chunkHandle)) out.push(readFileSync(file))
  return out
}

// The replica set is complete again, judged by what the master says and what its servers serve, never by
// which server the copy was expected on: the master lists `replication` live replicas of the chunk's version,
// fsck finds nothing under-replicated, missing or reported corrupt, every server the master lists serves the
// chunk with the right bytes, and every replica file on disk is the good one (the rotten file is gone).
// A replica is listed only after its server has indexed the copy and reported it (the `added` delta), so a
// file renamed into place but not yet indexed (a GET there answers 404) is not taken for a finished repair.
async function replicaSetRepaired (cluster: Cluster, path: string, chunkIndex: number, good: Buffer, expected: Buffer): Promise<boolean> {
  const replicas = await listedReplicas(cluster, path, chunkIndex)
  if (replicas.length !== 3) return false
  const fsck = await getJson<FsckReply>(`${cluster.master.url}/fs/fsck?path=/`)
  if (fsck.underReplicatedChunks !== 0 || fsck.missingChunks !== 0) return false
  if ((await cluster.report()).corruptReplicas !== 0) return false
  for (const replica of replicas) {
    const served = await readReplica(replica.url, replica.chunk)
    if (served.statusCode !== 200 || sha256(served.body) !== sha256(expected)) return false
  }
  const files = replicaFiles(cluster, replicas[0]?.chunk.chunkHandle ?? '')
  return files.length === 3 && files.every((b) => b.equals(good))
}

// The live replicas the master lists for one chunk of a file, each with the chunk's location and read token.
async function listedReplicas (cluster: Cluster, path: string, chunkIndex: number): Promise<Array<{ url: string, chunk: ChunkLocation }>> {
  const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)
  const chunk = open.chunks[chunkIndex]
  if (chunk === undefined) return []
  const live = new Set((await cluster.report()).servers.filter((s) => s.alive).map((s) => s.serverId))
  return chunk.replicas.filter((r) => live.has(r.serverId)).map((r) => ({ url: r.url, chunk }))
}

async function readReplica (url: string, chunk: ChunkLocation): Promise<{ statusCode: number, body: Buffer }> {
  const res = await request(`${url}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { 'x-granary-token': chunk.token } })
  return { statusCode: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
}

t.test('a flipped byte: right bytes from another replica, and the bad replica is replaced', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * KiB, test: t, chunkserverArgs: ['--scrub-bytes-per-second', '0'] })
  const fs = cluster.client({ deadlineMs: 30_000 })
  const data = randomBytes(700 * KiB)
  await fs.writeFile('/rot/a.bin', data)
  const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=/rot/a.bin`)
  const chunk = open.chunks[1]
  t.ok(chunk !== undefined && chunk.replicas.length === 3)
  if (chunk === undefined) return
  // Rot the replica the client tries first, so the read must meet it.
  const firstUrl = chunk.replicas[0]?.url
  const corruptIndex = cluster.chunkservers.findIndex((cs) => cs.url === firstUrl)
  t.ok(corruptIndex >= 0, 'found the first replica\'s chunkserver')
  const good = readFileSync(cluster.chunkFiles(corruptIndex, chunk.chunkHandle)[0] as string)
  cluster.corruptChunkReplica({ serverIndex: corruptIndex, chunkHandle: chunk.chunkHandle, offsetBytes: 1000 })

  const direct = await request(`${firstUrl ?? ''}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { 'x-granary-token': chunk.token } })
  const body = await direct.body.json() as { code: string }
  t.equal(body.code, 'GRN_CHECKSUM_MISMATCH', 'the rotten replica refuses to serve the bad block')
  t.equal(sha256(await fs.readFile('/rot/a.bin')), sha256(data), 'the client reads the right bytes')

  const expected = data.subarray(256 * KiB, 512 * KiB)
  await cluster.waitFor(async () => await replicaSetRepaired(cluster, '/rot/a.bin', 1, good, expected), { timeoutMs: 60_000, what: 'the corrupt replica replaced by a good copy' })
  t.pass('the corrupt replica was replaced; all three replicas are identical')
  // Read from the servers the master lists now, wherever the replacement landed.
  const replicas = await listedReplicas(cluster, '/rot/a.bin', 1)
  t.equal(new Set(replicas.map((r) => r.url)).size, 3, 'three distinct servers hold the chunk')
  for (const replica of replicas) {
    const served = await readReplica(replica.url, replica.chunk)
    t.equal(served.statusCode, 200, `${replica.url} serves the chunk`)
    t.equal(sha256(served.body), sha256(expected), `${replica.url} serves the right bytes`)
  }
})

t.test('the scrubber finds rot in a chunk nobody reads', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * KiB, test: t, chunkserverArgs: ['--scrub-pass-gap-ms', '300'] })
  const fs = cluster.client({ deadlineMs: 30_000 })
  const data = randomBytes(300 * KiB)
  await fs.writeFile('/rot/cold.bin', data)
  const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=/rot/cold.bin`)
  const chunk = open.chunks[0]
  if (chunk === undefined) { t.fail('no chunk'); return }
  const good = readFileSync(cluster.chunkFiles(1, chunk.chunkHandle)[0] as string)
  cluster.corruptChunkReplica({ serverIndex: 1, chunkHandle: chunk.chunkHandle, offsetBytes: 70 * KiB })
  await cluster.waitFor(async () => readFileSync(cluster.chunkservers[1]?.logPath ?? '', 'utf8').includes('scrubber found a corrupt replica'),
    { timeoutMs: 30_000, what: 'the scrubber reports the rot' })
  await cluster.waitFor(async () => await replicaSetRepaired(cluster, '/rot/cold.bin', 0, good, data.subarray(0, 256 * KiB)), { timeoutMs: 60_000, what: 'the scrubbed corrupt replica replaced' })
  t.pass('found by the scrubber and replaced without any client read')
})
