// Proves the bootstrap snapshot: an online backup taken while the group commit keeps writing is a consistent
// database whose meta row names exactly the seq its tables hold; the tar stream round-trips it with its sha256;
// a flipped byte, a truncated stream or an unexpected entry is refused with GRN_INTEGRITY; and installing it
// replaces the data folder's database and its WAL files.
import t from 'tap'
import Database from 'better-sqlite3'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import { openDb, readMeta, schemaVersion } from '../../../master/db.js'
import { installSnapshot, makeSnapshot, packSnapshot, receiveSnapshot } from '../../../master/snapshot.js'
import { replayRecord, readOplog } from '../../../master/oplog.js'
import { dumpTables, startTestMaster } from './fixture.js'

async function bytesOf (stream: Readable): Promise<Buffer> {
  return Buffer.concat(await stream.toArray() as Buffer[])
}

t.test('a backup taken during writes is consistent at its own seq, and survives the tar round trip', async (t) => {
  const m = await startTestMaster(t)
  for (let i = 0; i < 2000; i++) void m.queue.submit({ type: 'mkdir', path: `/d${i}`, parents: false, mtimeMs: i })
  const snapshotting = makeSnapshot(m.db, join(t.testdirName, 'snaps'), 42)
  for (let i = 2000; i < 4000; i++) void m.queue.submit({ type: 'mkdir', path: `/d${i}`, parents: false, mtimeMs: i })
  const made = await snapshotting
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(m.queue.seq, 4000)
  t.ok(made.manifest.seq > 0 && made.manifest.seq <= 4000, `snapshot at seq ${made.manifest.seq}`)
  t.match(made.manifest, { term: 1, schemaVersion, createdAtMs: 42 })

  const received = await receiveSnapshot(packSnapshot(made), join(t.testdirName, 'recv'))
  t.equal(received.manifest.seq, made.manifest.seq)
  t.match(received.manifest.sha256, /^[0-9a-f]{64}$/)
  t.ok(readFileSync(received.file).equals(readFileSync(made.file)), 'the same bytes arrive')

  // Consistent: its inode count is exactly what its seq says, and replaying the rest of the master's log on it
  // reproduces the master (replayRecord asserts every result on the way).
  const copy = openDb(received.file, 'normal')
  t.teardown(() => copy.close())
  t.equal(copy.prepare('SELECT count(*) FROM inodes').pluck().get(), 1 + made.manifest.seq, 'root + one directory per record')
  for (const record of readOplog(m.db, made.manifest.seq + 1, 10_000)) replayRecord(copy, record)
  t.same(dumpTables(copy, ['meta', 'inodes', 'sqlite_sequence']), dumpTables(m.db, ['meta', 'inodes', 'sqlite_sequence']))
})

t.test('a damaged or incomplete stream is refused', async (t) => {
  const m = await startTestMaster(t)
  for (let i = 0; i < 50; i++) await m.queue.submit({ type: 'mkdir', path: `/d${i}`, parents: false, mtimeMs: i })
  const made = await makeSnapshot(m.db, join(t.testdirName, 'snaps'), 1)
  const tar = await bytesOf(packSnapshot(made))

  const flipped = Buffer.from(tar)
  flipped[512 + 5000] = (flipped[512 + 5000] as number) ^ 0xff   // inside the database entry (after its 512-byte header)
  await t.rejects(receiveSnapshot(Readable.from([flipped]), join(t.testdirName, 'a')), { code: 'GRN_INTEGRITY', message: /sha256/ })

  const truncated = tar.subarray(0, tar.length - 2048)   // the manifest is gone
  await t.rejects(receiveSnapshot(Readable.from([truncated]), join(t.testdirName, 'b')), { code: 'GRN_INTEGRITY' })

  const broken = new PassThrough()
  broken.end(Buffer.alloc(1024, 7))
  await t.rejects(receiveSnapshot(broken, join(t.testdirName, 'c')))
})

t.test('installSnapshot replaces the database and its WAL files', async (t) => {
  const m = await startTestMaster(t)
  await m.queue.submit({ type: 'mkdir', path: '/kept', parents: false, mtimeMs: 1 })
  const made = await makeSnapshot(m.db, join(t.testdirName, 'snaps'), 1)
  const received = await receiveSnapshot(packSnapshot(made), join(t.testdirName, 'recv'))
  const dataDir = join(t.testdirName, 'data')
  mkdirSync(dataDir)
  for (const name of ['master.db', 'master.db-wal', 'master.db-shm']) writeFileSync(join(dataDir, name), 'old')
  installSnapshot(dataDir, received.file)
  t.notOk(existsSync(join(dataDir, 'master.db-wal')))
  t.notOk(existsSync(join(dataDir, 'master.db-shm')))
  t.notOk(existsSync(received.file), 'moved, not copied')
  const db = new Database(join(dataDir, 'master.db'), { readonly: true })
  t.teardown(() => db.close())
  t.equal(readMeta(db).seq, 1)
})
