// Proves a full chunkserver neither takes nor breaks writes: with 4 chunkservers, one started with a capacity
// (--capacity-bytes) smaller than a chunk, files spanning several chunks are written concurrently and all
// succeed with 3 replicas, none of them on the full server, and read back byte-identical (sha256) from every
// replica. Written to directly, the full server refuses a chunk larger than its room with GRN_DISK_FULL (507)
// and leaves nothing on disk, while a chunk that fits is taken (and, unknown to the master, deleted again).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { signedRequest as request } from '../../testing/cluster.js'
import { ClusterProcess, startCluster } from '../../testing/cluster.js'
import { loadSecret, signToken } from '../../shared/token.js'
import { tokenHeader, type ClusterReport, type OpenReply } from '../../shared/protocol.js'
import type { ChunkHandle, ServerId } from '../../shared/ids.js'

const KiB = 1024
const chunkSizeBytes = 256 * KiB
const tinyCapacityBytes = 64 * KiB      // less than one chunk: placement must never choose it
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

function chunkFilesIn (dataDir: string): string[] {
  const root = join(dataDir, 'chunks')
  if (!existsSync(root)) return []
  return readdirSync(root).flatMap((folder) => readdirSync(join(root, folder)).filter((name) => name.endsWith('.chunk')))
}

t.test('a chunkserver with no room: writes go around it, and it refuses with GRN_DISK_FULL', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, test: t })
  // The fourth server is started by hand: the kit gives every chunkserver the same flags.
  const tiny = new ClusterProcess('chunkserver-tiny', 'chunkserver', join(cluster.dir, 'chunkserver-tiny'), join(cluster.dir, 'logs', 'chunkserver-tiny.log'), () => [
    '--secret-file', cluster.secretFile, '--heartbeat-interval-ms', '200', '--masters', cluster.masters.join(','),
    '--capacity-bytes', String(tinyCapacityBytes)
  ], 20_000)
  t.teardown(() => { tiny.killSync() })
  await tiny.start()
  await cluster.waitForChunkservers(4)
  const tinyReport = (await getJson<ClusterReport>(`${cluster.master.url}/cluster/report`)).servers.find((s) => s.serverId === tiny.serverId)
  t.match(tinyReport, { alive: true, capacityBytes: tinyCapacityBytes }, 'the master sees its capacity')
  t.ok(tinyReport !== undefined && tinyReport.freeBytes <= tinyCapacityBytes && tinyReport.freeBytes < chunkSizeBytes, 'and that it has less than a chunk free')

  const fs = cluster.client({ deadlineMs: 30_000 })
  const files = new Map<string, Buffer>()
  for (let i = 0; i < 6; i++) files.set(`/full/f${i}.bin`, randomBytes(3 * chunkSizeBytes + i * 50 * KiB))   // 3-5 chunks each
  await Promise.all([...files].map(async ([path, data]) => { await fs.writeFile(path, data) }))
  t.pass('every write succeeded')

  let chunkCount = 0
  for (const [path, data] of files) {
    const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)
    for (const chunk of open.chunks) {
      chunkCount++
      t.equal(chunk.replicas.length, 3, `${path} chunk ${chunk.chunkIndex}: 3 replicas`)
      t.notOk(chunk.replicas.some((r) => r.serverId === tiny.serverId), `${path} chunk ${chunk.chunkIndex}: none on the full server`)
      const want = sha256(data.subarray(chunk.chunkIndex * chunkSizeBytes, chunk.chunkIndex * chunkSizeBytes + chunk.lengthBytes))
      for (const replica of chunk.replicas) {
        const res = await request(`${replica.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { [tokenHeader]: chunk.token } })
        t.equal(sha256(Buffer.from(await res.body.arrayBuffer())), want, `${path} chunk ${chunk.chunkIndex} on ${replica.serverId}`)
      }
    }
    t.equal(sha256(await fs.readFile(path)), sha256(data), `${path} reads back whole`)
  }
  t.ok(chunkCount >= 18, `${chunkCount} chunks checked`)
  t.same(chunkFilesIn(tiny.dataDir), [], 'the full server stores nothing')

  // Straight to the full server, with a valid write token: more than its room is refused before any byte lands.
  const secret = loadSecret(cluster.secretFile, false)
  const { term } = await cluster.report()
  const put = async (chunkHandle: ChunkHandle, data: Buffer): Promise<{ statusCode: number, body: { code?: string } }> => {
    const token = signToken(secret, { chunkHandle, version: 1, mode: 'write', expiresAtMs: Date.now() + 60_000, term, pipeline: [{ serverId: tiny.serverId as ServerId, url: tiny.url }] })
    const res = await request(`${tiny.url}/chunks/${chunkHandle}?version=1`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', [tokenHeader]: token }, body: data
    })
    return { statusCode: res.statusCode, body: await res.body.json() as { code?: string } }
  }
  const refused = await put('00000000d15cf011' as ChunkHandle, randomBytes(128 * KiB))
  t.equal(refused.statusCode, 507)
  t.equal(refused.body.code, 'GRN_DISK_FULL', 'a chunk larger than the free room is refused with GRN_DISK_FULL')
  t.same(chunkFilesIn(tiny.dataDir), [], 'and nothing was stored')
  t.same(readdirSync(join(tiny.dataDir, 'tmp')), [], 'not even a temp file')

  // A chunk that fits is taken: the refusal is about room, not a blanket no. The master never allocated it,
  // so the next heartbeat reports an unknown chunk and the master has it deleted.
  const fits = await put('00000000d15cf012' as ChunkHandle, randomBytes(10 * KiB))
  t.equal(fits.statusCode, 200, 'a chunk that fits is accepted')
  await cluster.waitFor(() => chunkFilesIn(tiny.dataDir).length === 0, { timeoutMs: 15_000, what: 'the stray chunk deleted by the master' })
  t.pass('the stray chunk was deleted as an orphan')
})
