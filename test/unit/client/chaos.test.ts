// Proves the pieces of `granary chaos` that need no cluster: the open-loop workload starts writes on schedule
// even while earlier ones hang (and counts the ones it had to skip), records each write's outcome and code,
// the verification pass finds missing and corrupt files, the outage arithmetic (writes in flight, worst
// latency, failures, first success) is right, and bad flags are refused.
import t from 'tap'
import { createHash } from 'node:crypto'
import type { GranaryClient } from '../../../client/index.js'
import { GranaryError } from '../../../shared/errors.js'
import { WriteWorkload, verifyAcknowledged, opsDuring, firstSuccessAfter, latencySummary, type OpRecord } from '../../../client/cluster/chaos-workload.js'
import { parseChaosArgs } from '../../../client/cluster/chaos.js'

function fakeClient (behaviour: (path: string) => Promise<void>, store = new Map<string, Buffer>()): GranaryClient {
  return {
    writeFile: async (path: string, data: Buffer) => { await behaviour(path); store.set(path, Buffer.from(data)) },
    readFile: async (path: string) => {
      const data = store.get(path)
      if (data === undefined) throw new GranaryError('GRN_NOT_FOUND', [path])
      return data
    }
  } as unknown as GranaryClient
}

t.test('the workload is an open loop: writes start on time while earlier ones hang', async (t) => {
  let release: () => void = () => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const client = fakeClient(async (path) => {
    if (path.endsWith('/f1')) throw new GranaryError('GRN_DEADLINE_EXCEEDED', ['x', 1, 1, 'y'])
    if (path.endsWith('/f0')) await gate
  })
  const workload = new WriteWorkload(client, { opsPerSecond: 100, fileSizeBytes: 16, durationMs: 200, dir: '/w', inFlightMax: 15 })
  const running = workload.run()
  await new Promise((resolve) => setTimeout(resolve, 120))
  t.ok(workload.records.length >= 8, `writes kept starting while f0 hung (${workload.records.length})`)
  release()
  const result = await running
  t.ok(result.records.length + result.skippedCount === 20, 'one write due every 10 ms for 200 ms')
  t.same(result.records.filter((r) => !r.ok).map((r) => [r.path, r.code]), [['/w/f1', 'GRN_DEADLINE_EXCEEDED']], 'the failure is recorded with its code')
  t.ok(result.records.every((r) => r.endMs !== null && r.endMs >= r.startMs), 'every write settled')
})

t.test('past inFlightMax unfinished writes, due writes are skipped and counted', async (t) => {
  const client = fakeClient(async () => { await new Promise((resolve) => setTimeout(resolve, 300)) })
  const result = await new WriteWorkload(client, { opsPerSecond: 100, fileSizeBytes: 1, durationMs: 100, dir: '/w', inFlightMax: 3 }).run()
  t.equal(result.records.length, 3)
  t.equal(result.skippedCount, 7)
})

t.test('verification reads back every acknowledged file and names the missing and corrupt ones', async (t) => {
  const store = new Map<string, Buffer>()
  const client = fakeClient(async () => {}, store)
  const result = await new WriteWorkload(client, { opsPerSecond: 200, fileSizeBytes: 64, durationMs: 50, dir: '/v' }).run()
  store.delete('/v/f1')
  store.set('/v/f2', Buffer.from('tampered'))
  const verified = await verifyAcknowledged(client, result.records)
  t.equal(verified.checkedCount, result.records.length)
  t.same([verified.missing, verified.corrupt], [['/v/f1'], ['/v/f2']])
  const intact = result.records.find((r) => r.path === '/v/f0') as OpRecord
  t.equal(intact.sha256, createHash('sha256').update(store.get('/v/f0') as Buffer).digest('hex'))
})

t.test('outage arithmetic', async (t) => {
  const record = (startMs: number, endMs: number | null, ok: boolean, code: string | null = null): OpRecord =>
    ({ index: 0, path: '/x', startMs, endMs, ok, code, message: null, sha256: '' })
  const records = [record(0, 50, true), record(90, 400, true), record(150, 900, false, 'GRN_X'), record(600, 650, true), record(700, null, false)]
  t.same(opsDuring(records, { killAtMs: 100, recoveredAtMs: 500 }, 1000), { opCount: 2, failedCount: 1, worstLatencyMs: 750, failedCodes: { GRN_X: 1 } })
  t.equal(firstSuccessAfter(records, 100), 400)
  t.equal(firstSuccessAfter(records, 1000), null)
  t.same(latencySummary(records), { count: 4, p50Ms: 310, p99Ms: 750, maxMs: 750 })
})

t.test('chaos flags are checked', async (t) => {
  t.equal(parseChaosArgs(['--help']), null)
  t.match(parseChaosArgs(['--kill-at-ms', '1000,3000', '--file-size', '4K', '--down-ms', '1000']), { killAtMs: [1000, 3000], fileSizeBytes: 4096, downMs: 1000, opsPerSecond: 100 })
  t.throws(() => parseChaosArgs(['--kill-at-ms', '3000,1000']), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => parseChaosArgs(['--kill-at-ms', '30000']), { code: 'GRN_INVALID_ARGUMENT' }, 'a kill after the end')
  t.throws(() => parseChaosArgs(['--file-size', '1G']), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => parseChaosArgs(['--ops-per-second', '10000', '--duration-ms', '3600000']), { code: 'GRN_INVALID_ARGUMENT' }, 'too many writes')
  t.throws(() => parseChaosArgs(['--bogus']))
})
