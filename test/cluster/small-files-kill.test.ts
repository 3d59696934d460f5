// Proves small files are durable when acknowledged (issue 13: two master calls per file, group fsync on
// chunkservers): 4 KiB puts run 16 at once while each of the four chunkservers in turn is SIGKILLed and
// restarted. Afterwards every acknowledged file reads back byte-identical (sha256) through the library AND from
// every replica the master lists for it, fetched one replica at a time: a chunkserver acknowledges only what its
// shared folder fsync has made durable, so a kill -9 loses nothing it acked.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'
import type { OpenReply } from '../../shared/protocol.js'

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex')
const inFlight = 16
const filesPerPhase = 64   // puts started while one chunkserver is down or coming back

t.test('16 in flight, each chunkserver SIGKILLed in turn: every acked file intact on every replica', async (t) => {
  const cluster = await startCluster({ chunkservers: 4, shadow: true, test: t })
  const fs = cluster.client({ deadlineMs: 60_000, replication: 3 })
  await fs.mkdir('/small', { recursive: true })
  const acked = new Map<string, string>()   // path → sha256 of what was acknowledged
  const failures: string[] = []
  let next = 0
  const total = filesPerPhase * cluster.chunkservers.length
  let stopWriters = false
  const writers = Array.from({ length: inFlight }, async () => {
    while (!stopWriters && next < total) {
      const i = next++
      const path = `/small/f${i}`
      const data = randomBytes(4096)
      try {
        await fs.writeFile(path, data)
        acked.set(path, sha256(data))
      } catch (err) {
        failures.push(`${path}: ${(err as Error).message}`)
      }
    }
  })
  for (const [index, server] of cluster.chunkservers.entries()) {
    // Kill in the middle of a phase: wait until this phase's puts are under way, with writes in flight.
    const phaseStart = index * filesPerPhase
    await cluster.waitFor(() => next >= phaseStart + filesPerPhase / 2 || next >= total, { what: `phase ${index} under way`, timeoutMs: 120_000 })
    await server.kill('SIGKILL')
    await server.restart()
  }
  await Promise.all(writers)
  stopWriters = true
  t.same(failures, [], 'no put failed within its deadline')
  t.ok(acked.size > 0, `${acked.size} files acknowledged`)

  await cluster.waitForChunkservers(4)
  const mismatched: string[] = []
  let replicaReads = 0
  for (const [path, digest] of acked) {
    if (sha256(await fs.readFile(path)) !== digest) mismatched.push(`${path} via the library`)
    const open = await request(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)
    const reply = await open.body.json() as OpenReply
    const chunk = reply.chunks[0]
    if (chunk === undefined || reply.chunks.length !== 1) { mismatched.push(`${path}: ${reply.chunks.length} chunks`); continue }
    if (chunk.replicas.length < 1) { mismatched.push(`${path}: no replica listed`); continue }
    for (const replica of chunk.replicas) {
      const res = await request(`${replica.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}&offset=0&length=${chunk.lengthBytes}`, { headers: { 'x-granary-token': chunk.token } })
      const bytes = Buffer.from(await res.body.arrayBuffer())
      replicaReads++
      if (res.statusCode !== 200 || sha256(bytes) !== digest) mismatched.push(`${path} on ${replica.serverId}: HTTP ${res.statusCode}`)
    }
  }
  t.same(mismatched, [], `every acknowledged file byte-identical through the library and on every listed replica (${replicaReads} replica reads)`)
})
