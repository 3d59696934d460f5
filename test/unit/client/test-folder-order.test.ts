// The premise of test/helpers/up-cluster.ts, checked against the tap this project runs: in a test whose first
// teardown is registered before its t.testdir() call, every teardown runs while the folder is still there; in a
// test that makes its folder first, the folder is removed before its teardowns run (so a cluster they stop was
// running while its folder went). If a tap upgrade changes this, this test says so before a cluster test hangs.
import t from 'tap'
import { existsSync } from 'node:fs'

t.test('the order tap removes a test folder in, relative to its teardowns', async (t) => {
  const seen: Record<'first' | 'later' | 'folderFirst', boolean | undefined> = { first: undefined, later: undefined, folderFirst: undefined }
  let dir = ''
  await t.test('a teardown registered before the folder is made', async (sub) => {
    sub.teardown(() => { seen.first = existsSync(dir) })
    dir = sub.testdir({ 'file.txt': 'x' })
    sub.teardown(() => { seen.later = existsSync(dir) })
    sub.ok(existsSync(dir), 'the folder exists during the test')
  })
  t.equal(seen.first, true, 'the first teardown (upClusterIn\'s stop) runs while the folder is there')
  t.equal(seen.later, true, 'so does one registered after the folder was made')
  t.equal(existsSync(dir), false, 'the folder is removed at the end')
  let folderFirstDir = ''
  await t.test('the folder made before any teardown', async (sub) => {
    folderFirstDir = sub.testdir({ 'file.txt': 'x' })
    sub.teardown(() => { seen.folderFirst = existsSync(folderFirstDir) })
    sub.ok(existsSync(folderFirstDir), 'the folder exists during the test')
  })
  t.equal(seen.folderFirst, false, 'the folder is already gone when the teardown runs: the order upClusterIn avoids')
})
