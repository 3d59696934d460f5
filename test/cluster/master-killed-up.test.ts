// Proves granary up's supervision of the master on real processes: a SIGKILLed master is restarted at once from
// the warm spare (its log shows the activation; stat works again), cluster.json names the
// new pid with the exit it saw and why; and restarts are bounded (after 5 in 30 s the supervisor gives up and
// says so, instead of hot-looping). master-killed-up-fail.test.ts covers a master that cannot start.
import t, { type Test } from 'tap'
import { readFileSync } from 'node:fs'
import { signedRequest as request } from '../../testing/cluster.js'
import type { UpCluster } from '../../client/cluster/chaos-cluster.js'
import { upClusterIn } from '../helpers/up-cluster.js'
import { readCredentialsFile } from '../../client/credentials.js'

async function statOk (url: string, credentialsFile: string): Promise<boolean> {
  try {
    const res = await request(`${url}/fs/stat?path=/`, { headersTimeout: 1000, bodyTimeout: 1000 }, readCredentialsFile(credentialsFile))
    await res.body.dump()
    return res.statusCode === 200
  } catch { return false }
}

async function until (predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function spareReady (logPath: string, masterPid: number): boolean {
  return readFileSync(logPath, 'utf8').split('\n').some((l) => l.includes('"msg":"standby"') && !l.includes(`"pid":${masterPid},`))
}

function startUp (t: Test, restartDelayMs: number): UpCluster {
  return upClusterIn(t, { chunkservers: 1, shadows: 0, heartbeatIntervalMs: 200, restartDelayMs, startTimeoutMs: 60_000 }).cluster
}

t.test('a killed master is restarted from the warm spare, cluster.json says why, restarts are bounded', async (t) => {
  const cluster = startUp(t, 0)
  await cluster.start()
  const first = cluster.master()
  await until(() => spareReady(first.logPath, first.pid), 60_000, 'the spare to be warm')

  const killAtMs = Date.now()
  process.kill(first.pid, 'SIGKILL')
  await until(async () => await statOk(first.url, cluster.credentialsFile), 10_000, 'the master to answer again')
  const recoveredMs = Date.now() - killAtMs
  await cluster.waitForLine((text) => text.includes('restarted as pid'), 0, 10_000, 'the restart line')
  const second = cluster.master()
  t.not(second.pid, first.pid, 'a new master process')
  t.equal(second.url, first.url, 'on the same port')
  t.equal(second.state, 'running')
  t.match(second.lastExit, { pid: first.pid, reason: 'killed by SIGKILL' }, 'cluster.json: which process died, and why')
  t.ok((second.lastExit?.atMs ?? 0) >= killAtMs, 'and when the supervisor saw it')
  t.ok(cluster.masterLogLines(first.logPath, second.pid).some((l) => l.msg.startsWith('standby activated')), 'the restart was the spare\'s activation')
  t.comment(`stat answered again ${recoveredMs} ms after the SIGKILL (speed is measured by npm run bench, not asserted here)`)
  t.ok(cluster.lines.some((l) => l.text.includes(`master (pid ${first.pid}) killed by SIGKILL; restarting`)), 'the supervisor said why it restarted')

  // Four more deaths use up the window's 5 restarts; the sixth death is not restarted.
  for (let i = 0; i < 5; i++) {
    await until(() => cluster.master().state === 'running', 30_000, 'the master running')
    const current = cluster.master()
    const fromLine = cluster.lines.length
    process.kill(current.pid, 'SIGKILL')
    if (i < 4) await cluster.waitForLine((text) => text.includes('restarted as pid'), fromLine, 30_000, `restart ${i + 2}`)
    else await cluster.waitForLine((text) => text.includes('giving up on it'), fromLine, 30_000, 'the supervisor to give up')
  }
  t.equal(cluster.master().state, 'failed', 'cluster.json: failed, not restarting in a loop')
  if (cluster.master().state !== 'failed') t.comment(cluster.lines.map((l) => l.text).join('\n') + '\n' + JSON.stringify(cluster.master()))
  t.notOk(await statOk(first.url, cluster.credentialsFile), 'and no master is running')
})
