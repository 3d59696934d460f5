// Proves granary up does not hot-loop on a master that cannot start: its database is overwritten with garbage
// while it runs, then it is SIGKILLed. The warm spare and then cold starts fail; the supervisor tries at most 5
// times in any 30 s, says why each attempt failed (the master's own error line: SQLITE_NOTADB), gives up, and
// cluster.json marks the master failed.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { upClusterIn } from '../helpers/up-cluster.js'

t.test('a master that cannot start is reported with its own reason, and not retried in a hot loop', async (t) => {
  const { cluster } = upClusterIn(t, { chunkservers: 1, shadows: 0, heartbeatIntervalMs: 200, restartDelayMs: 0, startTimeoutMs: 60_000 })
  await cluster.start()
  const master = cluster.master()
  const dataDir = join(master.logPath, '..', '..', 'master')
  // Garbage in place (same file): the running master is idle and does not notice before it is killed.
  writeFileSync(join(dataDir, 'master.db'), Buffer.alloc(64 * 1024, 0x5a))
  writeFileSync(join(dataDir, 'master.db-wal'), Buffer.alloc(0))
  process.kill(master.pid, 'SIGKILL')
  const gaveUp = await cluster.waitForLine((text) => text.includes('giving up on it'), 0, 90_000, 'the supervisor to give up')
  // The bound is a sliding window (5 per 30 s): on a slow machine an early attempt may leave it before the end.
  const attempts = cluster.lines.filter((l) => l.text.includes('; restarting')).map((l) => l.atMs)
  const mostInAWindow = Math.max(...attempts.map((atMs) => attempts.filter((other) => other <= atMs && other > atMs - 30_000).length))
  t.ok(attempts.length >= 5, `it kept trying while the window allowed (${attempts.length} attempts)`)
  t.ok(mostInAWindow <= 5, `never more than 5 attempts in 30 s (${mostInAWindow})`)
  t.match(gaveUp.text, /failed to restart: .*(not a database|SQLITE|GRN_)/, `the reason names the failure: ${gaveUp.text}`)
  t.equal(cluster.master().state, 'failed')
})
