// The status page (GET /, issue 16 item 5) in headless Chromium on a real cluster, read as a person sees it
// (each shown value carries a data-field) and compared with `granary report --json` run as a user would:
// on the master (its shadow listed with its lag, in sync), on the shadow (its master and lag), and after a
// planned promotion and a chunkserver killed, on the new master — the dead server, the under-replicated
// count, the failover it won with its measured times. The namespace browser lists a folder after a click, as
// `readdir` does; a file named like HTML shows as text. A screenshot is kept as a test artifact, outside git:
// $GRANARY_TEST_ARTIFACTS (default <tmpdir>/granary-test-artifacts).
import t, { type Test } from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { signedRequest as request } from '../../testing/cluster.js'
import type * as p from '../../shared/protocol.js'
import { Browser, chromiumUnavailable, type Page } from '../helpers/chromium.js'
import { granary } from '../helpers/cli.js'
import { startCluster, type ClusterProcess } from '../../testing/cluster.js'

const MiB = 1024 * 1024
const capacityBytes = 4096 * MiB     // fixed, so each server's free space is capacity - used, not the shared disk's
const artifactsDir = process.env.GRANARY_TEST_ARTIFACTS ?? join(tmpdir(), 'granary-test-artifacts')

interface Shown {
  refreshes: number
  health: string
  fields: Record<string, string | undefined>         // data-value of each [data-field] in the header and tiles
  texts: Record<string, string>                      // their text, as shown
  servers: Array<Record<string, string | undefined>>
  shadows: Array<Record<string, string | undefined>>
  failovers: Array<Record<string, string | undefined>>
  following: string
  entriesPath: string | undefined
  entries: Array<{ name: string, type: string, size: string | undefined, text: string }>
  htmlInNames: number
}

// What the page shows, read from the DOM (not from its script's variables).
const readPage = `(() => {
  if (document.querySelector('#health') === null || document.body.dataset.refreshes === undefined) return null   // not loaded yet
  const rows = (sel) => [...document.querySelectorAll(sel)].map((tr) => Object.fromEntries([...tr.querySelectorAll('[data-field]')].map((td) => [td.dataset.field, td.dataset.value])))
  const fields = {}, texts = {}
  for (const e of document.querySelectorAll('header [data-field], .tiles [data-field]')) { fields[e.dataset.field] = e.dataset.value; texts[e.dataset.field] = e.textContent }
  return {
    refreshes: Number(document.body.dataset.refreshes || 0), health: document.querySelector('#health').dataset.state, fields, texts,
    servers: rows('#servers tr'), shadows: rows('#shadows tr'), failovers: rows('#failovers tr'), following: document.querySelector('#following').textContent,
    entriesPath: document.querySelector('#entries').dataset.path,
    entries: [...document.querySelectorAll('#entries tr')].map((tr) => ({ name: tr.dataset.entry, type: tr.dataset.type, size: tr.querySelector('[data-field=sizeBytes]').dataset.value, text: tr.querySelector('td').textContent })),
    htmlInNames: document.querySelectorAll('#entries td b, #entries td img').length
  }
})()`

async function shown (page: Page, until: (s: Shown) => boolean, what: string): Promise<Shown> {
  const deadlineMs = Date.now() + 20_000
  for (;;) {
    const s = await page.evaluate<Shown | null>(readPage)
    if (s !== null && until(s)) return s
    if (Date.now() > deadlineMs) throw new Error(`the page never showed ${what}: ${JSON.stringify(s)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

async function cliReport (masterUrl: string): Promise<p.ClusterReport> {
  const run = await granary(['report', '--json'], { GRANARY_MASTER: masterUrl })
  if (run.code !== 0) throw new Error(`granary report --json exited ${String(run.code)}: ${run.stderr}`)
  return JSON.parse(run.stdout.toString()) as p.ClusterReport
}

async function report (url: string): Promise<p.ClusterReport> {
  return await (await request(`${url}/cluster/report`)).body.json() as p.ClusterReport
}

// The numbers every view must show exactly as the report has them (an idle cluster: nothing moves them).
function sameTotals (t: Test, s: Shown, r: p.ClusterReport, where: string): void {
  for (const key of ['fileCount', 'dirCount', 'chunkCount', 'underReplicatedChunks', 'missingChunks', 'corruptReplicas', 'sizeBytes'] as const) {
    t.equal(Number(s.fields[key]), r[key] ?? 0, `${where}: ${key}`)
  }
  t.equal(s.fields.role, r.role, `${where}: role`)
  t.equal(Number(s.fields.term), r.term, `${where}: term`)
  t.equal(Number(s.fields.seq), r.seq, `${where}: seq`)
  t.equal(s.texts.underReplicatedChunks, String(r.underReplicatedChunks), `${where}: the under-replicated count as text`)
  t.equal(Number(s.fields.liveServers), r.servers.filter((x) => x.alive).length, `${where}: live servers`)
  t.same(s.servers.map((x) => x.serverId), r.servers.map((x) => x.serverId), `${where}: the chunkservers, in order`)
  for (const [i, server] of r.servers.entries()) {
    const row = s.servers[i] ?? {}
    t.equal(row.alive, String(server.alive), `${where}: ${server.serverId} alive`)
    t.equal(row.url, server.url, `${where}: ${server.serverId} url`)
    for (const key of ['capacityBytes', 'usedBytes', 'freeBytes', 'chunkCount', 'corruptReplicas'] as const) {
      t.equal(Number(row[key]), server[key] ?? 0, `${where}: ${server.serverId} ${key}`)
    }
  }
}

const unavailable = chromiumUnavailable()

t.test('the status page shows what granary report --json says', { skip: unavailable === null ? false : `no headless Chromium: ${unavailable}` }, async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, capacityBytes, shadowArgs: ['--no-auto-promote'], test: t })
  const shadow = cluster.shadow as ClusterProcess
  const fs = cluster.client({ deadlineMs: 10_000 })
  await fs.mkdir('/docs/sub', { recursive: true })
  await fs.writeFile('/docs/a.txt', 'hello')
  await fs.writeFile('/docs/b.bin', randomBytes(2 * MiB + 5))
  await fs.writeFile('/docs/<img src=x onerror=alert(1)>&<b>.txt', 'a name that looks like HTML')
  await fs.writeFile('/top.txt', 'top')
  await cluster.waitFor(async () => {
    const r = await report(cluster.master.url)
    return !r.safeMode && r.isr?.length === 1 && r.shadows?.[0]?.lagRecords === 0 && r.lease?.held === true
  }, { what: 'the shadow caught up and in sync, safe mode over' })

  const browser = await Browser.launch()
  t.teardown(() => browser.close())

  // 1. The master: healthy, its shadow in sync with no lag.
  const onMaster = await browser.open(`${cluster.master.url}/`)
  const m = await shown(onMaster, (s) => s.shadows.length === 1, 'the shadow')
  const mr = await cliReport(cluster.master.url)
  sameTotals(t, m, mr, 'master')
  t.equal(m.health, 'healthy')
  t.equal(m.fields.lease, 'true', 'lease held')
  t.equal(Number(m.fields.isr), 1)
  const shadowRow = m.shadows[0] ?? {}
  t.equal(shadowRow.shadowId, mr.shadows?.[0]?.shadowId)
  t.equal(shadowRow.url, shadow.url)
  t.equal(Number(shadowRow.appliedSeq), mr.shadows?.[0]?.appliedSeq)
  t.equal(Number(shadowRow.lagRecords), 0)
  t.equal(shadowRow.inSync, 'true')

  // 2. The shadow: its master and its lag.
  const onShadow = await browser.open(`${shadow.url}/`)
  const s = await shown(onShadow, (x) => x.following !== '', 'its master')
  const sr = await cliReport(shadow.url)
  sameTotals(t, s, sr, 'shadow')
  t.match(s.following, `following ${cluster.master.url}`)
  t.match(s.following, `${sr.following?.lagRecords ?? 'none'} records behind`)

  // 3. After a planned promotion and a chunkserver killed: the new master.
  const promoted = await request(`${shadow.url}/admin/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', headersTimeout: 30_000 })
  t.equal(promoted.statusCode, 200, await promoted.body.text())
  await (cluster.chunkservers[2] as ClusterProcess).kill()
  await cluster.waitFor(async () => {
    const r = await report(shadow.url)
    return r.servers.filter((x) => !x.alive).length === 1 && r.underReplicatedChunks > 0 && !r.safeMode
  }, { what: 'the new master sees a dead chunkserver', timeoutMs: 30_000 })
  const onNew = await browser.open(`${shadow.url}/`)
  const n = await shown(onNew, (x) => x.fields.liveServers === '2' && x.failovers.length === 1 && x.entries.length > 0, 'the dead server and the failover')
  const nr = await cliReport(shadow.url)
  sameTotals(t, n, nr, 'new master')
  t.equal(n.health, 'degraded', 'under-replicated, nothing missing: degraded')
  t.ok(Number(n.fields.underReplicatedChunks) > 0)
  const dead = n.servers.find((x) => x.alive === 'false')
  t.ok(Number(dead?.lastHeartbeatAgeMs) >= 2_000, 'the dead server\'s heartbeat age is past deadAfterMs')
  const failover = nr.failovers?.[0] as p.FailoverEvent
  t.match(failover, { kind: 'hand-over', term: 2, fromUrl: cluster.master.url })
  t.same(n.failovers[0], {
    atMs: String(failover.atMs), kind: 'hand-over', term: '2', fromUrl: cluster.master.url,
    electionMs: String(failover.electionMs), totalMs: String(failover.totalMs), votes: String(failover.votes)
  }, 'the failover as the report has it (a hand-over has no silence: no value)')

  // 4. The namespace browser: the root, then a click into /docs.
  const client = cluster.client({ masters: [shadow.url] })
  const rootNames = (await client.readdir('/')).sort()
  t.same(n.entries.map((e) => e.name).sort(), rootNames, 'the root listed')
  await onNew.evaluate('document.querySelector(\'[data-entry="docs"] a\').click()')
  const docs = await shown(onNew, (x) => x.entriesPath === '/docs', 'the /docs listing')
  const expected = await client.readdir('/docs', { withStats: true })
  t.same(docs.entries.map((e) => [e.name, e.type, e.type === 'file' ? Number(e.size) : 0]).sort(),
    expected.map((e) => [e.path.split('/').pop(), e.type, e.type === 'file' ? e.sizeBytes : 0]).sort(), '/docs listed as readdir has it')
  t.ok(docs.entries.some((e) => e.text === '<img src=x onerror=alert(1)>&<b>.txt'), 'an HTML-like name shown as text')
  t.equal(docs.htmlInNames, 0, 'and not parsed as HTML')

  mkdirSync(artifactsDir, { recursive: true })
  const shot = await onNew.screenshot()
  t.same([...shot.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG')
  const file = join(artifactsDir, `status-page-${new Date().toISOString().replace(/[:.]/g, '-')}.png`)
  writeFileSync(file, shot)
  t.comment(`screenshot: ${file}`)
})
