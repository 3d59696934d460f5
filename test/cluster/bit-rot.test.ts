// Proves bit rot is caught and repaired: a byte flipped in one replica is refused by that chunkserver's
// block CRC, the client reads the right bytes from another replica, the chunkserver reports the replica
// corrupt in its heartbeat and the master has it replaced, so every replica on disk is byte-identical again.
// And the background scrubber finds rot in a chunk nobody reads, with the same repair.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'undici'
import { startCluster, type Cluster } from '../helpers/cluster.js'
import type { FsckReply, OpenReply } from '../../shared/protocol.js'

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

async function healed (cluster: Cluster, chunkHandle: string, corruptIndex: number, good: Buffer): Promise<boolean> {
  const files = cluster.chunkFiles(corruptIndex, chunkHandle)
  if (files.length !== 1 || !readFileSync(files[0] as string).equals(good)) return false
  const all = replicaFiles(cluster, chunkHandle)
  const fsck = await getJson<FsckReply>(`${cluster.master.url}/fs/fsck?path=/`)
  return all.length === 3 && all.every((b) => b.equals(good)) && fsck.underReplicatedChunks === 0 && fsck.missingChunks === 0
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

  await cluster.waitFor(async () => await healed(cluster, chunk.chunkHandle, corruptIndex, good), { timeoutMs: 60_000, what: 'the corrupt replica replaced by a good copy' })
  t.pass('the corrupt replica was replaced; all three replicas are identical')
  const again = await request(`${firstUrl ?? ''}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { 'x-granary-token': chunk.token } })
  t.equal(again.statusCode, 200)
  t.equal(sha256(Buffer.from(await again.body.arrayBuffer())), sha256(data.subarray(256 * KiB, 512 * KiB)), 'the repaired replica serves the right bytes')
})

t.test('the scrubber finds rot in a chunk nobody reads', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * KiB, test: t, chunkserverArgs: ['--scrub-pass-gap-ms', '300'] })
  const fs = cluster.client({ deadlineMs: 30_000 })
  await fs.writeFile('/rot/cold.bin', randomBytes(300 * KiB))
  const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=/rot/cold.bin`)
  const chunk = open.chunks[0]
  if (chunk === undefined) { t.fail('no chunk'); return }
  const good = readFileSync(cluster.chunkFiles(1, chunk.chunkHandle)[0] as string)
  cluster.corruptChunkReplica({ serverIndex: 1, chunkHandle: chunk.chunkHandle, offsetBytes: 70 * KiB })
  await cluster.waitFor(async () => readFileSync(cluster.chunkservers[1]?.logPath ?? '', 'utf8').includes('scrubber found a corrupt replica'),
    { timeoutMs: 30_000, what: 'the scrubber reports the rot' })
  await cluster.waitFor(async () => await healed(cluster, chunk.chunkHandle, 1, good), { timeoutMs: 60_000, what: 'the scrubbed corrupt replica replaced' })
  t.pass('found by the scrubber and replaced without any client read')
})
