// Proves garbage collection after a recursive delete, through a chunkserver crash: 300 files (2-4 small chunks
// each, 3 replicas) are written under /gc/doomed and 20 more under /gc/keep; `rm -r /gc/doomed` (skipping the
// trash) returns at once, and one chunkserver is SIGKILLed while it is executing its delete commands (some of
// its doomed chunk files gone, some not). Restarted, its full report names the rest, which are orphans now, and
// the master has them deleted: within a bounded time no doomed chunk file is left on any disk. Every chunk
// file that is left belongs to a kept file (its exact handle and version, 3 copies, whole: the file's size and
// data bytes match), and every kept file reads back with the right sha256 from every replica.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster, type Cluster } from '../../testing/cluster.js'
import { fileBytesOf, parseChunkFileName } from '../../chunkserver/chunk-format.js'
import { tokenHeader, type OpenReply } from '../../shared/protocol.js'

const KiB = 1024
const chunkSizeBytes = 64 * KiB
const doomedCount = 300
const keptCount = 20
const writesInFlight = 8
const gcTimeoutMs = 60_000
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function getJson<T> (url: string): Promise<T> {
  const res = await request(url)
  return await res.body.json() as T
}

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

// `${handle}_${version}` of every chunk of the files under `paths`, from the master.
async function chunkKeys (cluster: Cluster, paths: string[]): Promise<Set<string>> {
  const keys = new Set<string>()
  for (const path of paths) {
    const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)
    for (const chunk of open.chunks) keys.add(`${chunk.chunkHandle}_${chunk.version}`)
  }
  return keys
}

const keyOf = (file: string): string => basename(file, '.chunk')
const doomedOn = (cluster: Cluster, index: number, doomed: Set<string>): number => cluster.chunkFiles(index).filter((f) => doomed.has(keyOf(f))).length

t.test('rm -r: every chunk leaves every disk, through a chunkserver killed mid-GC', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, test: t })
  const fs = cluster.client({ deadlineMs: 60_000 })
  const doomedPaths = Array.from({ length: doomedCount }, (_, i) => `/gc/doomed/d${i % 10}/f${i}.bin`)
  await inFlight(doomedCount, writesInFlight, async (i) => {
    await fs.writeFile(doomedPaths[i] as string, randomBytes(chunkSizeBytes + 1 + (i % 3) * chunkSizeBytes))   // 2-4 chunks
  })
  const kept = new Map<string, Buffer>()
  for (let i = 0; i < keptCount; i++) kept.set(`/gc/keep/k${i}.bin`, randomBytes(chunkSizeBytes * (1 + (i % 3)) + 777))
  await inFlight(keptCount, writesInFlight, async (i) => { const path = `/gc/keep/k${i}.bin`; await fs.writeFile(path, kept.get(path) as Buffer) })
  const doomed = await chunkKeys(cluster, doomedPaths)
  const keptKeys = await chunkKeys(cluster, [...kept.keys()])
  t.equal(doomed.size, doomedCount * 3, `${doomed.size} doomed chunks`)
  const victimIndex = 1
  const victim = cluster.chunkservers[victimIndex]!
  const before = doomedOn(cluster, victimIndex, doomed)
  t.equal(before, doomed.size, 'the victim holds a replica of every doomed chunk')

  const deleted = await fs.rm('/gc/doomed', { recursive: true, skipTrash: true })
  t.match(deleted, { deletedFiles: doomedCount, deletedChunks: doomed.size })
  // SIGKILL as soon as the victim's deletes are under way: the first of its doomed files has gone.
  let atKill = before
  const watchedFromMs = Date.now()
  while (atKill === before && Date.now() - watchedFromMs < gcTimeoutMs) atKill = doomedOn(cluster, victimIndex, doomed)
  await victim.kill('SIGKILL')
  const leftAtKill = doomedOn(cluster, victimIndex, doomed)
  t.ok(leftAtKill > 0 && leftAtKill < before, `killed mid-GC: ${before - leftAtKill} of ${before} doomed files deleted, ${leftAtKill} left`)

  // The others finish on their own; the victim's leftovers are orphans its full report brings to light.
  await cluster.waitFor(() => doomedOn(cluster, 0, doomed) === 0 && doomedOn(cluster, 2, doomed) === 0, { timeoutMs: gcTimeoutMs, what: 'the live servers emptied of doomed chunks' })
  t.equal(doomedOn(cluster, victimIndex, doomed), leftAtKill, 'a dead server deletes nothing')
  await victim.restart()
  await cluster.waitFor(() => [0, 1, 2].every((i) => doomedOn(cluster, i, doomed) === 0), { timeoutMs: gcTimeoutMs, what: 'the orphans on the restarted server deleted' })
  t.pass('no doomed chunk file is left on any disk')
  t.match(readFileSync(victim.logPath, 'utf8'), /"msg":"delete commands run"/, 'the restarted server ran the deletes for its orphans')

  // What is left is exactly the kept files' chunks, three whole copies each.
  const byKey = new Map<string, string[]>()
  for (let i = 0; i < 3; i++) for (const file of cluster.chunkFiles(i)) byKey.set(keyOf(file), [...(byKey.get(keyOf(file)) ?? []), file])
  t.same([...byKey.keys()].sort(), [...keptKeys].sort(), 'every remaining chunk file belongs to a kept file')
  t.ok([...byKey.values()].every((files) => files.length === 3), 'three copies of each')
  for (let i = 0; i < 3; i++) t.same(readdirSync(join(cluster.chunkservers[i]!.dataDir, 'tmp')), [], `chunkserver${i}: no temp files`)

  for (const [path, data] of kept) {
    const open = await getJson<OpenReply>(`${cluster.master.url}/fs/open?path=${encodeURIComponent(path)}`)
    for (const chunk of open.chunks) {
      const want = data.subarray(chunk.chunkIndex * chunkSizeBytes, chunk.chunkIndex * chunkSizeBytes + chunk.lengthBytes)
      for (const file of byKey.get(`${chunk.chunkHandle}_${chunk.version}`) ?? []) {
        t.equal(statSync(file).size, fileBytesOf(chunk.lengthBytes), `${file}: whole (data, table and footer)`)
        t.ok(readFileSync(file).subarray(0, chunk.lengthBytes).equals(want), `${file}: the right bytes on disk`)
        t.ok(parseChunkFileName(basename(file)) !== null)
      }
      t.equal(chunk.replicas.length, 3, `${path} chunk ${chunk.chunkIndex}: 3 replicas`)
      for (const replica of chunk.replicas) {
        const res = await request(`${replica.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { [tokenHeader]: chunk.token } })
        t.equal(res.statusCode, 200)
        t.equal(sha256(Buffer.from(await res.body.arrayBuffer())), sha256(want), `${path} chunk ${chunk.chunkIndex} from ${replica.serverId}`)
      }
    }
    t.equal(sha256(await fs.readFile(path)), sha256(data), `${path} reads back whole`)
  }
})
