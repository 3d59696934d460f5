// GET /metrics on real processes (issue 16 item 4): the master, the shadow and every chunkserver answer in the
// Prometheus text format, read line by line by a strict parser (test/helpers/prometheus.ts: names, HELP/TYPE
// before samples, contiguous families, histogram buckets cumulative and ending in +Inf = _count). Route labels
// are route patterns (/chunks/:chunkHandle), never raw URLs. After a file is written and read, the counters
// moved: requests by route, group commits and their fsync times, oplog seq on master and shadow alike, bytes
// in and out of the chunkservers. A planned promotion is counted and measured by the shadow that won it, and
// the cluster report lists it; so is an automatic election after the master is SIGKILLed (its measured time is
// the master's silence, at least a lease, plus the vote). A replica rotted on disk is found by the scrubber and
// counted once on its chunkserver, and the master's copy that replaces it is counted.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { signedRequest as request } from '../../testing/cluster.js'
import type * as p from '../../shared/protocol.js'
import { parsePrometheusText, sampleValue, type Family } from '../helpers/prometheus.js'
import { readyWithShadow } from '../helpers/writer.js'
import { startCluster } from '../../testing/cluster.js'
import { leaseMsDefault } from '../../shared/limits.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function scrape (url: string): Promise<Map<string, Family>> {
  const res = await request(`${url}/metrics`, { headersTimeout: 5_000, bodyTimeout: 5_000 })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`${url}/metrics: ${res.statusCode} ${text}`)
  if (!String(res.headers['content-type']).startsWith('text/plain; version=0.0.4')) throw new Error(`content-type ${String(res.headers['content-type'])}`)
  return parsePrometheusText(text)
}

async function report (url: string): Promise<p.ClusterReport> {
  return await (await request(`${url}/cluster/report`)).body.json() as p.ClusterReport
}

const value = (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number => {
  const v = sampleValue(families, name, labels)
  if (v === undefined) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`)
  return v
}

// Every route label a server may report: its route table, plus 'unmatched' for 404s.
const masterRoutes = new Set(['/fs/mkdir', '/fs/stat', '/fs/list', '/fs/rename', '/fs/delete', '/fs/restore', '/fs/du', '/fs/fsck', '/fs/create',
  '/fs/allocate', '/fs/commit', '/fs/complete', '/fs/renew', '/fs/abandon', '/fs/open', '/healthz', '/cluster/report', '/chunkservers/heartbeat',
  '/oplog', '/snapshot', '/admin/hand-over', '/admin/promote', '/metrics', '/', 'unmatched'])
const chunkserverRoutes = new Set(['/chunks/:chunkHandle', '/status', '/vote', '/metrics', 'unmatched'])

function routeLabels (families: Map<string, Family>): Set<string> {
  return new Set((families.get('granary_http_requests_total')?.samples ?? []).map((s) => s.labels.route as string))
}

t.test('/metrics on master, shadow and chunkservers: valid text, bounded labels, counters that move', async (t) => {
  const { cluster, shadow, fs } = await readyWithShadow(t, { shadowArgs: ['--no-auto-promote'] })
  const urls = { master: cluster.master.url, shadow: shadow.url, chunkservers: cluster.chunkservers.map((c) => c.url) }

  const before = { master: await scrape(urls.master), shadow: await scrape(urls.shadow), chunkservers: await Promise.all(urls.chunkservers.map(scrape)) }
  for (const [name, families] of [['master', before.master], ['shadow', before.shadow], ['chunkserver', before.chunkservers[0]]] as const) {
    t.ok(families?.has('process_cpu_seconds_total'), `${name}: process metrics`)
    t.equal(families?.get('granary_http_request_duration_seconds')?.type, 'histogram', `${name}: request latency histogram`)
  }
  t.equal(value(before.master, 'granary_master_role', { role: 'master' }), 1)
  t.equal(value(before.shadow, 'granary_master_role', { role: 'shadow' }), 1)
  t.equal(value(before.master, 'granary_master_lease_held'), 1, 'the master holds its lease')
  t.equal(value(before.master, 'granary_master_lease_voters'), 3)
  t.equal(value(before.master, 'granary_master_isr_shadows'), 1, 'the shadow is in sync')
  t.equal(value(before.master, 'granary_chunkservers', { state: 'alive' }), 3)
  t.equal(value(before.shadow, 'granary_shadow_in_sync'), 1)
  t.equal(before.master.get('granary_master_shadow_lag_records')?.samples.length, 1, 'one lag series per shadow')
  t.equal(before.master.get('granary_chunkserver_heartbeat_age_seconds')?.samples.length, 3, 'one heartbeat age per chunkserver')

  // Work: a folder, a 3-chunk file written and read back, a stat of a missing path, a route that does not exist.
  const data = randomBytes(3 * 1024 * 1024)
  await fs.mkdir('/metrics')
  await fs.writeFile('/metrics/f.bin', data)
  t.equal(sha(await fs.readFile('/metrics/f.bin')), sha(data), 'the file reads back')
  await request(`${urls.master}/no/such/route?x=${Date.now()}`).then(async (res) => await res.body.dump())
  await request(`${urls.chunkservers[0] as string}/no/such/route/${Date.now()}`).then(async (res) => await res.body.dump())
  const masterSeq = (await report(urls.master)).seq
  await cluster.waitFor(async () => value(await scrape(urls.shadow), 'granary_master_oplog_seq') >= masterSeq, { what: 'the shadow applied the writes' })

  const after = { master: await scrape(urls.master), shadow: await scrape(urls.shadow), chunkservers: await Promise.all(urls.chunkservers.map(scrape)) }
  const moved = (name: string, a: Map<string, Family>, b: Map<string, Family>, labels: Record<string, string> = {}): number =>
    value(b, name, labels) - (sampleValue(a, name, labels) ?? 0)
  t.ok(moved('granary_http_requests_total', before.master, after.master, { method: 'POST', route: '/fs/mkdir', code: '200' }) >= 1, 'mkdir counted by route')
  t.equal(moved('granary_http_requests_total', before.master, after.master, { method: 'POST', route: '/fs/create', code: '200' }), 1, 'one create')
  t.ok(moved('granary_http_requests_total', before.master, after.master, { method: 'POST', route: '/fs/commit', code: '200' }) >= 3, 'a commit per chunk')
  t.ok(moved('granary_http_request_duration_seconds_count', before.master, after.master, { method: 'POST', route: '/fs/mkdir' }) >= 1, 'its latency observed')
  t.ok(moved('granary_http_requests_total', before.master, after.master, { method: 'GET', route: 'unmatched', code: '404' }) >= 1, 'a 404 counted as unmatched')
  t.ok(moved('granary_master_commit_batch_ops_count', before.master, after.master) >= 1, 'group commits counted')
  t.ok(moved('granary_master_commit_batch_ops_sum', before.master, after.master) >= 5, 'with their ops')
  t.ok(value(after.master, 'granary_master_commit_fsync_seconds_sum') > 0, 'fsync time measured')
  t.ok(value(after.master, 'granary_master_commit_transaction_seconds_sum') >= value(after.master, 'granary_master_commit_fsync_seconds_sum'), 'the commit is part of its transaction')
  t.equal(value(after.shadow, 'granary_master_oplog_seq'), value(after.master, 'granary_master_oplog_seq'), 'the shadow applied what the master committed')
  for (const families of [after.master, after.shadow]) {
    for (const route of routeLabels(families)) t.ok(masterRoutes.has(route), `master/shadow route label ${route} is a pattern`)
  }
  let receivedBytes = 0
  let writtenBytes = 0
  let readBytes = 0
  for (const [i, families] of after.chunkservers.entries()) {
    const b = before.chunkservers[i] as Map<string, Family>
    for (const route of routeLabels(families)) t.ok(chunkserverRoutes.has(route), `chunkserver route label ${route} is a pattern`)
    receivedBytes += moved('granary_chunkserver_received_bytes_total', b, families)
    writtenBytes += moved('granary_chunkserver_chunk_written_bytes_total', b, families)
    readBytes += moved('granary_chunkserver_chunk_read_bytes_total', b, families)
    t.ok(moved('granary_chunkserver_sent_bytes_total', b, families) > 0, `chunkserver ${i} sent bytes`)
    t.equal(value(families, 'granary_chunkserver_term'), 1)
  }
  t.ok(moved('granary_http_requests_total', before.chunkservers[0] as Map<string, Family>, after.chunkservers[0] as Map<string, Family>, { method: 'GET', route: 'unmatched', code: '404' }) >= 1)
  t.equal(writtenBytes, 3 * data.length, 'every replica of every chunk committed is counted once')
  t.ok(receivedBytes >= 3 * data.length, 'three replicas\' bytes came in over HTTP')
  t.equal(readBytes, data.length, 'the read is counted once')

  // A planned promotion: counted and measured by the shadow that won it, and listed in its report.
  const promoted = await request(`${urls.shadow}/admin/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', headersTimeout: 30_000 })
  t.equal(promoted.statusCode, 200, await promoted.body.text())
  const won = await scrape(urls.shadow)
  t.equal(value(won, 'granary_master_role', { role: 'master' }), 1, 'the shadow is now the master')
  t.equal(value(won, 'granary_failovers_total', { kind: 'hand-over' }), 1, 'one hand-over counted')
  t.equal(value(won, 'granary_failover_duration_seconds_count', { kind: 'hand-over' }), 1, 'and measured')
  const failovers = (await report(urls.shadow)).failovers ?? []
  t.equal(failovers.length, 1, 'the report lists it')
  t.match(failovers[0], { term: 2, kind: 'hand-over', fromUrl: urls.master, silentMs: null, voters: 3 })
  t.ok((failovers[0]?.totalMs ?? -1) >= 0 && (failovers[0]?.totalMs ?? Infinity) < 60_000, 'with a duration')
  t.equal(value(won, 'granary_failover_duration_seconds_sum', { kind: 'hand-over' }), (failovers[0]?.totalMs ?? 0) / 1000, 'the same duration in both')
})

t.test('an automatic election is counted and measured: the old master\'s silence plus the vote', async (t) => {
  const { cluster, shadow } = await readyWithShadow(t)
  // Killed only while the shadow is in sync and polling: on a loaded machine a stalled poll can drop it from the
  // in-sync set just before, and then no chunkserver may elect it (by design; failover.test.ts covers that).
  await cluster.waitFor(async () => {
    const r = await report(cluster.master.url)
    return r.isr?.length === 1 && r.shadows?.[0]?.lagRecords === 0 && (r.shadows[0]?.lastSeenAgeMs ?? Infinity) < 250
  }, { what: 'the shadow in sync and polling' })
  await cluster.master.kill('SIGKILL')
  await cluster.waitFor(async () => (await report(shadow.url)).failovers?.length === 1, { what: 'the shadow elected', timeoutMs: 15_000 })
  const event = (await report(shadow.url)).failovers?.[0] as p.FailoverEvent
  t.match(event, { kind: 'election', term: 2, fromUrl: cluster.master.url, voters: 3 })
  t.ok((event.silentMs ?? 0) >= leaseMsDefault, `it stood after the master was silent for a lease: ${String(event.silentMs)} ms ≥ ${leaseMsDefault} ms`)
  t.equal(event.totalMs, (event.silentMs ?? 0) + event.electionMs, 'total = silence + election')
  t.ok(event.votes >= 2, 'won by a majority')
  const won = await scrape(shadow.url)
  t.equal(value(won, 'granary_failovers_total', { kind: 'election' }), 1)
  t.equal(value(won, 'granary_failover_duration_seconds_sum', { kind: 'election' }), event.totalMs / 1000)
  t.equal(value(won, 'granary_master_role', { role: 'master' }), 1)
})

t.test('a corrupt replica: found by the scrubber, counted on its chunkserver, re-replicated by the master', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes: 256 * 1024, test: t, chunkserverArgs: ['--scrub-pass-gap-ms', '300'] })
  const fs = cluster.client()
  await fs.writeFile('/rot.bin', randomBytes(256 * 1024))
  const open = await (await request(`${cluster.master.url}/fs/open?path=%2Frot.bin`)).body.json() as p.OpenReply
  const chunkHandle = open.chunks[0]?.chunkHandle as string
  const rotten = cluster.chunkservers[1]?.url as string
  t.equal(value(await scrape(rotten), 'granary_chunkserver_corrupt_replicas_found_total'), 0, 'nothing found yet')
  // The scrubber reads the good copy first (its bytes are counted when a chunk verifies; a chunk found corrupt
  // on its first read would add none), so the counter is asserted on a read that passed.
  await cluster.waitFor(async () => value(await scrape(rotten), 'granary_chunkserver_scrubbed_bytes_total') > 0,
    { what: 'the scrubber to verify the good copy', timeoutMs: 30_000 })
  t.pass('the scrubber\'s bytes counted')
  cluster.corruptChunkReplica({ serverIndex: 1, chunkHandle: chunkHandle as never, offsetBytes: 70 * 1024 })
  await cluster.waitFor(async () => value(await scrape(rotten), 'granary_chunkserver_corrupt_replicas_found_total') === 1,
    { what: 'the scrubber\'s find counted', timeoutMs: 30_000 })
  await cluster.waitFor(async () => value(await scrape(cluster.master.url), 'granary_master_replicated_total') >= 1,
    { what: 'the master\'s copy counted', timeoutMs: 60_000 })
  await cluster.waitFor(async () => value(await scrape(rotten), 'granary_chunkserver_corrupt_replicas') === 0,
    { what: 'the corrupt replica replaced', timeoutMs: 60_000 })
  t.equal(value(await scrape(cluster.master.url), 'granary_master_corrupt_replicas'), 0, 'the master counts none left')
  t.equal(value(await scrape(rotten), 'granary_chunkserver_corrupt_replicas_found_total'), 1, 'found once, however often it was reported')
})
