// Proves that a chunkserver finds a restarted master quickly and costs a dead one little: while the master
// answers, heartbeats keep the interval it asks for (2 s here); while it does not (restarting, or its host
// gone), the chunkserver probes it (a GET, no report built) after 25, 50, 100, ... ms, doubling up to the
// interval, and the first heartbeat after a probe succeeds carries the full report the new master needs
// before it places writes on this server.
import t from 'tap'
import { createServer } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { HeartbeatRequest } from '../../../shared/protocol.js'
import { retryAfterMs } from '../../../chunkserver/heartbeat.js'
import { startFixture, signedReplyHeaders } from './fixtures/servers.js'

t.test('the backoff: 25 ms doubling, capped at the interval', async (t) => {
  t.same([1, 2, 3, 4, 5, 6].map((failures) => retryAfterMs({ failures, intervalMs: 250 })), [25, 50, 100, 200, 250, 250])
  t.equal(retryAfterMs({ failures: 16, intervalMs: 60_000 }), 60_000, 'the cap holds far out')
  t.equal(retryAfterMs({ failures: 0, intervalMs: 250 }), 25, 'no failure counted yet: the shortest wait')
})

t.test('an unreachable master is probed soon and then less often; no report is built for it until it answers', async (t) => {
  const beats: Array<{ atMs: number, body: HeartbeatRequest }> = []
  const probes: number[] = []
  let answering = true
  const server = createServer((req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => { text += d.toString() })
    req.on('end', () => {
      if (req.method === 'GET') {
        probes.push(Date.now())
        res.writeHead(answering ? 200 : 503, { 'content-type': 'application/json' }).end('{}')
        return
      }
      beats.push({ atMs: Date.now(), body: JSON.parse(text) as HeartbeatRequest })
      if (!answering) { res.writeHead(503, signedReplyHeaders(req, 503, '{"code":"GRN_UNAVAILABLE"}')).end('{"code":"GRN_UNAVAILABLE"}'); return }
      const replyText = JSON.stringify({ term: 0, heartbeatIntervalMs: 2000, needFullReport: false, commands: [] })
      res.writeHead(200, signedReplyHeaders(req, 200, replyText)).end(replyText)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  await startFixture(t, 1, { masters: url, heartbeatIntervalMs: 2000 })

  while (beats.length < 1) await sleep(10)
  await sleep(600)
  t.equal(beats.length, 1, 'an answering master is asked again only after its interval')
  t.equal(probes.length, 0, 'and never probed')
  answering = false
  while (beats.length < 2) await sleep(10)              // the next regular heartbeat fails...
  const failedAtMs = (beats[1] as { atMs: number }).atMs
  while (probes.length < 4) await sleep(10)             // ...and probes follow, soon and then less often
  const gapsMs = [failedAtMs, ...probes.slice(0, 4)].map((atMs, i, all) => i === 0 ? 0 : atMs - (all[i - 1] as number)).slice(1)
  t.ok(gapsMs.every((gap) => gap < 1000), `probes ${gapsMs.join(', ')} ms apart while the master does not answer`)
  t.ok((gapsMs[3] as number) > (gapsMs[0] as number), `and the gaps grow (${gapsMs.join(', ')} ms)`)
  t.equal(beats.length, 2, 'no heartbeat (and no report) goes to a master whose probe failed')
  answering = true
  const countBefore = beats.length
  while (beats.length <= countBefore) await sleep(10)
  t.ok(Array.isArray(beats[countBefore]?.body.fullReport), 'the first heartbeat the restarted master answers carries a full report')
  t.ok(Date.now() - failedAtMs < 2000, 'all within one regular interval')
})
