// Proves the trash on the master: a delete moves the entry to /.trash/<deletion time>/<its path> keeping its
// inode and chunks (no replica deleted), restore brings the newest copy back and never replaces, deleting inside
// the trash or with skipTrash is for good, a checkpoint past the retention is purged by the tick (its replicas
// become delete commands) in bounded ops, trashRetentionMs 0 turns the trash off, and replaying the oplog of all
// this into a fresh database gives the same tables (a shadow stays identical).
import t, { type Test } from 'tap'
import { join } from 'node:path'
import type * as p from '../../../shared/protocol.js'
import { trashPurgeEntriesPerOpMax } from '../../../shared/limits.js'
import { openDb } from '../../../master/db.js'
import { readOplog, replayRecord } from '../../../master/oplog.js'
import { addServers, dumpTables, heartbeat, startTestMaster, writeFile, type TestMaster } from './fixture.js'

const hourMs = 60 * 60_000

// The fixture's chunkservers heartbeat only when told to: after moving the clock, they must again to stay alive.
async function advance (m: TestMaster, ms: number, servers: number): Promise<void> {
  m.clock.nowMs += ms
  for (let i = 1; i <= servers; i++) await heartbeat(m, i)   // not a full report: that would drop the fixture's replica rows
}

function deleteCommands (m: TestMaster): number {
  return m.registry.all().reduce((n, s) => n + s.commands.size, 0)
}

async function refused (t: Test, m: TestMaster, url: string, payload: unknown, code: string): Promise<void> {
  const before = dumpTables(m.db)
  const res = await m.call('POST', url, payload)
  t.equal(res.body.code, code, `${url} ${JSON.stringify(payload)} → ${code}`)
  t.same(dumpTables(m.db), before, 'nothing changed')
}

t.test('delete moves to the trash; restore brings the newest copy back, never over an existing entry', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/docs' })
  const written = await writeFile(m, '/docs/a.txt', [65536, 10])
  const checkpoint = new Date(m.clock.nowMs).toISOString()

  const moved = await m.call<p.DeleteReply>('POST', '/fs/delete', { path: '/docs/a.txt' })
  t.same(moved.body, { deletedFiles: 0, deletedDirs: 0, deletedChunks: 0, trashPath: `/.trash/${checkpoint}/docs/a.txt` })
  t.equal((await m.call('GET', '/fs/stat', { path: '/docs/a.txt' })).body.code, 'GRN_NOT_FOUND', 'gone from its folder')
  const inTrash = await m.call<p.FileStat>('GET', '/fs/stat', { path: moved.body.trashPath as string })
  t.match(inTrash.body, { inodeId: written.inodeId, sizeBytes: 65546, chunkCount: 2 }, 'the same file, chunks and all, in the trash')
  t.equal(deleteCommands(m), 0, 'no replica is deleted while it is in the trash')

  // The same path deleted again in the same millisecond: a suffixed checkpoint, still in time order.
  await writeFile(m, '/docs/a.txt', [5])
  const again = await m.call<p.DeleteReply>('POST', '/fs/delete', { path: '/docs/a.txt' })
  t.equal(again.body.trashPath, `/.trash/${checkpoint}-1/docs/a.txt`)

  await writeFile(m, '/docs/a.txt', [7])
  await refused(t, m, '/fs/restore', { path: '/docs/a.txt' }, 'GRN_EXISTS')
  await refused(t, m, '/fs/restore', { path: '/never/deleted' }, 'GRN_NOT_FOUND')
  await refused(t, m, '/fs/restore', { path: `/.trash/${checkpoint}` }, 'GRN_INVALID_PATH')
  await refused(t, m, '/fs/restore', { path: '/docs/a.txt', target: '/.trash/x' }, 'GRN_INVALID_PATH')

  m.clock.nowMs += 1000
  const newest = await m.call<p.RestoreReply>('POST', '/fs/restore', { path: '/docs/a.txt', target: '/old/copies/a.txt' })
  t.equal(newest.body.from, `/.trash/${checkpoint}-1/docs/a.txt`, 'the newest trashed copy')
  t.match(newest.body.stat, { path: '/old/copies/a.txt', sizeBytes: 5 }, 'restored where asked, parents made')
  const older = await m.call<p.RestoreReply>('POST', '/fs/restore', { path: `/.trash/${checkpoint}/docs/a.txt`, target: '/docs/b.txt' })
  t.match(older.body.stat, { path: '/docs/b.txt', inodeId: written.inodeId, sizeBytes: 65546 }, 'a trash path names one copy exactly')
  const open = await m.call<p.OpenReply>('GET', '/fs/open', { path: '/docs/b.txt' })
  t.equal(open.body.chunks.filter((c) => c.replicas.length === 2).length, 2, 'its chunks kept every replica')
})

t.test('folders: recursive goes to the trash whole; deleting in the trash, skipTrash or the root is for good', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/p/q', parents: true })
  await writeFile(m, '/p/q/f1', [3])
  await writeFile(m, '/p/f2', [4])
  await refused(t, m, '/fs/delete', { path: '/p' }, 'GRN_NOT_EMPTY')
  await refused(t, m, '/fs/delete', { path: '/', recursive: true }, 'GRN_INVALID_PATH')
  await refused(t, m, '/fs/delete', { path: '/nope' }, 'GRN_NOT_FOUND')
  const moved = await m.call<p.DeleteReply>('POST', '/fs/delete', { path: '/p', recursive: true })
  const trashed = moved.body.trashPath as string
  t.match(trashed, /^\/\.trash\/[^/]+\/p$/)
  t.equal((await m.call<p.DuReply>('GET', '/fs/du', { path: trashed })).body.fileCount, 2, 'the subtree moved whole')

  const forGood = await m.call<p.DeleteReply>('POST', '/fs/delete', { path: `${trashed}/q`, recursive: true })
  t.same(forGood.body, { deletedFiles: 1, deletedDirs: 1, deletedChunks: 1, trashPath: null }, 'inside the trash: deleted at once')
  t.equal(deleteCommands(m), 2, "its chunk's 2 replicas became delete commands")

  await writeFile(m, '/s', [1])
  const skipped = await m.call<p.DeleteReply>('POST', '/fs/delete', { path: '/s', skipTrash: true })
  t.same(skipped.body, { deletedFiles: 1, deletedDirs: 0, deletedChunks: 1, trashPath: null }, 'skipTrash deletes at once')

  const restored = await m.call<p.RestoreReply>('POST', '/fs/restore', { path: '/p' })
  t.equal(restored.body.stat.path, '/p')
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/p' })).body.entries.map((e) => e.path), ['/p/f2'], 'what was left of the folder came back')
})

t.test('the tick purges checkpoints past the retention, oldest first, in bounded ops', async (t) => {
  const m = await startTestMaster(t, { trashRetentionMs: hourMs })
  await addServers(m, 2)
  await writeFile(m, '/old', [1])
  await m.call('POST', '/fs/delete', { path: '/old' })
  await advance(m, hourMs / 2, 2)
  await writeFile(m, '/young', [2])
  await m.call('POST', '/fs/delete', { path: '/young' })

  await advance(m, hourMs / 2 + 1, 2)
  await m.ticker.tick()
  const names = (await m.call<p.ListReply>('GET', '/fs/list', { path: '/.trash' })).body.entries.map((e) => e.path)
  t.equal(names.length, 1, 'the checkpoint past the retention was purged')
  t.match(names[0], new RegExp(new Date(m.clock.nowMs - hourMs / 2 - 1).toISOString().replace(/[.]/g, '\\.')), 'the younger one stays')
  t.equal(deleteCommands(m), 2, "the purged file's replicas became delete commands")
  t.equal(m.db.prepare('SELECT count(*) FROM chunks').pluck().get(), 1, 'only the young file keeps a chunk row')

  // A checkpoint bigger than one op: purged over several ops, leaves first, every row gone at the end.
  const big = new Date(m.clock.nowMs).toISOString()
  await m.call('POST', '/fs/mkdir', { path: `/.trash/${big}/d/e`, parents: true })
  const parentId = m.db.prepare("SELECT id FROM inodes WHERE name = 'e'").pluck().get() as number
  const insert = m.db.prepare("INSERT INTO inodes (parentId, name, type, state, mtimeMs) VALUES (?, ?, 'dir', 'closed', 0)")
  m.db.transaction(() => { for (let i = 0; i < trashPurgeEntriesPerOpMax + 5; i++) insert.run(parentId, `x${i}`) })()
  const first = await m.queue.submit({ type: 'purgeTrash', checkpoint: big, entriesMax: trashPurgeEntriesPerOpMax })
  t.equal(first.done, false)
  t.ok(first.deletedDirs > 0 && first.deletedDirs <= trashPurgeEntriesPerOpMax, `one op deletes at most its bound (${first.deletedDirs})`)
  const second = await m.queue.submit({ type: 'purgeTrash', checkpoint: big, entriesMax: trashPurgeEntriesPerOpMax })
  t.equal(second.done, true, 'the next takes the rest')
  t.equal(first.deletedDirs + second.deletedDirs, trashPurgeEntriesPerOpMax + 5 + 3, 'every folder, the checkpoint included')
  t.equal((await m.call('GET', '/fs/stat', { path: `/.trash/${big}` })).body.code, 'GRN_NOT_FOUND')
})

t.test('trashRetentionMs 0: no trash, deletes are for good', async (t) => {
  const m = await startTestMaster(t, { trashRetentionMs: 0 })
  await addServers(m, 2)
  await writeFile(m, '/f', [1])
  t.same((await m.call('POST', '/fs/delete', { path: '/f' })).body, { deletedFiles: 1, deletedDirs: 0, deletedChunks: 1, trashPath: null })
  t.equal((await m.call('GET', '/fs/stat', { path: '/.trash' })).body.code, 'GRN_NOT_FOUND', 'no trash folder made')
})

t.test('a replay of trash moves, restores and purges reproduces the same tables', async (t) => {
  const m = await startTestMaster(t, { trashRetentionMs: hourMs })
  await addServers(m, 3)
  await m.call('POST', '/fs/mkdir', { path: '/r' })
  for (let i = 0; i < 4; i++) await writeFile(m, `/r/f${i}`, [i + 1])
  await m.call('POST', '/fs/delete', { path: '/r/f0' })
  await m.call('POST', '/fs/delete', { path: '/r', recursive: true })
  m.clock.nowMs += 5
  await m.call('POST', '/fs/restore', { path: '/r/f2', target: '/back' })
  await advance(m, hourMs + 1, 3)
  await m.ticker.tick()
  const types = new Set((m.db.prepare('SELECT op FROM oplog').pluck().all() as string[]).map((op) => JSON.parse(op).type))
  t.ok(['delete', 'restore', 'purgeTrash'].every((type) => types.has(type)), 'the log holds every trash op')
  const shadow = openDb(join(t.testdir(), 'shadow.db'), 'normal')
  t.teardown(() => shadow.close())
  for (const record of readOplog(m.db, 1, 10_000)) replayRecord(shadow, record)
  t.same(dumpTables(shadow), dumpTables(m.db), 'same tables after replay')
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/.trash' })).body.entries, [], 'everything past the retention was purged')
})
