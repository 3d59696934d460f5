// Proves that a client rides out a master crash with nothing lost: one client starts a 4 KiB file every 10 ms
// for 20 s against a real cluster; at 5 s the master is SIGKILLed and a supervisor (as `granary up` does)
// restarts it at once on the same database. Every write must succeed (0 failed operations), and every
// acknowledged file must read back with the sha256 it was written with.
import t from 'tap'
import { startCluster } from '../../testing/cluster.js'
import { supervise } from '../../testing/supervise.js'
import { WriteWorkload, verifyAcknowledged, opsDuring, latencySummary } from '../../client/cluster/chaos-workload.js'

t.test('4 KiB every 10 ms for 20 s, master SIGKILLed at 5 s and restarted at once: 0 failed, all intact', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  // 30 s per operation, not the default 10: on a shared 2-core machine the backlog an outage leaves in an
  // open-loop writer can take longer than 10 s to drain; what must hold is that nothing fails or is lost.
  const fs = cluster.client({ deadlineMs: 30_000 })
  await fs.mkdir('/chaos')
  const supervisor = supervise(cluster.master)
  const workload = new WriteWorkload(fs, { opsPerSecond: 100, fileSizeBytes: 4096, durationMs: 20_000, dir: '/chaos' })
  const running = workload.run()

  await new Promise((resolve) => setTimeout(resolve, 5_000))
  const oldPid = cluster.master.pid
  const killAtMs = Date.now()
  process.kill(oldPid, 'SIGKILL')
  await supervisor.restarted(1)
  const restart = supervisor.restarts[0]
  t.ok(restart?.readyAtMs !== null && restart?.readyAtMs !== undefined, `the master came back (${restart?.error ?? 'ready'})`)
  t.not(cluster.master.pid, oldPid, 'a new master process')

  const result = await running
  await supervisor.stop()
  const failed = result.records.filter((r) => !r.ok)
  t.equal(result.skippedCount, 0, 'no write was skipped')
  t.ok(result.records.length >= 1900, `about 2000 writes started (${result.records.length})`)
  t.same(failed.map((r) => `${r.path}: ${r.code ?? ''} ${r.message ?? ''}`), [], '0 failed operations')
  const outage = opsDuring(result.records, { killAtMs, recoveredAtMs: restart?.readyAtMs ?? Date.now() })
  t.ok(outage.opCount > 0, `writes were in flight across the outage (${outage.opCount}, worst ${outage.worstLatencyMs} ms)`)

  const verified = await verifyAcknowledged(fs, result.records)
  t.equal(verified.checkedCount, result.records.length, 'every acknowledged file was read back')
  t.same(verified.missing, [], 'no acknowledged file is missing')
  t.same(verified.corrupt, [], 'every acknowledged file has its sha256')
  t.same(verified.unreadable, [], 'every acknowledged file is readable')
  t.equal((await fs.readdir('/chaos')).length, result.records.length, 'the directory holds exactly the written files')
  t.comment(`latency ${JSON.stringify(latencySummary(result.records))}, outage ${JSON.stringify(outage)}, restart ${JSON.stringify(restart)} kill ${killAtMs}`)
})
