// Proves `granary up`'s supervisor stops on SIGTERM while a restart waits out --restart-delay-ms, instead of
// staying alive until the delay ends (issue 14 item 9: it did not stop within 10 s). The supervisor runs in
// a child process with its real signal handling and the real up.ts Supervisor; only spawnRole is replaced,
// by one that starts small stand-in processes (they ignore their stdin, so only the supervisor's kill can
// end them). The test SIGKILLs the master by its PID from cluster.json, waits for the "restarting" line,
// SIGTERMs the supervisor with a 10-minute restart delay pending, and asserts it exits within a named bound
// and that every process it started is gone.
import t from 'tap'
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

const restartDelayMs = 600_000   // the longest --restart-delay-ms takes
const startBoundMs = 30_000      // the supervisor starts its stand-ins and prints its summary
const exitBoundMs = 5_000        // after SIGTERM; the issue saw more than 10 s

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('SIGTERM during a restart delay stops the supervisor at once, and every child with it', async (t) => {
  const dir = t.testdir()
  const dataDir = join(dir, 'data')
  const upUrl = pathToFileURL(join(import.meta.dirname, '../../../client/cluster/up.ts')).href
  const script = join(dir, 'up.mjs')
  writeFileSync(script, `
import { spawn } from 'node:child_process'
import { Supervisor } from ${JSON.stringify(upUrl)}
let nextPort = 40000
const standIn = async () => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  await new Promise((resolve, reject) => { child.once('spawn', resolve); child.once('error', reject) })
  const port = nextPort++
  return { child, pid: child.pid, ready: { port, url: 'http://127.0.0.1:' + port }, exited }
}
const spare = { prepare () {}, take: async () => undefined, stop () {}, discard () {} }
const supervisor = new Supervisor(${JSON.stringify(dataDir)}, ${restartDelayMs}, { spawnRole: standIn, spare })
await supervisor.start({ port: 0, chunkserverCount: 2, shadowCount: 1, heartbeatIntervalMs: 100, deadAfterMs: 1000 })
await supervisor.stopped
`)
  const up = spawn(process.execPath, [...process.execArgv, script], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  up.stdout.on('data', (chunk: Buffer) => { output += chunk.toString() })
  up.stderr.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => up.once('exit', (code, signal) => resolve({ code, signal })))
  let pids: number[] = []
  t.teardown(() => {
    for (const pid of [...pids, up.pid ?? 0]) if (pid > 0 && isAlive(pid)) process.kill(pid, 'SIGKILL')
  })
  const waitFor = async (pattern: RegExp, boundMs: number, what: string): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer)
        up.stdout.off('data', check)
        up.off('exit', gone)
        if (err === undefined) resolve()
        else reject(err)
      }
      const check = (): void => { if (pattern.test(output)) done() }
      const gone = (): void => { done(new Error(`${what}: the supervisor exited first; output:\n${output}`)) }
      const timer = setTimeout(() => { done(new Error(`${what}: not seen within ${boundMs} ms; output:\n${output}`)) }, boundMs)
      up.stdout.on('data', check)   // after the listener above that appends to output
      up.once('exit', gone)
      check()
    })
  }

  await waitFor(/cluster up/, startBoundMs, 'the summary')
  const cluster = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: Array<{ name: string, pid: number }> }
  pids = cluster.processes.map((p) => p.pid)
  t.equal(pids.length, 4, 'master, shadow and two chunkservers')
  const master = cluster.processes.find((p) => p.name === 'master')
  t.ok(master !== undefined, 'the master is listed')
  process.kill(master!.pid, 'SIGKILL')
  await waitFor(/master \(pid \d+\) killed by SIGKILL; restarting/, startBoundMs, 'the restart line')

  const termAtMs = Date.now()
  up.kill('SIGTERM')
  const outcome = await Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), exitBoundMs).unref())])
  if (outcome === null) t.fail(`still running ${exitBoundMs} ms after SIGTERM (its restart delay is ${restartDelayMs} ms); output:\n${output}`)
  t.same(outcome, { code: 0, signal: null }, `a clean exit within ${exitBoundMs} ms of SIGTERM, not after the delay`)
  t.ok(Date.now() - termAtMs < exitBoundMs, 'promptly')
  t.same(pids.filter(isAlive), [], 'every process it started is gone')
  t.notMatch(output, /restarted as pid/, 'the master was not restarted after the stop')
  const after = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: Array<{ name: string, state: string }> }
  t.same(after.processes.map((p) => [p.name, p.state]), [['master', 'stopped'], ['shadow0', 'stopped'], ['chunkserver0', 'stopped'], ['chunkserver1', 'stopped']], 'cluster.json says so')
})
