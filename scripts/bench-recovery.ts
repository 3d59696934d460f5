// npm run bench -- recovery: how long a SIGKILLed chunkserver takes to stop mattering. Starts 4 chunkservers
// with the master's default heartbeat and dead timeout (shared/config.ts), writes 1 GiB (64 MiB chunks,
// replication 3), then SIGKILLs the chunkserver holding the most replicas and times, from the kill: detection
// (the master reports it dead) and full re-replication (no chunk under-replicated or missing). Prints both,
// the copy phase alone and its rate over the bytes the dead server held, and where the copy phase went (from
// the processes' logs: planning, command delivery, copying, reporting back); then checks the file reads back
// whole. Asserts nothing.
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { masterDefaults } from '../shared/config.js'
import { replicationsAssignedPerServerMax, replicationsInFlightPerServerMax } from '../shared/limits.js'
import { startCluster, type Cluster } from '../testing/cluster.js'
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

// CPU seconds a process has used so far (user + system), from /proc; 0 where there is no /proc. The copy
// phase's CPU cost is a figure a busy machine does not distort as much as its wall time.
function cpuSeconds (pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond
  } catch { return 0 }
}
const clockTicksPerSecond = 100   // USER_HZ: 100 on every Linux architecture Node supports

// The epoch-ms `time` of every log line with this message, in one process's pino log.
function logTimes (logPath: string, msg: string): Array<{ timeMs: number, durationMs: number }> {
  const out: Array<{ timeMs: number, durationMs: number }> = []
  for (const text of readFileSync(logPath, 'utf8').split('\n')) {
    if (!text.includes(msg)) continue
    try {
      const entry = JSON.parse(text) as { time?: number, msg?: string, durationMs?: number }
      if (entry.msg === msg && typeof entry.time === 'number') out.push({ timeMs: entry.time, durationMs: entry.durationMs ?? 0 })
    } catch { /* a half-written last line */ }
  }
  return out
}

// Where the copy phase went, counted from the moment the master reported the server dead: until the first
// command was queued (planning), until the first copy started on a target (delivery on a heartbeat reply),
// until the last copy finished (copying), until the last replica row (reporting back).
function printPhases (cluster: Cluster, victimIndex: number, killedAtEpochMs: number, detectedMs: number, recoveredMs: number): void {
  const queued = logTimes(cluster.master.logPath, 're-replication queued').map((e) => e.timeMs)
  const copies = cluster.chunkservers.filter((_, i) => i !== victimIndex)
    .flatMap((cs) => logTimes(cs.logPath, 'chunk replicated from a peer'))
    .filter((e) => e.timeMs >= killedAtEpochMs)
  if (queued.length === 0 || copies.length === 0) return
  const deadAtMs = killedAtEpochMs + detectedMs
  const firstQueuedMs = Math.min(...queued) - deadAtMs
  const firstStartMs = Math.min(...copies.map((c) => c.timeMs - c.durationMs)) - deadAtMs
  const lastDoneMs = Math.max(...copies.map((c) => c.timeMs)) - deadAtMs
  const copyingSeconds = copies.reduce((sum, c) => sum + c.durationMs, 0) / 1000
  line('recovery:   dead → first copy queued', `${fmt(firstQueuedMs)} ms`, 'planning (counted from when the bench\'s 50 ms poll saw it dead: ≤ 0 means at once)')
  line('recovery:   → first copy started on a target', `${fmt(firstStartMs)} ms`, 'command delivery on a heartbeat reply')
  line('recovery:   → last copy finished', `${fmt(lastDoneMs)} ms`, `${copies.length} copies, on average ${fmt(copyingSeconds / (lastDoneMs - firstStartMs) * 1000, 1)} running at once`)
  line('recovery:   → last replica counted', `${fmt(recoveredMs - detectedMs)} ms`, 'reported back by heartbeat (bench polls every 50 ms)')
}

export async function benchRecovery (): Promise<void> {
  const { heartbeatIntervalMs, deadAfterMs, tickIntervalMs } = masterDefaults
  const cluster = await startCluster({ chunkservers: 4, heartbeatIntervalMs, deadAfterMs, readyTimeoutMs: 60_000 })
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
    const killedAtEpochMs = Date.now()
    await victim.kill()
    const survivors = [cluster.master, ...cluster.chunkservers.filter((_, i) => i !== victimIndex)]
    const cpuAtKill = survivors.reduce((sum, p) => sum + cpuSeconds(p.pid), 0)
    let cpuAtDeath = 0
    let detectedMs: number | null = null
    let recoveredMs: number | null = null
    while (recoveredMs === null && performance.now() - killedAtMs < recoveryTimeoutMs) {
      const report = await cluster.report()
      const dead = report.servers.some((s) => s.serverId === victim.serverId && !s.alive)
      if (dead && detectedMs === null) {
        detectedMs = performance.now() - killedAtMs
        cpuAtDeath = survivors.reduce((sum, p) => sum + cpuSeconds(p.pid), 0)
      }
      if (dead && report.underReplicatedChunks === 0 && report.missingChunks === 0) recoveredMs = performance.now() - killedAtMs
      else await sleep(pollMs)
    }
    if (detectedMs === null || recoveredMs === null) throw new Error(`not recovered within ${recoveryTimeoutMs} ms`)
    const copyCpuSeconds = survivors.reduce((sum, p) => sum + cpuSeconds(p.pid), 0) - cpuAtDeath
    const copyMs = recoveredMs - detectedMs
    line('recovery: defaults', '', `deadAfterMs ${deadAfterMs}, heartbeatIntervalMs ${heartbeatIntervalMs}, tickIntervalMs ${tickIntervalMs}, ` +
      `copies per server: ${replicationsAssignedPerServerMax} handed, ${replicationsInFlightPerServerMax} running`)
    line('recovery: SIGKILL → detected dead', `${fmt(detectedMs)} ms`, `deadAfterMs ${deadAfterMs} minus the time since the last heartbeat`)
    line('recovery: SIGKILL → fully re-replicated', `${fmt(recoveredMs)} ms`, `1 GiB file, 4 chunkservers, ${fmt(held[victimIndex] as number / MiB)} MiB lost with the server`)
    line('recovery: copy phase alone', `${fmt(copyMs)} ms`, `${fmt((held[victimIndex] as number) / MiB / (copyMs / 1000), 1)} MB/s re-replicated`)
    printPhases(cluster, victimIndex, killedAtEpochMs, detectedMs, recoveredMs)
    line('recovery:   CPU while copying', `${fmt(copyCpuSeconds, 1)} CPU-s`, `master + live chunkservers (${fmt(copyCpuSeconds / ((held[victimIndex] as number) / GiB), 1)} CPU-s/GiB; ` +
      `${fmt(cpuAtDeath - cpuAtKill, 1)} CPU-s while detecting)`)
    const read = createHash('sha256')
    for await (const piece of fs.createReadStream('/bench/recovery.bin')) read.update(piece as Buffer)
    line('recovery: file intact after re-replication', read.digest('hex') === digest ? 'yes' : 'NO')
  } finally {
    await cluster.stop()
  }
}
