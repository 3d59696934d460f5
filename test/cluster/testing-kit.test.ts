// Proves the granary/testing kit does what apps rely on: stop() leaves no process and no folder behind;
// each role can be killed and restarted on the same data and port with the data intact; hang/resume stop
// and resume a process; a failed readiness wait and a waitFor timeout report the processes' logs; killing a
// dead process is a clear error, not a hang; bad options are refused; the admin key it makes for a process is
// gone when that process exits.
import t from 'tap'
import { existsSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { dirname, join } from 'node:path'
import { startCluster } from '../../testing/cluster.js'
import { isAlive } from '../../shared/process.js'

async function codeOf (promise: Promise<unknown>): Promise<string | undefined> {
  try { await promise; return undefined } catch (err) { return (err as { code?: string }).code }
}

t.test('stop() kills every process and removes the folder', async (t) => {
  const cluster = await startCluster({ chunkservers: 2, replication: 2 })
  const pids = cluster.processes.map((p) => p.pid)
  t.equal(pids.length, 3)
  t.ok(pids.every((pid) => pid > 0 && isAlive(pid)), 'all running')
  t.ok(existsSync(cluster.dir))
  await cluster.stop()
  t.ok(pids.every((pid) => !isAlive(pid)), 'all gone')
  t.notOk(existsSync(cluster.dir), 'folder removed')
})

t.test('the admin key the kit makes for a process is removed when the process exits', async (t) => {
  const kit = join(process.cwd(), 'dist', 'testing', 'cluster.js')
  const env = { ...process.env }
  delete env.GRANARY_CREDENTIALS   // as in a process whose caller gave no key
  const printed = execFileSync(process.execPath, ['--input-type=module', '-e',
    `const { kitCredentials } = await import(${JSON.stringify(kit)}); const { file } = kitCredentials(); console.log(file, (await import('node:fs')).existsSync(file))`],
  { env, encoding: 'utf8' }).trim()
  const [file, existed] = printed.split(' ')
  t.equal(existed, 'true', `the process made its key (${file})`)
  t.notOk(existsSync(file as string), 'the key file is gone after the process exited')
  t.notOk(existsSync(dirname(file as string)), 'and so is its folder')
})

t.test('kill, restart, hang and resume each role; data survives', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const fs = cluster.client({ deadlineMs: 15_000 })
  await fs.writeFile('/kept.txt', 'kept')

  const masterPort = cluster.master.port
  const oldPid = cluster.master.pid
  await cluster.master.kill()
  t.notOk(isAlive(oldPid), 'master killed by pid')
  t.equal(await codeOf(cluster.master.kill()), 'GRN_INVALID_ARGUMENT', 'killing a dead process is a clear error')
  await cluster.master.start()
  t.equal(cluster.master.port, masterPort, 'same port after restart')
  t.not(cluster.master.pid, oldPid)
  t.equal((await fs.readFile('/kept.txt')).toString(), 'kept', 'data survives a master restart')

  const cs = cluster.chunkservers[1]
  if (cs === undefined) throw new Error('no chunkserver 1')
  const csPort = cs.port
  await cs.restart()
  t.equal(cs.port, csPort)
  await cluster.waitForChunkservers(3)

  cluster.master.hang()
  t.ok(cluster.master.hung)
  t.equal(await codeOf(fs.stat('/kept.txt', { deadlineMs: 300 })), 'GRN_DEADLINE_EXCEEDED', 'a hung master answers nothing')
  cluster.master.resume()
  t.equal((await fs.stat('/kept.txt')).sizeBytes, 4, 'answers again after resume')
  t.throws(() => cluster.master.resume(), { code: 'GRN_INVALID_ARGUMENT' })
})

t.test('failed readiness and waitFor timeouts carry the logs', async (t) => {
  // A cluster that fails to start keeps its folder for its logs; this one's folder is tap's, removed after the test.
  const failed = await codeOfWithMessage(startCluster({ chunkservers: 1, replication: 1, masterArgs: ['--no-such-flag', '1'], dataDir: t.testdir() }))
  t.ok(failed.message.includes('last'), 'message has the log tail')
  t.match(failed.message, /no-such-flag/, 'and the log shows why')

  const cluster = await startCluster({ chunkservers: 1, replication: 1, test: t })
  const timeout = await codeOfWithMessage(cluster.waitFor(() => false, { timeoutMs: 100, what: 'never' }))
  t.equal(timeout.code, 'GRN_TIMEOUT')
  t.match(timeout.message, /master\.log/)
  t.match(timeout.message, /"msg":"ready"/)
})

t.test('bad options are refused', async (t) => {
  t.equal(await codeOf(startCluster({ chunkservers: 0 })), 'GRN_INVALID_ARGUMENT')
  t.equal(await codeOf(startCluster({ bogus: true } as never)), 'GRN_INVALID_ARGUMENT')
  t.equal(await codeOf(startCluster({ heartbeatIntervalMs: 1000, deadAfterMs: 1500 })), 'GRN_INVALID_ARGUMENT')
})

async function codeOfWithMessage (promise: Promise<unknown>): Promise<{ code?: string, message: string }> {
  try { await promise; return { message: '' } } catch (err) { return { code: (err as { code?: string }).code, message: (err as Error).message } }
}
