// Gray failures on real processes, each "host" on its own loopback address (issue 11): the master's host
// frozen (SIGSTOP) for 5 s while a client that was given only the master's URL keeps reading — it learned the
// shadow from health, its reads are hedged, every one succeeds far inside the 5 s request timeout, and a file
// written just before the freeze reads back byte-identical through the shadow (read-your-writes). A
// chunkserver host frozen in the middle of a read: the read finishes from another replica without waiting out
// a timeout. And a shadow whose master is gone for good (no promotion) stops serving reads after
// shadowReadStaleMsMax with GRN_STALE, unless the caller asks for stale reads.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster, type ClusterProcess } from '../../testing/cluster.js'
import { sha } from '../helpers/writer.js'
import { shadowReadStaleMsMax } from '../../shared/limits.js'
import { openPath, type OpenReply, type ClusterReport } from '../../shared/protocol.js'
import type { GranaryError } from '../../shared/errors.js'

const requestTimeoutMs = 5_000
const readWorstMsBound = requestTimeoutMs / 2   // generous (the bench measures speed); a read that waited out a timeout fails it

t.test('the master host frozen 5 s; a client given only its URL reads throughout, its own last write included', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, hosts: 5, test: t })
  const shadow = cluster.shadow as ClusterProcess
  await cluster.waitFor(async () => ((await cluster.report()).isr?.length ?? 0) === 1, { what: 'the shadow in the in-sync set' })
  const fs = cluster.client({ masters: [cluster.master.url], requestTimeoutMs })
  const before = randomBytes(300_000)
  await fs.writeFile('/before', before)
  await cluster.waitFor(() => fs.knownMasters.includes(shadow.url), { what: 'the client to learn the shadow from the master' })
  t.same([...fs.knownMasters].sort(), [cluster.master.url, shadow.url].sort(), 'one URL given, both known, by their hosts\' addresses')
  const last = randomBytes(5000)
  await fs.writeFile('/last-before-freeze', last)
  const positionAtFreeze = fs.position

  cluster.host(cluster.master).freeze()
  const frozenAtMs = Date.now()
  let reads = 0
  let wrong = 0
  let worstMs = 0
  try {
    while (Date.now() - frozenAtMs < 5_000) {
      const startedMs = performance.now()
      const [stat, bytes] = await Promise.all([fs.stat('/last-before-freeze'), fs.readFile('/last-before-freeze')])
      worstMs = Math.max(worstMs, performance.now() - startedMs)
      if (stat.sizeBytes !== last.length || sha(bytes) !== sha(last)) wrong++
      reads++
    }
  } finally {
    cluster.host(cluster.master).thaw()
  }
  t.equal(wrong, 0, 'the last write before the freeze read back right every time (size and sha256)')
  t.ok(reads > 10, `${reads} stat+read pairs during the freeze, every one answered`)
  t.ok(worstMs < readWorstMsBound, `worst stat+read ${Math.round(worstMs)} ms during the freeze: hedged, not a ${requestTimeoutMs} ms timeout`)
  t.ok(fs.position.term > positionAtFreeze.term || fs.position.seq >= positionAtFreeze.seq, 'the position never went backwards')
  t.equal(sha(await fs.readFile('/before')), sha(before))
})

t.test('a chunkserver host frozen mid-read: the read goes on from another replica', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, hosts: 4, test: t })
  const fs = cluster.client({ requestTimeoutMs })
  const data = randomBytes(4 * 1024 * 1024)   // four 1 MiB chunks (the kit's chunk size)
  await fs.writeFile('/big', data)
  const opened = await (await request(`${cluster.master.url}${openPath}?path=%2Fbig`)).body.json() as OpenReply
  const stream = fs.createReadStream('/big', { highWaterMark: 64 * 1024 })
  const pieces: Buffer[] = []
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const first = await iterator.next()
  pieces.push(first.value as Buffer)
  // The reader is in chunk 0; the first replica the client will try for chunk 1 (or the rest of chunk 0) freezes.
  const target = opened.chunks.find((c) => c.chunkIndex === 1)?.replicas[0]?.url
  const frozen = cluster.chunkservers.find((cs) => cs.url === target) as ClusterProcess
  t.ok(frozen !== undefined, `chunk 1's first replica is ${target ?? 'unknown'}`)
  const host = cluster.host(frozen)
  host.freeze()
  try {
    const startedMs = performance.now()
    for (let next = await iterator.next(); next.done !== true; next = await iterator.next()) pieces.push(next.value)
    const tookMs = performance.now() - startedMs
    t.equal(sha(Buffer.concat(pieces)), sha(data), 'every byte right')
    t.ok(tookMs < requestTimeoutMs, `the rest read in ${Math.round(tookMs)} ms with a replica frozen: no ${requestTimeoutMs} ms timeout waited out`)
  } finally {
    host.thaw()
  }
})

t.test('a shadow whose master is gone for good answers GRN_STALE after the bound, unless stale reads are asked for', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, shadowArgs: ['--no-auto-promote'], test: t })
  const shadow = cluster.shadow as ClusterProcess
  await cluster.waitFor(async () => ((await cluster.report()).isr?.length ?? 0) === 1, { what: 'the shadow in the in-sync set' })
  const fs = cluster.client()
  await fs.writeFile('/kept', 'kept')
  await cluster.master.kill('SIGKILL')
  const killedAtMs = Date.now()
  const viaShadow = cluster.client({ masters: [shadow.url], deadlineMs: 1_000 })
  t.equal((await viaShadow.readFile('/kept')).toString(), 'kept', 'served while its master is freshly gone')
  await cluster.waitFor(async () => {
    const response = await request(`${shadow.url}/fs/stat?path=%2Fkept`)
    const body = await response.body.json() as { code?: string }
    return body.code === 'GRN_STALE'
  }, { what: 'the shadow to refuse reads as stale', timeoutMs: shadowReadStaleMsMax + 10_000, intervalMs: 250 })
  t.ok(Date.now() - killedAtMs >= shadowReadStaleMsMax - 1_000, `stale after ${Date.now() - killedAtMs} ms of silence (bound ${shadowReadStaleMsMax} ms)`)
  const err = await viaShadow.stat('/kept').catch((e: unknown) => e) as GranaryError
  const direct = await request(`${shadow.url}/fs/stat?path=%2Fkept`)
  t.match({ statusCode: direct.statusCode, body: await direct.body.json() }, { statusCode: 503, body: { code: 'GRN_STALE', details: { role: 'shadow' } } }, 'retryable (503), naming its role')
  // The client learned the dead master from the shadow's health, so its last error may be either refusal.
  t.match(err, { code: 'GRN_DEADLINE_EXCEEDED', details: { lastCode: /^GRN_(STALE|UNAVAILABLE)$/ } }, 'a client retries the refusal elsewhere, to its deadline, and gets no stale copy')
  const stale = cluster.client({ masters: [shadow.url], staleReads: true })
  t.equal((await stale.readFile('/kept')).toString(), 'kept', 'a caller asking for stale reads gets the copy')
  const report = await (await request(`${shadow.url}/cluster/report`)).body.json() as ClusterReport
  t.equal(report.role, 'shadow', 'the report (an operator\'s view) still answers')
})
