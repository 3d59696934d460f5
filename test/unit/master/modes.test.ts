// Proves the master stores permission bits: create and mkdir keep the mode they are given (defaults 0644 for
// files, 0755 for folders, 0755 for folders mkdir -p makes on the way, and the root is 0755), complete keeps
// the pending file's mode, stat/list/open report it, a mode out of range is refused, and replaying the oplog
// into a fresh database reproduces every mode row for row.
import t from 'tap'
import { join } from 'node:path'
import type * as p from '../../../shared/protocol.js'
import { openDb } from '../../../master/db.js'
import { readOplog, replayRecord } from '../../../master/oplog.js'
import { addServers, dumpTables, startTestMaster, writeFile, smallChunkBytes } from './fixture.js'

t.test('create and mkdir store modes, and stat, list and open report them', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/' })).body.mode, 0o755, 'the root is 0755')
  t.equal((await m.call<p.FileStat>('POST', '/fs/mkdir', { path: '/private', mode: 0o700 })).body.mode, 0o700)
  t.equal((await m.call<p.FileStat>('POST', '/fs/mkdir', { path: '/plain' })).body.mode, 0o755, 'folders default to 0755')
  const deep = await m.call<p.FileStat>('POST', '/fs/mkdir', { path: '/x/y/z', parents: true, mode: 0o750 })
  t.equal(deep.body.mode, 0o750, 'the named folder gets the mode')
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/x/y' })).body.mode, 0o755, 'folders made on the way get 0755')

  t.equal((await writeFile(m, '/private/run.sh', [5], { mode: 0o755 })).mode, 0o755, 'complete keeps the mode given at create')
  t.equal((await writeFile(m, '/private/key', [smallChunkBytes, 1], { mode: 0o600 })).mode, 0o600)
  t.equal((await writeFile(m, '/private/plain.txt', [1])).mode, 0o644, 'files default to 0644')
  await writeFile(m, '/private/key', [2], { overwrite: true, mode: 0o640 })
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/private/key' })).body.mode, 0o640, 'an overwrite carries its own mode')

  const listed = (await m.call<p.ListReply>('GET', '/fs/list', { path: '/private' })).body.entries
  t.same(listed.map((e) => [e.path, e.mode]), [['/private/key', 0o640], ['/private/plain.txt', 0o644], ['/private/run.sh', 0o755]])
  t.equal((await m.call<p.OpenReply>('GET', '/fs/open', { path: '/private/run.sh' })).body.stat.mode, 0o755)

  const refused = await m.call('POST', '/fs/create', { path: '/bad', mode: 0o10000 })
  t.equal(refused.statusCode, 400, 'a mode beyond 0o7777 is refused by the schema')
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/bad', mode: -1 })).statusCode, 400)
})

t.test('replaying the oplog reproduces every stored mode', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/a/b', parents: true, mode: 0o700 })
  await writeFile(m, '/a/b/exec', [3], { mode: 0o755 })
  await writeFile(m, '/a/secret', [4], { mode: 0o600 })
  const shadow = openDb(join(t.testdir(), 'shadow.db'), 'normal')
  t.teardown(() => shadow.close())
  for (const record of readOplog(m.db, 1, 1000)) replayRecord(shadow, record)
  const modes = (db: typeof shadow): unknown => db.prepare('SELECT id, name, mode FROM inodes ORDER BY id').all()
  t.same(modes(shadow), modes(m.db), 'the same mode on every inode')
  t.match(modes(shadow), [{ name: '', mode: 0o755 }, { name: 'a', mode: 0o755 }, { name: 'b', mode: 0o700 }, { name: 'exec', mode: 0o755 }, { name: 'secret', mode: 0o600 }])
  t.same(dumpTables(shadow), dumpTables(m.db), 'and every table')
})
