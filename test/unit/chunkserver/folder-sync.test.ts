// Proves the chunk folders' group fsync (chunkserver/folder-sync.ts): concurrent syncs of one folder share
// rounds (at most the one in flight plus one more), a sync never resolves on a round that began before it, a
// failing folder rejects its waiters and the next round opens it anew, and descriptors stay bounded.
import t from 'tap'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { FolderSync, folderSyncFdsMax } from '../../../chunkserver/folder-sync.js'

t.test('sixteen writes finishing together into one folder share two fsyncs', async (t) => {
  const dir = t.testdir()
  const sync = new FolderSync()
  t.teardown(async () => await sync.close())
  await Promise.all(Array.from({ length: 16 }, async () => { await sync.sync(dir) }))
  t.equal(sync.requests, 16)
  t.ok(sync.rounds >= 1 && sync.rounds <= 2, `${sync.rounds} rounds for 16 syncs`)
  // Folders apart are synced apart, each once.
  const folders = ['a', 'b', 'c'].map((name) => join(dir, name))
  for (const folder of folders) await mkdir(folder)
  const before = sync.rounds
  await Promise.all(folders.map(async (folder) => { await sync.sync(folder) }))
  t.equal(sync.rounds - before, 3)
})

t.test('a sync that arrives during a round waits for the next one', async (t) => {
  const dir = t.testdir()
  const sync = new FolderSync()
  t.teardown(async () => await sync.close())
  const first = sync.sync(dir)
  const roundsAtFirst = sync.rounds
  const second = sync.sync(dir)    // the first round has already started: this one cannot be covered by it
  await first
  t.equal(sync.rounds, roundsAtFirst + 1, 'the first resolved after its own round')
  await second
  t.equal(sync.rounds, roundsAtFirst + 2, 'the second waited for a round of its own')
})

t.test('a folder that is gone rejects its waiters; once back, the next round succeeds', async (t) => {
  const dir = join(t.testdir(), 'gone')
  const sync = new FolderSync()
  t.teardown(async () => await sync.close())
  const results = await Promise.allSettled([sync.sync(dir), sync.sync(dir)])
  t.same(results.map((r) => r.status), ['rejected', 'rejected'])
  t.match((results[0] as PromiseRejectedResult).reason, { code: 'ENOENT' })
  await mkdir(dir)
  await sync.sync(dir)
  t.pass('synced after the folder came back')
  await rm(dir, { recursive: true })
})

t.test('descriptors are bounded: the least recently used folder is closed past the limit', async (t) => {
  t.ok(folderSyncFdsMax >= 257, 'room for the 256 chunk folders and tmp')
  const dir = t.testdir()
  const sync = new FolderSync()
  t.teardown(async () => await sync.close())
  const count = folderSyncFdsMax + 20
  for (let i = 0; i < count; i += 64) {
    const batch = Array.from({ length: Math.min(64, count - i) }, (_, j) => join(dir, String(i + j)))
    await Promise.all(batch.map(async (folder) => { await mkdir(folder); await sync.sync(folder) }))
  }
  t.equal(sync.rounds, count)
  t.equal(sync.keptCount, folderSyncFdsMax, 'no more descriptors than the limit')
})
