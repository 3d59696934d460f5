// Automatic, fenced failover on real processes (issue 10): a writer puts a 4 KiB file every 10 ms through a
// client configured [master, shadow] while the master goes away — SIGKILLed with nobody to restart it (its host
// died), or SIGSTOPped for 5 s and woken (a zombie). In both, the shadow wins a chunkserver vote and takes the
// writes; not one put fails inside the client's deadline; every acknowledged file reads back byte-identical
// (sha256); and the old master, once it is back, acknowledges nothing. The dead master's data folder, started
// again as a shadow of the new master, catches up with it.
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { Agent } from 'undici'
import { signedRequest as request } from '../../testing/cluster.js'
import { ClusterProcess } from '../../testing/cluster.js'
import { checkAcked, health, readyWithShadow, startWriter, writerDeadlineMs, writesAfterFaultMin, writesBeforeFaultMin } from '../helpers/writer.js'

t.test('host death: the master SIGKILLed for good; the shadow takes over, nothing acknowledged is lost', async (t) => {
  const { cluster, shadow, fs } = await readyWithShadow(t)
  const writer = startWriter(fs)
  t.teardown(writer.stop)
  await cluster.waitFor(async () => writer.acked.size >= writesBeforeFaultMin, { what: 'writes before the fault', timeoutMs: 30_000 })
  const killedAtMs = Date.now()
  await cluster.master.kill('SIGKILL')
  const ackedAtKill = writer.acked.size
  await cluster.waitFor(async () => (await health(shadow.url)).role === 'master', { what: 'the shadow promoted', timeoutMs: 15_000 })
  const promotedMs = Date.now() - killedAtMs
  await cluster.waitFor(async () => writer.acked.size >= ackedAtKill + writesAfterFaultMin, { what: 'writes through the new master', timeoutMs: 30_000 })
  await writer.stop()
  t.same(writer.failed, [], 'no put failed inside its deadline')
  t.ok(writer.worstMs < writerDeadlineMs, `worst put ${writer.worstMs} ms; promoted ${promotedMs} ms after the kill`)
  const after = await health(shadow.url)
  t.equal(after.role, 'master')
  t.ok(after.term >= 2, `the new master's term is ${after.term}`)
  const reader = cluster.client({ masters: [shadow.url] })
  await checkAcked(t, reader, writer.acked)

  // The dead master's data folder comes back as a shadow of the new master and catches up.
  const rejoined = new ClusterProcess('rejoined', 'shadow', cluster.master.dataDir, join(cluster.dir, 'logs', 'rejoined.log'),
    () => ['--secret-file', cluster.secretFile, '--master', shadow.url, '--no-auto-promote'], 30_000)
  t.teardown(() => rejoined.killSync())
  await rejoined.start()
  await reader.mkdir('/after-rejoin')
  const masterSeq = (await health(shadow.url)).seq
  await cluster.waitFor(async () => (await health(rejoined.url)).seq >= masterSeq, { what: 'the old master, now a shadow, caught up', timeoutMs: 30_000 })
  const viaRejoined = cluster.client({ masters: [rejoined.url] })
  t.match(await viaRejoined.stat('/after-rejoin'), { type: 'dir' }, 'it serves what the new master wrote')
})

t.test('zombie master: SIGSTOPped 5 s under the writer, then woken; it acknowledges nothing after it wakes', async (t) => {
  const { cluster, shadow, fs } = await readyWithShadow(t)
  const writer = startWriter(fs)
  t.teardown(writer.stop)
  await cluster.waitFor(async () => writer.acked.size >= writesBeforeFaultMin, { what: 'writes before the fault', timeoutMs: 30_000 })
  const oldUrl = cluster.master.url
  // Requests sent to the frozen master sit in its socket buffer; it reads them when it wakes.
  process.kill(cluster.master.pid, 'SIGSTOP')
  const frozenAtMs = Date.now()
  // Each on a connection of its own (a pooled one may be closed by the waking server's keep-alive timer).
  const queued = Array.from({ length: 5 }, async (_, i) => {
    const agent = new Agent({ connections: 1, pipelining: 0 })
    try {
      const res = await request(`${oldUrl}/fs/mkdir`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: `/queued-while-frozen-${i}` }), headersTimeout: 60_000, bodyTimeout: 60_000 })
      return { statusCode: res.statusCode, code: (await res.body.json() as { code?: string }).code }
    } catch (err) {
      return { statusCode: 0, code: (err as { code?: string }).code ?? String(err) }   // the connection closed: not acknowledged either
    } finally {
      await agent.close()
    }
  })
  await cluster.waitFor(async () => (await health(shadow.url)).role === 'master', { what: 'the shadow promoted', timeoutMs: 15_000 })
  const ackedAtPromotion = writer.acked.size
  await cluster.waitFor(async () => Date.now() - frozenAtMs >= 5_000 && writer.acked.size >= ackedAtPromotion + 20, { what: 'five seconds frozen, writes through the new master', timeoutMs: 30_000 })
  process.kill(cluster.master.pid, 'SIGCONT')
  const answers = await Promise.all(queued)
  for (const answer of answers) {
    t.not(answer.statusCode, 200, `a mutation queued while it was frozen is not acknowledged when it wakes (${answer.statusCode} ${String(answer.code)})`)
    if (answer.statusCode !== 0) t.equal(answer.code, 'GRN_NOT_MASTER', 'it is refused as not the master')
  }
  const woken = await request(`${oldUrl}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/after-waking' }) })
  t.equal((await woken.body.json() as { code?: string }).code, 'GRN_NOT_MASTER', 'and so is one sent after it woke')
  await cluster.waitFor(async () => writer.acked.size >= ackedAtPromotion + 40, { what: 'writes go on', timeoutMs: 30_000 })
  await writer.stop()
  t.same(writer.failed, [], 'no put failed inside its deadline')
  const reader = cluster.client({ masters: [shadow.url] })
  await checkAcked(t, reader, writer.acked)
  for (let i = 0; i < 5; i++) t.equal(await reader.stat(`/queued-while-frozen-${i}`).then(() => 'exists', (err: { code?: string }) => err.code), 'GRN_NOT_FOUND', 'nothing the zombie was sent exists')
  const old = await health(oldUrl)
  t.ok(old.fencedByTerm !== undefined || old.role === 'master', 'the old master knows it was superseded')
})
