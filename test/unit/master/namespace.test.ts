// Proves the namespace routes behave like POSIX (the later node:fs comparison relies on it): mkdir, stat,
// list paging, rename (every replace/refuse case, into-self, root), delete (file, empty, recursive, bound)
// and du, each error code checked with a table snapshot showing nothing changed.
import t, { type Test } from 'tap'
import type * as p from '../../../shared/protocol.js'
import { deleteEntriesPerOpMax } from '../../../shared/limits.js'
import { addServers, dumpTables, startTestMaster, writeFile, type TestMaster } from './fixture.js'

async function refused (t: Test, m: TestMaster, method: 'GET' | 'POST', url: string, payload: unknown, code: string, statusCode?: number): Promise<void> {
  const before = dumpTables(m.db)
  const res = await m.call(method, url, payload)
  t.equal(res.body.code, code, `${url} ${JSON.stringify(payload)} → ${code}`)
  if (statusCode !== undefined) t.equal(res.statusCode, statusCode)
  t.same(dumpTables(m.db), before, 'nothing changed')
}

t.test('mkdir, stat and list', async (t) => {
  const m = await startTestMaster(t)
  const made = await m.call<p.FileStat>('POST', '/fs/mkdir', { path: '/a//b/', parents: true })
  t.equal(made.statusCode, 200)
  t.match(made.body, { path: '/a/b', type: 'dir', sizeBytes: 0, replication: 0, chunkCount: 0, mtimeMs: m.clock.nowMs })
  t.equal((await m.call('POST', '/fs/mkdir', { path: '/a/b', parents: true })).statusCode, 200, 'mkdir -p on an existing dir succeeds')
  t.equal((await m.call<p.FileStat>('POST', '/fs/mkdir', { path: '/', parents: true })).body.inodeId, 1)
  const stat = await m.call<p.FileStat>('GET', '/fs/stat', { path: '/a' })
  t.match(stat.body, { path: '/a', type: 'dir' })
  t.equal((await m.call<p.FileStat>('GET', '/fs/stat', { path: '/' })).body.path, '/')

  for (const name of ['c', 'B', 'a', 'é', 'b']) await m.call('POST', '/fs/mkdir', { path: `/list/${name}`, parents: true })
  const page1 = await m.call<p.ListReply>('GET', '/fs/list', { path: '/list', limit: '2' })
  t.same(page1.body.entries.map((e) => e.path), ['/list/B', '/list/a'], 'bytewise order: upper case first')
  t.equal(page1.body.nextAfter, 'a')
  const page2 = await m.call<p.ListReply>('GET', '/fs/list', { path: '/list', limit: '3', after: 'a' })
  t.same(page2.body.entries.map((e) => e.path), ['/list/b', '/list/c', '/list/é'], 'multi-byte names sort last')
  t.equal(page2.body.nextAfter, null, 'last page says so')
  t.same((await m.call<p.ListReply>('GET', '/fs/list', { path: '/list', after: 'é' })).body, { entries: [], nextAfter: null })

  await refused(t, m, 'POST', '/fs/mkdir', { path: '/a' }, 'GRN_EXISTS', 409)
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/' }, 'GRN_EXISTS')
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/x/y' }, 'GRN_NOT_FOUND', 404)
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/a/../b' }, 'GRN_INVALID_PATH', 400)
  await refused(t, m, 'POST', '/fs/mkdir', { path: 'relative' }, 'GRN_INVALID_PATH')
  await refused(t, m, 'GET', '/fs/stat', { path: '/nope' }, 'GRN_NOT_FOUND')
  await refused(t, m, 'GET', '/fs/list', { path: '/nope' }, 'GRN_NOT_FOUND')
  await refused(t, m, 'GET', '/fs/list', { path: '/a', limit: '0' }, 'GRN_INVALID_ARGUMENT')
})

t.test('a file in the middle of a path is GRN_NOT_DIR; mkdir onto a file is GRN_EXISTS', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await writeFile(m, '/f', [10])
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/f/x' }, 'GRN_NOT_DIR')
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/f/x/y', parents: true }, 'GRN_NOT_DIR')
  await refused(t, m, 'POST', '/fs/mkdir', { path: '/f', parents: true }, 'GRN_EXISTS')
  await refused(t, m, 'GET', '/fs/stat', { path: '/f/x' }, 'GRN_NOT_DIR')
  await refused(t, m, 'GET', '/fs/list', { path: '/f' }, 'GRN_NOT_DIR')
  await refused(t, m, 'POST', '/fs/create', { path: '/f/x' }, 'GRN_NOT_DIR')
  const stat = await m.call<p.FileStat>('GET', '/fs/stat', { path: '/f' })
  t.match(stat.body, { type: 'file', sizeBytes: 10, chunkCount: 1, replication: 2 })
})

t.test('rename: move, replace, refuse', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  for (const dir of ['/d1/sub', '/d2', '/empty', '/full/x']) await m.call('POST', '/fs/mkdir', { path: dir, parents: true })
  await writeFile(m, '/f1', [5])
  await writeFile(m, '/f2', [7])

  const moved = await m.call<p.FileStat>('POST', '/fs/rename', { source: '/d1', target: '/d2/d1' })
  t.match(moved.body, { path: '/d2/d1', type: 'dir' })
  t.equal((await m.call('GET', '/fs/stat', { path: '/d2/d1/sub' })).statusCode, 200, 'children move with their directory')
  t.equal((await m.call('GET', '/fs/stat', { path: '/d1' })).body.code, 'GRN_NOT_FOUND')

  const replaced = await m.call<p.FileStat>('POST', '/fs/rename', { source: '/f1', target: '/f2' })
  t.match(replaced.body, { path: '/f2', sizeBytes: 5 }, 'file onto file replaces it')
  t.equal((m.db.prepare('SELECT count(*) AS n FROM chunks').get() as { n: number }).n, 1, "the replaced file's chunk is gone")
  t.ok(m.registry.all().some((s) => s.commands.size === 1), "the replaced chunk's holders get a delete command")

  t.match((await m.call('POST', '/fs/rename', { source: '/d2', target: '/empty' })).body, { path: '/empty', type: 'dir' }, 'dir onto empty dir')
  t.equal((await m.call('GET', '/fs/stat', { path: '/empty/d1/sub' })).statusCode, 200)

  const same = await m.call<p.FileStat>('POST', '/fs/rename', { source: '/f2', target: '/f2/' })
  t.match(same.body, { path: '/f2' }, 'rename to itself is a no-op')

  await refused(t, m, 'POST', '/fs/rename', { source: '/empty', target: '/full' }, 'GRN_NOT_EMPTY')
  await refused(t, m, 'POST', '/fs/rename', { source: '/f2', target: '/full' }, 'GRN_IS_DIR')
  await refused(t, m, 'POST', '/fs/rename', { source: '/full', target: '/f2' }, 'GRN_NOT_DIR')
  await refused(t, m, 'POST', '/fs/rename', { source: '/empty', target: '/empty/d1/sub/x' }, 'GRN_RENAME_INTO_SELF')
  await refused(t, m, 'POST', '/fs/rename', { source: '/empty', target: '/empty/nope/x' }, 'GRN_NOT_FOUND', 404)
  await refused(t, m, 'POST', '/fs/rename', { source: '/empty/d1/sub', target: '/empty/d1' }, 'GRN_NOT_EMPTY', 409)
  await refused(t, m, 'POST', '/fs/rename', { source: '/', target: '/x' }, 'GRN_INVALID_PATH')
  await refused(t, m, 'POST', '/fs/rename', { source: '/full', target: '/' }, 'GRN_INVALID_PATH')
  await refused(t, m, 'POST', '/fs/rename', { source: '/missing', target: '/x' }, 'GRN_NOT_FOUND')
  await refused(t, m, 'POST', '/fs/rename', { source: '/f2', target: '/f2/x' }, 'GRN_NOT_DIR')
})

t.test('delete for good (skipTrash): file, empty dir, recursive, root', async (t) => {
  const m = await startTestMaster(t)
  await addServers(m, 2)
  await m.call('POST', '/fs/mkdir', { path: '/t/a/b', parents: true })
  await m.call('POST', '/fs/mkdir', { path: '/e' })
  await writeFile(m, '/t/a/b/f', [65536, 3])
  await writeFile(m, '/t/g', [1])
  await writeFile(m, '/h', [2])

  await refused(t, m, 'POST', '/fs/delete', { path: '/t', skipTrash: true }, 'GRN_NOT_EMPTY')
  await refused(t, m, 'POST', '/fs/delete', { path: '/', recursive: true, skipTrash: true }, 'GRN_INVALID_PATH')
  await refused(t, m, 'POST', '/fs/delete', { path: '/zz', skipTrash: true }, 'GRN_NOT_FOUND')

  t.same((await m.call('POST', '/fs/delete', { path: '/h', skipTrash: true })).body, { deletedFiles: 1, deletedDirs: 0, deletedChunks: 1, trashPath: null })
  t.same((await m.call('POST', '/fs/delete', { path: '/e', skipTrash: true })).body, { deletedFiles: 0, deletedDirs: 1, deletedChunks: 0, trashPath: null })
  const du = await m.call<p.DuReply>('GET', '/fs/du', { path: '/t' })
  t.same(du.body, { path: '/t', fileCount: 2, dirCount: 3, sizeBytes: 65536 + 3 + 1 })
  t.same((await m.call('POST', '/fs/delete', { path: '/t', recursive: true, skipTrash: true })).body, { deletedFiles: 2, deletedDirs: 3, deletedChunks: 3, trashPath: null })
  t.same((m.db.prepare('SELECT count(*) AS n FROM inodes').get() as { n: number }).n, 1, 'only the root is left')
  t.same(m.db.prepare('SELECT count(*) AS n FROM replicas').get(), { n: 0 })
  const commands = m.registry.all().reduce((n, s) => n + s.commands.size, 0)
  t.equal(commands, 4 * 2, 'every deleted replica (4 chunks × 2) became a delete command')
  t.same((await m.call('GET', '/fs/du', { path: '/' })).body, { path: '/', fileCount: 0, dirCount: 1, sizeBytes: 0 })
})

t.test('a recursive delete for good or du over deleteEntriesPerOpMax entries is refused', async (t) => {
  const m = await startTestMaster(t)
  await m.call('POST', '/fs/mkdir', { path: '/big' })
  const bigId = (m.db.prepare("SELECT id FROM inodes WHERE name = 'big'").get() as { id: number }).id
  const insert = m.db.prepare("INSERT INTO inodes (parentId, name, type, state, mtimeMs) VALUES (?, ?, 'dir', 'closed', 0)")
  m.db.transaction(() => { for (let i = 0; i < deleteEntriesPerOpMax; i++) insert.run(bigId, `d${i}`) })()
  const count = (): unknown => m.db.prepare('SELECT (SELECT count(*) FROM inodes) AS inodes, (SELECT seq FROM meta) AS seq').get()
  const before = count()
  const res = await m.call('POST', '/fs/delete', { path: '/big', recursive: true, skipTrash: true })
  t.match(res, { statusCode: 413, body: { code: 'GRN_LIMIT_EXCEEDED' } })
  t.same(count(), before, 'nothing deleted, nothing logged')
  t.equal((await m.call('GET', '/fs/du', { path: '/big' })).body.code, 'GRN_LIMIT_EXCEEDED')
  t.equal((await m.call('POST', '/fs/delete', { path: '/big/d7', skipTrash: true })).statusCode, 200, 'smaller deletes still work')
  const du = await m.call<p.DuReply>('GET', '/fs/du', { path: '/big' })
  t.same(du.body, { path: '/big', fileCount: 0, dirCount: deleteEntriesPerOpMax, sizeBytes: 0 }, 'exactly at the bound is allowed')
})
