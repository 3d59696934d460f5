// Proves the warm spare's contract (master/standby.ts): it warms up on a throwaway database, logs "standby",
// and is activated only by a whole "go" line on its stdin (split across reads is fine; other text is not);
// if stdin closes first — the supervisor died — it exits instead of opening anything; the throwaway databases of
// spares killed during their warm-up are removed by the next one.
import t from 'tap'
import { PassThrough, Writable } from 'node:stream'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { isStandby, removeWarmUpDirsOfDeadSpares, waitForActivation, warmUpDirPrefix } from '../../../master/standby.js'

function capture (): { log: pino.Logger, messages: string[] } {
  const messages: string[] = []
  const sink = new Writable({ write (chunk: Buffer, _enc, done) { for (const l of chunk.toString().split('\n')) if (l !== '') messages.push((JSON.parse(l) as { msg: string }).msg); done() } })
  return { log: pino({ level: 'info' }, sink), messages }
}

t.test('isStandby reads GRANARY_STANDBY', async (t) => {
  t.equal(isStandby({ GRANARY_STANDBY: '1' }), true)
  t.equal(isStandby({}), false)
  t.equal(isStandby({ GRANARY_STANDBY: 'yes' }), false)
})

t.test('a spare waits for a whole "go" line, then resolves', async (t) => {
  const { log, messages } = capture()
  const input = new PassThrough()
  let exited = false
  let activated = false
  const waiting = waitForActivation(log, input, () => { exited = true }).then(() => { activated = true })
  await t.resolves(new Promise<void>((resolve) => {
    const timer = setInterval(() => { if (messages.includes('standby')) { clearInterval(timer); resolve() } }, 5)
  }), 'it announces itself once warm')
  input.write('gox\nhello\ng')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(activated, false, 'other lines and half a line do not activate it')
  input.write('o\n')
  await waiting
  t.equal(activated, true, 'the rest of the line does')
  t.equal(exited, false)
  t.ok(messages.includes('standby activated: opening the database'))
})

t.test('a spare whose supervisor is gone exits', async (t) => {
  const { log } = capture()
  const input = new PassThrough()
  let exited = false
  void waitForActivation(log, input, () => { exited = true })
  await new Promise((resolve) => setTimeout(resolve, 20))
  input.end()
  await new Promise<void>((resolve) => { const timer = setInterval(() => { if (exited) { clearInterval(timer); resolve() } }, 5) })
  t.equal(exited, true, 'stdin closed before "go": exit')
})

t.test('a spare removes the warm-up folders of spares that died, and only those', async (t) => {
  const dir = t.testdir()
  const deadPid = spawnSync(process.execPath, ['-e', '']).pid as number   // exited: its pid is free
  const dead = join(dir, `${warmUpDirPrefix}${deadPid}-AbC123`)
  const live = join(dir, `${warmUpDirPrefix}${process.pid}-XyZ789`)
  const others = [join(dir, 'granary-standby-old'), join(dir, `${warmUpDirPrefix}${deadPid}`), join(dir, 'unrelated')]
  for (const folder of [dead, live, ...others]) { mkdirSync(folder); writeFileSync(join(folder, 'master.db'), 'x') }
  removeWarmUpDirsOfDeadSpares(dir)
  t.notOk(existsSync(dead), 'a dead spare\'s folder is removed')
  t.ok(existsSync(live), 'a running spare\'s folder is kept')
  t.same(readdirSync(dir).sort(), [live, ...others].map((path) => path.slice(dir.length + 1)).sort(), 'names not of the form prefix-pid-suffix are never touched')
  removeWarmUpDirsOfDeadSpares(join(dir, 'no-such-folder'))   // tmpdir unreadable or gone: nothing to do, no throw
})
