// Proves a chunkserver dying in the middle of a put does not fail it: a 100 MiB file (1 MiB chunks, 3 replicas,
// 4 chunkservers) is streaming when one chunkserver that holds some of its chunks is SIGKILLed. The put still
// succeeds, the file reads back byte-identical (sha256), and fsck then reports it fully replicated: every chunk
// has 3 live replicas, none on the dead server (chunks it was in the pipeline of were resent without it, chunks it
// already held were copied elsewhere).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'
import type { FsckReply, OpenReply } from '../../shared/protocol.js'

const MiB = 1024 * 1024
const totalMiB = 100
const killAfterMiB = 30

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

t.test('a chunkserver SIGKILLed in the middle of a 100 MiB put: the put succeeds, fully replicated', async (t) => {
  const cluster = await startCluster({ chunkservers: 4, chunkSizeBytes: MiB, test: t })
  const fs = cluster.client({ deadlineMs: 120_000 })
  const victim = cluster.chunkservers[0]
  if (victim === undefined) throw new Error('four chunkservers were asked for')
  const victimId = (await cluster.report()).servers.find((s) => s.url === victim.url)?.serverId
  t.ok(victimId !== undefined, 'the victim is registered')

  const hash = createHash('sha256')
  let sentMiB = 0
  let killing: Promise<void> | null = null
  let victimChunksAtKill = 0
  async function * source (): AsyncGenerator<Buffer> {
    for (let i = 0; i < totalMiB; i++) {
      if (i === killAfterMiB) {
        victimChunksAtKill = cluster.chunkFiles(0).length
        killing = victim?.kill() ?? null   // not awaited: the put keeps streaming while the process dies
      }
      const piece = randomBytes(MiB)
      hash.update(piece)
      sentMiB++
      yield piece
    }
  }
  await pipeline(Readable.from(source()), fs.createWriteStream('/big.bin'))
  await killing
  const digest = hash.digest('hex')
  t.equal(sentMiB, totalMiB)
  t.ok(victimChunksAtKill > 0, `the victim held ${victimChunksAtKill} of the file's chunks when it was killed mid-put`)
  t.match(await fs.stat('/big.bin'), { sizeBytes: totalMiB * MiB, chunkCount: totalMiB }, 'the put completed: every byte, every chunk')
  t.equal(createHash('sha256').update(await fs.readFile('/big.bin')).digest('hex'), digest, 'and reads back byte-identical')

  await cluster.waitFor(async () => {
    const fsck = await getJson<FsckReply>(`${cluster.master.url}/fs/fsck?path=/big.bin`)
    return fsck.underReplicatedChunks === 0 && fsck.missingChunks === 0
  }, { timeoutMs: 60_000, what: 'fsck to report full replication' })
  const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=/big.bin`)
  const live = open.chunks.map((c) => c.replicas.filter((r) => r.serverId !== victimId).length)
  t.ok(live.every((n) => n === 3), 'every chunk has 3 replicas on live chunkservers')
  t.equal(createHash('sha256').update(await fs.readFile('/big.bin')).digest('hex'), digest, 'still byte-identical after re-replication')
})
