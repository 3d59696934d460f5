// The failover protocol's other cases on real processes (issue 10): a planned hand-over under a writer loop
// (mkdir + 4 KiB files: 0 lost, 0 failed); two shadows promoted at once, and a forced promotion racing an
// automatic one (exactly one master per term); a shadow SIGKILLed under load leaves the in-sync set, writes go on
// without it, and it rejoins after its restart.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { signedRequest as request } from '../../testing/cluster.js'
import type * as p from '../../shared/protocol.js'
import { ClusterProcess, type Cluster } from '../../testing/cluster.js'
import { checkAcked, health, readyWithShadow, startWriter, writesAfterFaultMin, writesBeforeFaultMin } from '../helpers/writer.js'

async function report (url: string): Promise<p.ClusterReport> {
  return await (await request(`${url}/cluster/report`)).body.json() as p.ClusterReport
}

async function promote (url: string, force = false): Promise<{ statusCode: number, body: p.PromoteReply & { code?: string } }> {
  const res = await request(`${url}${'/admin/promote'}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(force ? { force } : {}), headersTimeout: 30_000 })
  return { statusCode: res.statusCode, body: await res.body.json() as p.PromoteReply & { code?: string } }
}

async function secondShadow (t: Test, cluster: Cluster, name: string, args: string[] = []): Promise<ClusterProcess> {
  const shadow = new ClusterProcess(name, 'shadow', join(cluster.dir, name), join(cluster.dir, 'logs', `${name}.log`),
    () => ['--secret-file', cluster.secretFile, '--master', cluster.master.url, '--heartbeat-interval-ms', '200', ...args], 30_000)
  t.teardown(() => shadow.killSync())
  await shadow.start()
  return shadow
}

t.test('planned hand-over under a writer loop: nothing lost, nothing failed', async (t) => {
  const { cluster, shadow, fs } = await readyWithShadow(t, { shadowArgs: ['--no-auto-promote'] })
  const writer = startWriter(fs, { mkdirEvery: 5 })
  t.teardown(writer.stop)
  await cluster.waitFor(async () => writer.acked.size >= writesBeforeFaultMin, { what: 'writes before the hand-over', timeoutMs: 30_000 })
  const promoted = await promote(shadow.url)
  t.equal(promoted.statusCode, 200, JSON.stringify(promoted.body))
  t.equal(promoted.body.term, 2, 'the shadow is master of term 2')
  const ackedAtHandOver = writer.acked.size
  await cluster.waitFor(async () => writer.acked.size >= ackedAtHandOver + writesAfterFaultMin, { what: 'writes through the new master', timeoutMs: 30_000 })
  await writer.stop()
  t.same(writer.failed, [], 'no put or mkdir failed')
  t.equal((await health(shadow.url)).role, 'master')
  const old = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/to-the-old-one' }) })
  const oldBody = await old.body.json() as { code?: string, details?: { masterUrl?: string } }
  t.equal(oldBody.code, 'GRN_NOT_MASTER', 'the old master takes nothing after handing over')
  t.equal(oldBody.details?.masterUrl, shadow.url, 'and names the new master')
  await checkAcked(t, cluster.client({ masters: [shadow.url] }), writer.acked)
})

t.test('two shadows promoted at once, and a forced promotion racing an automatic one: one master per term', async (t) => {
  const { cluster, shadow } = await readyWithShadow(t, { shadowArgs: ['--no-auto-promote'] })
  const other = await secondShadow(t, cluster, 'shadow2', ['--no-auto-promote'])
  await cluster.waitFor(async () => (await report(cluster.master.url)).isr?.length === 2, { what: 'both shadows in sync' })
  const [a, b] = await Promise.all([promote(shadow.url), promote(other.url)])
  const winners = [a, b].filter((r) => r.statusCode === 200)
  t.equal(winners.length, 1, `exactly one promotion won (${a.statusCode} ${a.body.code ?? ''} / ${b.statusCode} ${b.body.code ?? ''})`)
  t.match(a.statusCode === 200 ? b : a, { statusCode: 409, body: { code: 'GRN_VOTE_LOST' } }, 'the other lost the election, and says so')
  const roles = await Promise.all([shadow.url, other.url].map(async (url) => await health(url)))
  t.equal(roles.filter((h) => h.role === 'master').length, 1, 'exactly one of them is master')

  // Now the winner dies for good; the loser (automatic promotion off) is promoted by force while a third shadow,
  // started with automatic promotion on, may stand at the same time. At most one master per term, ever.
  const winnerUrl = a.statusCode === 200 ? shadow.url : other.url
  const loser = a.statusCode === 200 ? other : shadow
  const winner = a.statusCode === 200 ? shadow : other
  const third = new ClusterProcess('shadow3', 'shadow', join(cluster.dir, 'shadow3'), join(cluster.dir, 'logs', 'shadow3.log'),
    () => ['--secret-file', cluster.secretFile, '--master', winnerUrl], 30_000)
  t.teardown(() => third.killSync())
  await third.start()
  await cluster.waitFor(async () => (await health(third.url)).following?.inSync === true, { what: 'the third shadow knows it is in the new master\'s in-sync set' })
  await winner.kill('SIGKILL')
  const forced = await promote(loser.url, true)
  await cluster.waitFor(async () => {
    const healths = await Promise.all([loser.url, third.url].map(async (url) => await health(url).catch(() => null)))
    return healths.some((h) => h?.role === 'master')
  }, { what: 'a new master after the winner died', timeoutMs: 20_000 })
  const healths = await Promise.all([loser.url, third.url].map(async (url) => await health(url)))
  const masters = healths.filter((h) => h.role === 'master')
  t.equal(masters.length, 1, `one master (forced promotion answered ${forced.statusCode} ${forced.body.code ?? ''})`)
  t.ok((masters[0]?.term ?? 0) >= 3, `of a newer term (${String(masters[0]?.term)})`)
  // The votes on disk: no chunkserver voted twice in one term.
  for (const [i] of cluster.chunkservers.entries()) {
    const vote = JSON.parse(readFileSync(join(cluster.chunkservers[i]?.dataDir as string, 'vote.json'), 'utf8')) as { votedTerm: number }
    t.ok(vote.votedTerm >= 2, `chunkserver${i} voted, last in term ${vote.votedTerm}`)
  }
})

t.test('a shadow SIGKILLed under load leaves the in-sync set, writes go on, and it rejoins after its restart', async (t) => {
  const { cluster, shadow, fs } = await readyWithShadow(t)
  const writer = startWriter(fs)
  t.teardown(writer.stop)
  await cluster.waitFor(async () => writer.acked.size >= writesBeforeFaultMin, { what: 'writes before the fault', timeoutMs: 30_000 })
  await shadow.kill('SIGKILL')
  await cluster.waitFor(async () => ((await report(cluster.master.url)).isr ?? ['?']).length === 0, { what: 'the dead shadow out of the in-sync set', timeoutMs: 20_000 })
  const ackedWithout = writer.acked.size
  await cluster.waitFor(async () => writer.acked.size >= ackedWithout + writesAfterFaultMin, { what: 'writes without the shadow', timeoutMs: 30_000 })
  await shadow.start()
  await cluster.waitFor(async () => ((await report(cluster.master.url)).isr ?? []).length === 1, { what: 'the shadow back in the in-sync set', timeoutMs: 20_000 })
  const ackedRejoined = writer.acked.size
  await cluster.waitFor(async () => writer.acked.size >= ackedRejoined + 20, { what: 'writes with the shadow again', timeoutMs: 30_000 })
  await writer.stop()
  t.same(writer.failed, [], 'no put failed inside its deadline')
  t.equal((await health(cluster.master.url)).role, 'master', 'the master stayed the master')
  await checkAcked(t, cluster.client(), writer.acked)
})
