// Proves the read side of the master link against plain HTTP servers on 127.0.0.1: a read the first URL does
// not answer (a hung master) is raced to the next within the hedge delay, far inside the request timeout, the
// loser's request is aborted and it is tried last afterwards; a reply at a position older than one the client
// has seen is refused and the read goes on until a fresh one comes (read-your-writes across servers), even when
// the stale answer is a "not found"; a client given one URL learns the others from health's metadataServers.
import t, { type Test } from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import diagnosticsChannel from 'node:diagnostics_channel'
import { MasterLink, hedgeWaitMs } from '../../../client/master-link.js'
import { channelNames } from '../../../client/diagnostics.js'
import { Transport } from '../../../client/transport.js'
import * as limits from '../../../shared/limits.js'
import { positionHeader, healthPath, statPath, mkdirPath } from '../../../shared/protocol.js'
import { serve } from './helpers.js'

interface Server {
  url: string
  seen: string[]                 // routes asked, in order
  aborted: number                // requests whose client went away before an answer
  answer: (route: string, req: IncomingMessage, res: ServerResponse) => void
}

const stat = (path: string) => ({ path, type: 'dir', sizeBytes: 0, mtimeMs: 0, mode: 0o755 })

function reply (res: ServerResponse, position: string, statusCode: number, body: object): void {
  res.writeHead(statusCode, { 'content-type': 'application/json', [positionHeader]: position }).end(JSON.stringify(body))
}

async function server (t: Test, answer: Server['answer']): Promise<Server> {
  const s: Server = { url: '', seen: [], aborted: 0, answer }
  const { url } = await serve(t, (req, res) => {
    const route = (req.url ?? '').split('?')[0] as string
    s.seen.push(route)
    res.on('close', () => { if (!res.writableEnded) s.aborted++ })
    req.resume()
    req.on('end', () => { s.answer(route, req, res) })
  })
  s.url = url
  return s
}

// A hung server: takes the connection and the request, never answers (SIGSTOP seen from the client).
const hang = (): void => {}

function link (t: Test, masters: string[]): MasterLink {
  const transport = new Transport({ requestTimeoutMs: 5_000, keepAliveTimeoutMs: 1_000 })
  t.teardown(async () => { await transport.close() })
  return new MasterLink(transport, {
    masters, deadlineMs: 8_000, requestTimeoutMs: 5_000,
    policy: { retryDelayMsMin: 10, retryDelayMsMax: 20, attemptsMax: limits.retryAttemptsMax }
  })
}

t.test('a hung master: the read is raced to the shadow within the hedge delay, and the master is tried last', async (t) => {
  const master = await server(t, (route, _req, res) => { if (route === healthPath) reply(res, '1.5', 200, { role: 'master' }) })   // stat hangs
  const shadow = await server(t, (route, _req, res) => { reply(res, '1.5', 200, route === statPath ? stat('/') : { role: 'shadow' }) })
  const l = link(t, [master.url, shadow.url])
  const startedMs = performance.now()
  t.match(await l.stat('/'), { path: '/', type: 'dir' })
  const tookMs = performance.now() - startedMs
  t.ok(tookMs < 5_000 / 2, `answered in ${Math.round(tookMs)} ms: by the hedge, not at the 5 s request timeout`)
  t.ok(l.hedgeDelayMs() >= limits.hedgeDelayMsMin && l.hedgeDelayMs() <= limits.hedgeDelayMsMax, 'the hedge delay within its bounds')
  await waitFor('the loser aborted', () => master.aborted === 1)
  t.equal(master.seen.filter((r) => r === statPath).length, 1)

  await l.stat('/')
  t.equal(master.seen.filter((r) => r === statPath).length, 1, 'the hung master is tried last for a while: the next read went to the shadow first')
  t.equal(shadow.seen.filter((r) => r === statPath).length, 2)
})

t.test('never backwards: a reply older than a position seen is refused, a not-found included', async (t) => {
  let shadowPosition = '1.9'
  let shadowStatus = 404
  const master = await server(t, (route, _req, res) => {
    if (route === mkdirPath) reply(res, '1.10', 200, stat('/new'))
    else if (route === healthPath) reply(res, '1.10', 200, { role: 'master' })
  })                                                                    // stat hangs: the shadow must answer
  const shadow = await server(t, (route, _req, res) => {
    if (route !== statPath) { reply(res, shadowPosition, 200, { role: 'shadow' }); return }
    if (shadowStatus === 404) reply(res, shadowPosition, 404, { statusCode: 404, code: 'GRN_NOT_FOUND', error: 'Not Found', message: 'no such file or directory: /new' })
    else reply(res, shadowPosition, 200, stat('/new'))
    // The shadow applies the record after its first (stale) answer.
    shadowPosition = '1.10'
    shadowStatus = 200
  })
  const l = link(t, [master.url, shadow.url])
  await l.mkdir('/new', false)
  t.same(l.position, { term: 1, seq: 10 }, 'the mutation reply moved the position')
  t.match(await l.stat('/new'), { path: '/new' }, "the shadow's stale not-found was not the answer")
  t.equal(shadow.seen.filter((r) => r === statPath).length, 2, 'asked again once it had caught up')

  // A newer term is newer whatever its seq.
  shadowPosition = '2.3'
  t.match(await l.stat('/new'), { path: '/new' })
  t.same(l.position, { term: 2, seq: 3 })
  shadowPosition = '1.50'
  const asked = shadow.seen.filter((r) => r === statPath).length
  const stale = await l.read('stat /new', statPath, { path: '/new' }, { deadlineMs: 3 * limits.hedgeAbandonMs }).catch((err: unknown) => err) as { code: string, details: { lastCode?: string } }
  t.equal(stale.code, 'GRN_DEADLINE_EXCEEDED', 'only stale answers: the read ends at its deadline')
  t.match(stale.details.lastCode, /^GRN_(STALE|TIMEOUT)$/, 'the last pass: a stale answer, or the hung master at the deadline')
  t.ok(shadow.seen.filter((r) => r === statPath).length - asked >= 2, `the stale shadow was asked again once the hung master's request was out ${limits.hedgeAbandonMs} ms, not once`)
})

t.test('one URL is enough: the others are learned from health', async (t) => {
  let hung = false
  const shadow = await server(t, (route, _req, res) => { reply(res, '1.1', 200, route === statPath ? stat('/') : { role: 'shadow', metadataServers: [] }) })
  const master = await server(t, (route, _req, res) => {
    if (route === healthPath) reply(res, '1.1', 200, { role: 'master', metadataServers: [master.url, shadow.url, 'not a url', 'http://user:pw@127.0.0.9:1'] })
    else if (!hung) reply(res, '1.1', 200, stat('/'))
  })
  const l = link(t, [master.url])
  await l.refreshMembers(true)
  t.same(l.masters, [master.url, shadow.url], 'the shadow learned; malformed entries ignored')
  t.equal(l.refreshMembers(), null, `asked at most every ${limits.membersRefreshMs} ms`)
  hung = true
  t.match(await l.stat('/'), { path: '/' }, 'with the master hung, the learned shadow answers')
  t.equal(shadow.seen.filter((r) => r === statPath).length, 1)
})

// A fresh client (a `granary cat` process) has no read latency yet: it compares the servers' answers to the
// health ask it sends with its first read, and races a URL that trails another by hedgeDelayMsMin.
t.test('hedgeWaitMs: the hedge delay, cut short for a URL that trails another on the health ask', async (t) => {
  const delayMs = 80
  t.equal(hedgeWaitMs(30, delayMs, null), 50, 'no comparison to make: the rest of the hedge delay')
  t.equal(hedgeWaitMs(30, delayMs, 5), limits.hedgeDelayMsMin - 5, 'another URL answered health 5 ms ago and this one has not: the rest of hedgeDelayMsMin')
  t.ok(hedgeWaitMs(30, delayMs, limits.hedgeDelayMsMin) <= 0, 'trailing by hedgeDelayMsMin: race it now')
  t.equal(hedgeWaitMs(79, delayMs, 1), 1, 'never later than the hedge delay')
})

t.test('a new client whose master hangs health and reads alike gets its first read from the shadow, hedged', async (t) => {
  const master = await server(t, hang)
  const shadow = await server(t, (route, _req, res) => { reply(res, '1.1', 200, route === statPath ? stat('/') : { role: 'shadow', metadataServers: [] }) })
  const l = link(t, [master.url, shadow.url])
  const failovers: Array<{ code?: string }> = []
  const onFailover = (message: unknown): void => { failovers.push(message as { code?: string }) }
  diagnosticsChannel.subscribe(channelNames.failover, onFailover)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, onFailover) })
  t.match(await l.stat('/'), { path: '/' })
  t.match(failovers, [{ code: 'GRN_HEDGE', from: master.url, to: shadow.url }], 'raced, not failed over after a timeout')
  await waitFor('the master to see its aborted requests', () => master.aborted >= 1)
})

// The CLI asks for the members as soon as it has a client, before it loads its command (client.discoverMasters()):
// by its first read the shadow has answered and the hung master has not, so the read is raced at once, not after
// the hedgeDelayMsMin the previous test's client waits out from the moment the shadow answers.
t.test('an early members ask: a master that has not answered while the shadow has is raced by the first read at once', async (t) => {
  const master = await server(t, hang)
  const shadow = await server(t, (route, _req, res) => { reply(res, '1.1', 200, route === statPath ? stat('/') : { role: 'shadow', metadataServers: [] }) })
  const transport = new Transport({ requestTimeoutMs: 300, keepAliveTimeoutMs: 1_000 })
  t.teardown(async () => { await transport.close() })
  const l = new MasterLink(transport, { masters: [master.url, shadow.url], deadlineMs: 8_000, requestTimeoutMs: 300, policy: { retryDelayMsMin: 10, retryDelayMsMax: 20, attemptsMax: limits.retryAttemptsMax } })
  const failovers: Array<{ code?: string, message?: string }> = []
  const onFailover = (message: unknown): void => { failovers.push(message as { code?: string }) }
  diagnosticsChannel.subscribe(channelNames.failover, onFailover)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.failover, onFailover) })
  await l.refreshMembers()   // settles when the master's health ask times out (300 ms); the shadow answered long before
  t.same(shadow.seen, [healthPath], 'the shadow was asked for the members')
  t.match(await l.stat('/'), { path: '/' })
  const hedge = failovers.find((f) => f.code === 'GRN_HEDGE')
  t.ok(hedge !== undefined, 'the read was raced to the shadow')
  const waitedMs = Number(/within (\d+) ms/.exec(hedge?.message ?? '')?.[1])
  t.ok(waitedMs < limits.hedgeDelayMsMin, `raced after ${waitedMs} ms, not after hedgeDelayMsMin (${limits.hedgeDelayMsMin} ms)`)
})

async function waitFor (what: string, predicate: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
