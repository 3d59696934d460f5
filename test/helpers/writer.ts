// Test helper (not a test file): the failover tests' workload — one writer putting a 4 KiB file every tickMs
// through a client configured [master, shadow], recording every acknowledgement — and the checks on it.
import { createHash } from 'node:crypto'
import type { Test } from 'tap'
import { signedRequest as request } from '../../testing/cluster.js'
import type * as p from '../../shared/protocol.js'
import { startCluster, type Cluster, type ClusterProcess, type StartClusterOptions } from '../../testing/cluster.js'
import type { GranaryClient } from '../../client/index.js'

export const sha = (data: Uint8Array | string): string => createHash('sha256').update(data).digest('hex')
export const tickMs = 10
export const writesBeforeFaultMin = 30
export const writesAfterFaultMin = 60
export const writerDeadlineMs = 10_000

export async function health (url: string): Promise<p.HealthReply> {
  return await (await request(`${url}/healthz`)).body.json() as p.HealthReply
}

// One writer: a 4 KiB file every tickMs (or as soon as the last one is acked, if slower). Records every ack.
export function startWriter (fs: GranaryClient, options: { mkdirEvery?: number } = {}) {
  const acked = new Map<string, string>()
  const failed: Array<{ path: string, code: string }> = []
  let stopping = false
  let worstMs = 0
  const done = (async () => {
    for (let i = 0; !stopping; i++) {
      const path = `/tick/f${String(i).padStart(6, '0')}`
      const data = `file ${i} `.repeat(410).slice(0, 4096)
      const startedMs = Date.now()
      try {
        if (options.mkdirEvery !== undefined && i % options.mkdirEvery === 0) {
          await fs.mkdir(`/tick/d${i}`)
          acked.set(`/tick/d${i}`, 'dir')
        }
        await fs.writeFile(path, data, { deadlineMs: writerDeadlineMs })
        acked.set(path, sha(data))
      } catch (err) {
        failed.push({ path, code: (err as { code?: string }).code ?? String(err) })
      }
      const tookMs = Date.now() - startedMs
      worstMs = Math.max(worstMs, tookMs)
      if (tookMs < tickMs) await new Promise((resolve) => setTimeout(resolve, tickMs - tookMs))
    }
  })()
  return {
    acked, failed,
    get worstMs () { return worstMs },
    stop: async () => { stopping = true; await done }
  }
}

export async function checkAcked (t: Test, fs: GranaryClient, acked: Map<string, string>): Promise<void> {
  let wrong = 0
  for (const [path, digest] of acked) {
    if (digest === 'dir') { if ((await fs.stat(path)).type !== 'dir') wrong++; continue }
    if (sha(await fs.readFile(path)) !== digest) wrong++
  }
  t.equal(wrong, 0, `every one of the ${acked.size} acknowledged files reads back byte-identical`)
}

export async function readyWithShadow (t: Test, options: Pick<StartClusterOptions, 'shadowArgs' | 'hosts' | 'network'> = {}): Promise<{ cluster: Cluster, shadow: ClusterProcess, fs: GranaryClient }> {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, test: t, ...options })
  const shadow = cluster.shadow as ClusterProcess
  const fs = cluster.client({ deadlineMs: writerDeadlineMs })
  await fs.mkdir('/tick')
  // The shadow must be in the master's in-sync set before the fault, or nobody may take over.
  await cluster.waitFor(async () => {
    const report = await (await request(`${cluster.master.url}/cluster/report`)).body.json() as p.ClusterReport
    return (report.isr?.length ?? 0) === 1
  }, { what: 'the shadow in the in-sync set' })
  return { cluster, shadow, fs }
}

