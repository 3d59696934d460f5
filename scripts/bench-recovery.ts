// npm run bench -- recovery: how long a SIGKILLed chunkserver takes to stop mattering. Starts 4 chunkservers
// with the default heartbeat (1 s) and dead timeout (10 s), writes 1 GiB (64 MiB chunks, replication 3), then
// SIGKILLs the chunkserver holding the most replicas and times, from the kill: detection (the master reports
// it dead) and full re-replication (no chunk under-replicated or missing). Prints both, the copy phase alone,
// and its rate over the bytes the dead server held; then checks the file reads back whole. Asserts nothing.
import { createHash, randomBytes } from 'node:crypto'
import { statSync } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { startCluster } from '../test/helpers/cluster.js'
import { fmt, line } from './bench-format.js'

const MiB = 1024 * 1024
const GiB = 1024 * MiB
const pollMs = 50
const recoveryTimeoutMs = 10 * 60_000


function source (totalBytes: number, pattern: Buffer, hash: ReturnType<typeof createHash>): Readable {
  let sent = 0
  return new Readable({
    read () {
      if (sent >= totalBytes) { this.push(null); return }
      const piece = pattern.subarray(sent % MiB, (sent % MiB) + Math.min(MiB, totalBytes - sent))
      sent += piece.length
      hash.update(piece)
      this.push(piece)
    }
  })
}

export async function benchRecovery (): Promise<void> {
  const cluster = await startCluster({ chunkservers: 4, heartbeatIntervalMs: 1000, deadAfterMs: 10_000, readyTimeoutMs: 60_000 })
  try {
    const fs = cluster.client({ deadlineMs: 300_000, chunkSizeBytes: 64 * MiB })
    const written = createHash('sha256')
    await pipeline(source(GiB, randomBytes(2 * MiB), written), fs.createWriteStream('/bench/recovery.bin'))
    const digest = written.digest('hex')
    const held = cluster.chunkservers.map((_, i) => cluster.chunkFiles(i).reduce((sum, f) => sum + statSync(f).size, 0))
    const victimIndex = held.indexOf(Math.max(...held))
    const victim = cluster.chunkservers[victimIndex]
    if (victim === undefined) throw new Error('no chunkserver to kill')
    const killedAtMs = performance.now()
    await victim.kill()
    let detectedMs: number | null = null
    let recoveredMs: number | null = null
    while (recoveredMs === null && performance.now() - killedAtMs < recoveryTimeoutMs) {
      const report = await cluster.report()
      const dead = report.servers.some((s) => s.serverId === victim.serverId && !s.alive)
      if (dead && detectedMs === null) detectedMs = performance.now() - killedAtMs
      if (dead && report.underReplicatedChunks === 0 && report.missingChunks === 0) recoveredMs = performance.now() - killedAtMs
      else await sleep(pollMs)
    }
    if (detectedMs === null || recoveredMs === null) throw new Error(`not recovered within ${recoveryTimeoutMs} ms`)
    const copyMs = recoveredMs - detectedMs
    line('recovery: SIGKILL → detected dead', `${fmt(detectedMs)} ms`, 'deadAfterMs 10000, heartbeat 1000 ms')
    line('recovery: SIGKILL → fully re-replicated', `${fmt(recoveredMs)} ms`, `1 GiB file, 4 chunkservers, ${fmt(held[victimIndex] as number / MiB)} MiB lost with the server`)
    line('recovery: copy phase alone', `${fmt(copyMs)} ms`, `${fmt((held[victimIndex] as number) / MiB / (copyMs / 1000), 1)} MB/s re-replicated`)
    const read = createHash('sha256')
    for await (const piece of fs.createReadStream('/bench/recovery.bin')) read.update(piece as Buffer)
    line('recovery: file intact after re-replication', read.digest('hex') === digest ? 'yes' : 'NO')
  } finally {
    await cluster.stop()
  }
}
