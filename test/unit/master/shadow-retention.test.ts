// Proves oplog retention with shadows: the master keeps every record a remembered shadow has not applied (and
// the one it applied last, for the term check), trims the rest down to the newest recordsKeptMin, and never
// keeps more than recordsKeptMax or records older than recordAgeMsMax; a shadow silent that long is
// forgotten. A shadow held for resumes from its own seq after a restart; one that fell past the bound gets
// GRN_SNAPSHOT_REQUIRED, re-bootstraps by itself, and ends with the master's tables.
import t from 'tap'
import { trimOplogRetained, type RetentionBounds } from '../../../master/oplog.js'
import { ShadowTracker } from '../../../master/shadow-tracker.js'
import { startTestMaster, type TestMaster } from './fixture.js'
import { addServers, call, caughtUp, startPair, tables, waitFor, writeLoad } from './shadow-fixture.js'

const bounds: RetentionBounds = { recordsKeptMin: 5, recordsKeptMax: 50, recordAgeMsMax: 60_000 }

async function mkdirs (m: TestMaster, count: number): Promise<void> {
  await Promise.all(Array.from({ length: count }, (_, i) => m.queue.submit({ type: 'mkdir', path: `/d${m.queue.seq}-${i}`, parents: false, mtimeMs: 1 })))
}
const kept = (m: TestMaster): number[] => {
  const row = m.db.prepare('SELECT min(seq) AS first, max(seq) AS last FROM oplog').get() as { first: number, last: number }
  return [row.first, row.last]
}

t.test('trimOplogRetained: the floor, the shadow hold, the count bound and the age bound', async (t) => {
  const bounds: RetentionBounds = { recordsKeptMin: 5, recordsKeptMax: 80, recordAgeMsMax: 60_000 }
  const m = await startTestMaster(t)
  await mkdirs(m, 100)
  const nowMs = Date.now()
  t.equal(trimOplogRetained(m.db, bounds, 30, nowMs, 1000), 29, 'a shadow at seq 30 holds 30 and everything after')
  t.same(kept(m), [30, 100])
  t.equal(trimOplogRetained(m.db, bounds, 30, nowMs, 1000), 0, 'nothing more while it stays there')
  t.equal(trimOplogRetained(m.db, bounds, 98, nowMs, 10), 10, 'at most batchMax per call')
  t.equal(trimOplogRetained(m.db, bounds, 98, nowMs, 1000), 56, 'the newest recordsKeptMin stay even when every shadow has them')
  t.same(kept(m), [96, 100])
  await mkdirs(m, 100)
  t.equal(trimOplogRetained(m.db, bounds, 97, nowMs, 1000), 25, 'a shadow behind recordsKeptMax holds no more than that')
  t.same(kept(m), [121, 200])
  t.equal(trimOplogRetained(m.db, bounds, 121, Date.now() + bounds.recordAgeMsMax + 1, 1000), 75, 'past the age bound records go, held or not, down to the floor')
  t.same(kept(m), [196, 200])
  t.equal(trimOplogRetained(m.db, bounds, null, nowMs, 1000), 0)
})

t.test('ShadowTracker: the slowest remembered shadow holds; a silent one is forgotten; the count is bounded', async (t) => {
  const tracker = new ShadowTracker(1000)
  t.equal(tracker.neededFromSeq(0), null)
  tracker.seen('sh-000000000001', 'http://127.0.0.1:1', 40, 0)
  tracker.seen('sh-000000000002', undefined, 25, 500)
  t.equal(tracker.neededFromSeq(900), 25)
  t.equal(tracker.neededFromSeq(1200), 25, 'the first is forgotten after 1000 ms of silence')
  t.equal(tracker.count, 1)
  t.equal(tracker.neededFromSeq(1600), null)
  for (let i = 0; i < 16; i++) tracker.seen(`sh-${i.toString(16).padStart(12, '0')}`, undefined, i, 2000)
  t.throws(() => tracker.seen('sh-0000000000ff', undefined, 1, 2000), { code: 'GRN_LIMIT_EXCEEDED' })
})

t.test('a shadow held for resumes; one past the bound re-bootstraps and ends equal', async (t) => {
  const pair = await startPair(t, {}, { retention: bounds })
  const { master } = pair
  await addServers(master)
  let shadow = await pair.startShadow()
  await writeLoad(master, 'a', 2)
  await caughtUp(shadow, master)
  await shadow.close()
  const stoppedAt = shadow.node.queue.seq
  for (let i = 0; i < 30; i++) await master.queue.submit({ type: 'mkdir', path: `/held${i}`, parents: false, mtimeMs: i })
  await master.ticker.tick()
  t.equal(master.db.prepare('SELECT min(seq) FROM oplog').pluck().get(), stoppedAt, 'trimmed up to the stopped shadow, not past it')
  shadow = await pair.startShadow()
  await caughtUp(shadow, master)
  t.equal(shadow.node.follower?.report(Date.now()).bootstrapCount, 0, 'resumed without a snapshot')

  await shadow.close()
  for (let i = 0; i < 80; i++) await master.queue.submit({ type: 'mkdir', path: `/past${i}`, parents: false, mtimeMs: i })
  await master.ticker.tick()
  t.equal(master.db.prepare('SELECT count(*) FROM oplog').pluck().get(), bounds.recordsKeptMax, 'the count bound wins over the hold')
  const refused = await call(master, 'GET', '/oplog', { after: shadow.node.queue.seq, shadowId: shadow.shadowId })
  t.match(refused, { statusCode: 410, body: { code: 'GRN_SNAPSHOT_REQUIRED' } })
  shadow = await pair.startShadow()
  await waitFor(() => shadow.node.follower?.report(Date.now()).bootstrapCount === 1, 'the re-bootstrap')
  await caughtUp(shadow, master)
  t.same(tables(shadow.node.db), tables(master.db))
  t.match((await call(shadow.node, 'GET', '/fs/stat', { path: '/past79' })).body, { path: '/past79', type: 'dir' }, 'serving the new copy')
  t.same(pair.fatal, [])
})
