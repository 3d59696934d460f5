// npm run bench -- gc: how fast a deleted tree's chunks leave the chunkservers' disks. Starts 3 chunkservers
// with the default heartbeat (1 s), writes 10,000 files of 4 KiB (one chunk each, replication 3) under one
// folder, 16 in flight, then removes the folder (recursive, skipping the trash) and times, from the reply, until
// none of those chunk files is left on any chunkserver's disk. Prints the master's delete op, the GC time and
// its rate in replicas per second. Asserts nothing, except that every replica file did go.
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { startCluster, type Cluster } from '../testing/cluster.js'
import { fmt, line } from './bench-format.js'

const fileCount = 10_000
const fileBytes = 4096
const writesInFlight = 16
const heartbeatIntervalMs = 1000
const pollMs = 100                 // one poll lists 3 × 256 chunk folders: cheap, but it shares the 2 cores
const gcTimeoutMs = 10 * 60_000

async function inFlight (count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) { const i = next++; await fn(i) }
  }))
}

// Every chunk file of the cluster (the cluster is fresh: after the writes, these are exactly the tree's).
function allChunkFiles (cluster: Cluster): string[] {
  return cluster.chunkservers.flatMap((_, i) => cluster.chunkFiles(i))
}

export async function benchGc (): Promise<void> {
  const cluster = await startCluster({ chunkservers: 3, heartbeatIntervalMs, deadAfterMs: 10_000, readyTimeoutMs: 60_000 })
  try {
    const fs = cluster.client({ deadlineMs: 120_000 })
    const data = randomBytes(fileBytes)
    await fs.mkdir('/gc', { recursive: true })
    let startedMs = performance.now()
    await inFlight(fileCount, writesInFlight, async (i) => { await fs.writeFile(`/gc/f${i}`, data) })
    const writeMs = performance.now() - startedMs
    const replicas = allChunkFiles(cluster)
    if (replicas.length !== fileCount * 3) throw new Error(`expected ${fileCount * 3} replica files, found ${replicas.length}`)

    startedMs = performance.now()
    const deleted = await fs.rm('/gc', { recursive: true, skipTrash: true })
    const rmMs = performance.now() - startedMs
    if (deleted.deletedFiles !== fileCount) throw new Error(`rm deleted ${deleted.deletedFiles} files, expected ${fileCount}`)
    startedMs = performance.now()
    const tree = new Set(replicas)
    let leftCount = tree.size
    while (leftCount > 0) {
      if (performance.now() - startedMs > gcTimeoutMs) throw new Error(`${leftCount} replica files still on disk after ${gcTimeoutMs} ms`)
      await sleep(pollMs)
      leftCount = allChunkFiles(cluster).filter((file) => tree.has(file)).length
    }
    const gcMs = performance.now() - startedMs
    line('gc: files written (4 KiB, 1 chunk, 3 replicas)', fmt(fileCount), `${fmt(fileCount / (writeMs / 1000))} files/s, ${writesInFlight} in flight`)
    line('gc: chunk replicas deleted', fmt(replicas.length), `3 chunkservers, heartbeat ${heartbeatIntervalMs} ms`)
    line('gc: master delete op (rm -r, skip trash)', `${fmt(rmMs)} ms`)
    line('gc: rm reply → every replica file gone', `${fmt(gcMs)} ms`, `polled every ${pollMs} ms`)
    line('gc: replicas deleted per second', fmt(replicas.length / (gcMs / 1000)), `${fmt(replicas.length / 3 / (gcMs / 1000))} per chunkserver`)
  } finally {
    await cluster.stop()
  }
}
