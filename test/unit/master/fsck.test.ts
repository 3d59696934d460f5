// Proves fsck's walk and counts on a real master database: files under a path in name order (nested
// directories included, files outside the path not), missing versus under-replicated against the live set,
// a single file as the path, GRN_NOT_FOUND for a missing path, and both bounds (files walked, problems
// listed) reported as truncated with the counts still exact for what was walked.
import t from 'tap'
import type { ServerId } from '../../../shared/ids.js'
import { fsck } from '../../../master/fsck.js'
import { addServers, startTestMaster, writeFile } from './fixture.js'

t.test('walk, counts, bounds', async (t) => {
  const m = await startTestMaster(t)
  const servers = await addServers(m, 3)
  await m.call('POST', '/fs/mkdir', { path: '/a/b', parents: true })
  await writeFile(m, '/a/z', [64 * 1024, 10], { replication: 2 })
  await writeFile(m, '/a/b/y', [20], { replication: 3 })
  await writeFile(m, '/outside', [30], { replication: 1 })

  const healthy = fsck(m.db, '/a', servers)
  t.same({ files: healthy.fileCount, chunks: healthy.chunkCount, healthy: healthy.healthyChunks, truncated: healthy.truncated }, { files: 2, chunks: 3, healthy: 3, truncated: false })

  const none = fsck(m.db, '/', [] as ServerId[])
  t.equal(none.missingChunks, 4, 'no live server: every chunk missing')
  t.same(none.files.map((f) => f.path), ['/a/b/y', '/a/z', '/outside'], 'name order, depth first')

  const one = fsck(m.db, '/', [servers[0] as ServerId])
  t.equal(one.chunkCount, 4)
  t.equal(one.underReplicatedChunks + one.missingChunks + one.healthyChunks, 4)
  t.ok(one.underReplicatedChunks > 0, 'with one live server, replicated chunks are short')

  const file = fsck(m.db, '/a/b/y', [] as ServerId[])
  t.same({ files: file.fileCount, missing: file.missingChunks, path: file.files[0]?.path }, { files: 1, missing: 1, path: '/a/b/y' })

  const capped = fsck(m.db, '/', [] as ServerId[], { filesMax: 2, problemsMax: 100 })
  t.same({ files: capped.fileCount, truncated: capped.truncated }, { files: 2, truncated: true }, 'the file bound stops the walk')
  const listed = fsck(m.db, '/', [] as ServerId[], { filesMax: 100, problemsMax: 2 })
  t.equal(listed.missingChunks, 4, 'counts stay exact')
  t.equal(listed.files.reduce((n, f) => n + f.missing.length, 0), 2, 'only problemsMax chunks listed')
  t.ok(listed.truncated)

  t.throws(() => fsck(m.db, '/nope', servers), { code: 'GRN_NOT_FOUND' })
  const res = await m.call('GET', '/fs/fsck', { path: '/a' })
  t.equal(res.statusCode, 200)
  t.equal((res.body as { fileCount: number }).fileCount, 2, 'served at GET /fs/fsck')
})
