// Proves that retried mutations are idempotent across a master crash: 2,000 mkdirs and file creates are
// started at once, the master is SIGKILLed while they are being committed and a supervisor restarts it. Every
// operation must succeed — a retry of a mutation that did commit before the kill gets its original reply
// from the master's request-id table, never GRN_EXISTS — and afterwards exactly the acknowledged entries
// exist: none missing, no extra or duplicate entry, each created file with its bytes.
import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { channelNames } from '../../client/diagnostics.js'
import { startCluster } from '../../testing/cluster.js'
import { supervise } from '../../testing/supervise.js'

const dirCount = 1000
const fileCount = 1000

interface Outcome { path: string, ok: boolean, code: string | null, endMs: number }

t.test('kill -9 during 2,000 concurrent mkdir/creates: exactly the acknowledged ones exist', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const supervisor = supervise(cluster.master)
  t.teardown(async () => await supervisor.stop())
  const fs = cluster.client({ deadlineMs: 30_000 })
  await fs.mkdir('/dirs')
  await fs.mkdir('/files')

  const outcomes: Outcome[] = []
  let retriedCount = 0   // mutations whose request was cut by the kill and sent again with the same request id
  const onRetry = (message: unknown): void => { if (/^(mkdir|create|complete) /.test((message as { what: string }).what)) retriedCount++ }
  diagnosticsChannel.subscribe(channelNames.retry, onRetry)
  t.teardown(() => diagnosticsChannel.unsubscribe(channelNames.retry, onRetry))
  const settle = async (path: string, operation: Promise<unknown>): Promise<void> => {
    try {
      await operation
      outcomes.push({ path, ok: true, code: null, endMs: Date.now() })
    } catch (err) {
      outcomes.push({ path, ok: false, code: (err as { code?: string }).code ?? 'ERROR', endMs: Date.now() })
    }
  }
  // Parents are made explicitly above: create() without `parents` never takes its mkdir -p detour, so every
  // GRN_EXISTS below could only come from a retry.
  const operations = [
    ...Array.from({ length: dirCount }, (_, i) => settle(`/dirs/d${i}`, fs.mkdir(`/dirs/d${i}`))),
    ...Array.from({ length: fileCount }, (_, i) => settle(`/files/f${i}`, fs.writeFile(`/files/f${i}`, `file ${i}`, { parents: false })))
  ]
  // Kill once a quarter has been acknowledged: the rest are queued, in flight or being committed.
  await cluster.waitFor(() => outcomes.length >= 500, { timeoutMs: 30_000, what: '500 acknowledged', intervalMs: 1 })
  const killAtMs = Date.now()
  await cluster.master.kill()
  const ackedBeforeKill = outcomes.length
  await Promise.all(operations)
  await supervisor.restarted(1)
  t.ok(ackedBeforeKill < dirCount + fileCount, `the kill came mid-way (${ackedBeforeKill} acknowledged before it)`)
  t.ok(outcomes.filter((o) => o.endMs > killAtMs).length > 0, 'operations finished after the restart')
  t.ok(retriedCount > 0, `mutations were retried across the restart (${retriedCount} retries)`)

  const failed = outcomes.filter((o) => !o.ok)
  t.same(failed, [], 'every operation succeeded: no GRN_EXISTS from a retry, no error')
  const dirs = (await fs.readdir('/dirs')).sort()
  const files = (await fs.readdir('/files')).sort()
  const acknowledged = new Set(outcomes.filter((o) => o.ok).map((o) => o.path))
  t.same(dirs, Array.from({ length: dirCount }, (_, i) => `d${i}`).filter((name) => acknowledged.has(`/dirs/${name}`)).sort(), 'exactly the acknowledged directories')
  t.same(files, Array.from({ length: fileCount }, (_, i) => `f${i}`).filter((name) => acknowledged.has(`/files/${name}`)).sort(), 'exactly the acknowledged files')
  t.equal(dirs.length + files.length, dirCount + fileCount, 'all 2,000 exist')
  for (let i = 0; i < fileCount; i += 50) t.equal((await fs.readFile(`/files/f${i}`)).toString(), `file ${i}`, `f${i} holds its bytes`)
  const report = await cluster.report()
  t.equal(report.fileCount, fileCount, 'the master counts each file once')
  t.equal(report.dirCount, dirCount + 3, 'and each directory once (with /, /dirs, /files)')
})
