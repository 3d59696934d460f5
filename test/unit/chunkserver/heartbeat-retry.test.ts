// Proves that a chunkserver finds a restarted master quickly: while the master answers, heartbeats keep the
// interval it asks for (2 s here), but while it does not (restarting), the chunkserver tries again within
// ~100 ms — and the first heartbeat that gets through carries the full report the new master needs before it
// places writes on this server.
import t from 'tap'
import { createServer } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { HeartbeatRequest } from '../../../shared/protocol.js'
import { startFixture } from './fixtures/servers.js'

t.test('an unreachable master is retried within ~100 ms, not a whole interval later', async (t) => {
  const arrivals: Array<{ atMs: number, body: HeartbeatRequest }> = []
  let answering = true
  const server = createServer((req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => { text += d.toString() })
    req.on('end', () => {
      arrivals.push({ atMs: Date.now(), body: JSON.parse(text) as HeartbeatRequest })
      if (!answering) { res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"GRN_UNAVAILABLE"}'); return }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ term: 0, heartbeatIntervalMs: 2000, needFullReport: false, commands: [] }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) })
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  await startFixture(t, 1, { masters: url, heartbeatIntervalMs: 2000 })

  while (arrivals.length < 1) await sleep(10)
  await sleep(600)
  t.equal(arrivals.length, 1, 'an answering master is asked again only after its interval')
  answering = false
  while (arrivals.length < 2) await sleep(10)           // the next regular heartbeat fails...
  const failedAtMs = (arrivals[1] as { atMs: number }).atMs
  while (arrivals.length < 4) await sleep(10)           // ...and the retries come quickly
  const gapsMs = arrivals.slice(1, 4).map((a, i, all) => i === 0 ? 0 : a.atMs - (all[i - 1] as { atMs: number }).atMs).slice(1)
  t.ok(gapsMs.every((gap) => gap < 500), `retries ${gapsMs.join(', ')} ms apart while the master does not answer`)
  answering = true
  const countBefore = arrivals.length
  while (arrivals.length <= countBefore) await sleep(10)
  t.ok(Array.isArray(arrivals[countBefore]?.body.fullReport), 'the first heartbeat the restarted master answers carries a full report')
  t.ok(Date.now() - failedAtMs < 2000, 'all within one regular interval')
})
