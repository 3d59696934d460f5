// GET / on a master or shadow: one self-contained HTML page (inline CSS and JS, no build step, nothing fetched
// from elsewhere) that reads the JSON routes this server already has — /cluster/report every few seconds, and
// /fs/list for the namespace browser — and shows the cluster at a glance: health, chunkservers with space and
// heartbeat age, shadows with lag (or, on a shadow, its master and its lag), under-replicated, missing and
// corrupt counts, the lease and the in-sync set, and the failovers this server won.
// Every value from the server is put in the page with textContent, never innerHTML: a file name is data.
// Each shown value carries a data-field (and each row a data-server-id / data-shadow-id / data-entry) so a
// test reads what a person sees (test/cluster/status-page.test.ts).
import { listPageSizeMax } from '../shared/limits.js'
import { listPath, reportPath, staleOkHeader } from '../shared/protocol.js'

export const statusRefreshMs = 5_000      // how often the page asks for the report again
const listPageSize = Math.min(500, listPageSizeMax)

const css = `
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --mute: #57606a; --line: #d0d7de; font-family: system-ui, sans-serif; }
body { margin: 0; color: #1f2328; background: #f6f8fa; }
header { display: flex; align-items: baseline; gap: 1rem; padding: .8rem 1.2rem; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.2rem; margin: 0; }
#health { font-weight: 600; padding: .15rem .6rem; border-radius: 1rem; color: #fff; background: var(--mute); }
#health[data-state="healthy"] { background: var(--ok); } #health[data-state="degraded"] { background: var(--warn); } #health[data-state="at-risk"] { background: var(--bad); }
main { padding: 1rem 1.2rem; display: grid; gap: 1rem; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .6rem 1rem; }
h2 { font-size: 1rem; margin: .2rem 0 .6rem; }
.tiles { display: flex; flex-wrap: wrap; gap: .6rem; }
.tile { border: 1px solid var(--line); border-radius: 6px; padding: .4rem .7rem; min-width: 7rem; }
.tile .v { font-size: 1.3rem; font-weight: 600; } .tile .k { color: var(--mute); font-size: .8rem; }
.tile.bad .v { color: var(--bad); }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.dead td { color: var(--bad); }
.mute { color: var(--mute); } #error { color: var(--bad); }
a { color: #0969da; cursor: pointer; text-decoration: none; } a:hover { text-decoration: underline; }
#crumbs a + a + a::before { content: ' / '; color: var(--mute); }
`

const html = `
<header><h1>Granary</h1><span id="health" data-field="health">loading</span>
<span data-field="role"></span><span class="mute">term <span data-field="term"></span> · seq <span data-field="seq"></span></span>
<span class="mute" id="updated"></span><span id="error"></span></header>
<main>
<section><h2>Cluster</h2><div class="tiles">
<div class="tile"><div class="v" data-field="liveServers"></div><div class="k">chunkservers alive</div></div>
<div class="tile" data-tile="underReplicatedChunks"><div class="v" data-field="underReplicatedChunks"></div><div class="k">under-replicated chunks</div></div>
<div class="tile" data-tile="missingChunks"><div class="v" data-field="missingChunks"></div><div class="k">missing chunks</div></div>
<div class="tile" data-tile="corruptReplicas"><div class="v" data-field="corruptReplicas"></div><div class="k">corrupt replicas</div></div>
<div class="tile"><div class="v" data-field="fileCount"></div><div class="k">files</div></div>
<div class="tile"><div class="v" data-field="dirCount"></div><div class="k">folders</div></div>
<div class="tile"><div class="v" data-field="chunkCount"></div><div class="k">chunks</div></div>
<div class="tile"><div class="v" data-field="sizeBytes"></div><div class="k">stored (logical)</div></div>
<div class="tile"><div class="v" data-field="freeBytes"></div><div class="k">free (live servers)</div></div>
<div class="tile"><div class="v" data-field="lease"></div><div class="k">lease</div></div>
<div class="tile"><div class="v" data-field="isr"></div><div class="k">in-sync shadows</div></div>
<div class="tile"><div class="v" data-field="safeMode"></div><div class="k">safe mode</div></div>
</div></section>
<section><h2>Chunkservers</h2><table><thead><tr><th>server</th><th>url</th><th>state</th><th class="n">heartbeat age</th>
<th class="n">capacity</th><th class="n">used</th><th class="n">free</th><th class="n">chunks</th><th class="n">writes</th><th class="n">corrupt</th></tr></thead>
<tbody id="servers"></tbody></table></section>
<section id="shadows-section"><h2>Shadows</h2><table><thead><tr><th>shadow</th><th>url</th><th class="n">applied seq</th><th class="n">lag (records)</th>
<th class="n">lag</th><th class="n">last seen</th><th>in sync</th></tr></thead><tbody id="shadows"></tbody></table>
<p id="following" class="mute"></p><p id="no-shadows" class="mute" hidden>no shadow has polled this master lately</p></section>
<section><h2>Recent failovers</h2><table><thead><tr><th>when</th><th>kind</th><th class="n">term</th><th>from</th><th class="n">master silent</th>
<th class="n">election</th><th class="n">total</th><th class="n">votes</th></tr></thead><tbody id="failovers"></tbody></table>
<p id="no-failovers" class="mute">none won by this server since it started</p></section>
<section><h2>Namespace</h2><div id="crumbs"></div><table><thead><tr><th>name</th><th>type</th><th class="n">size</th><th class="n">chunks</th>
<th class="n">replication</th><th>modified</th></tr></thead><tbody id="entries"></tbody></table>
<p><a id="more" hidden>more…</a> <span id="list-error" class="mute"></span></p></section>
</main>`

// The page's script: plain ES2020, no libraries.
const script = `
'use strict'
const reportUrl = ${JSON.stringify(reportPath)}, listUrl = ${JSON.stringify(listPath)}
const refreshMs = ${statusRefreshMs}, pageSize = ${listPageSize}
const staleOk = { ${JSON.stringify(staleOkHeader)}: '1' }
const $ = (s) => document.querySelector(s)
function el (tag, text, attrs) {
  const e = document.createElement(tag)
  if (text !== undefined && text !== null) e.textContent = String(text)
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v)
  return e
}
function bytes (n) {
  if (typeof n !== 'number') return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0; let v = n
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++ }
  return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i]
}
function ms (n) {
  if (typeof n !== 'number') return '–'
  return n < 1000 ? Math.round(n) + ' ms' : n < 120000 ? (n / 1000).toFixed(1) + ' s' : Math.round(n / 60000) + ' min'
}
function setField (name, text, raw) {
  for (const e of document.querySelectorAll('[data-field="' + name + '"]')) {
    e.textContent = text
    if (raw !== undefined) e.dataset.value = String(raw)
  }
}
function cell (text, field, raw, numeric) {
  const td = el('td', text, { 'data-field': field })
  if (raw !== undefined && raw !== null) td.dataset.value = String(raw)
  if (numeric) td.className = 'n'
  return td
}
function healthOf (r) {
  const dead = r.servers.filter((s) => !s.alive).length
  if (r.missingChunks > 0) return 'at-risk'
  if (r.underReplicatedChunks > 0 || dead > 0 || (r.corruptReplicas || 0) > 0 || r.safeMode || (r.lease && !r.lease.held) || r.fencedByTerm !== undefined) return 'degraded'
  return 'healthy'
}
function render (r) {
  const state = healthOf(r)
  const health = $('#health'); health.dataset.state = state; health.textContent = state.replace('-', ' ')
  setField('role', r.fencedByTerm !== undefined ? 'deposed master (term ' + r.fencedByTerm + ' exists)' : r.role, r.role)
  setField('term', r.term, r.term); setField('seq', r.seq, r.seq)
  const live = r.servers.filter((s) => s.alive)
  setField('liveServers', live.length + ' / ' + r.servers.length, live.length)
  for (const k of ['underReplicatedChunks', 'missingChunks', 'corruptReplicas', 'fileCount', 'dirCount', 'chunkCount']) {
    const v = r[k] || 0
    setField(k, v, v)
    const tile = document.querySelector('[data-tile="' + k + '"]')
    if (tile) tile.classList.toggle('bad', v > 0)
  }
  setField('sizeBytes', bytes(r.sizeBytes), r.sizeBytes)
  const free = live.reduce((sum, s) => sum + s.freeBytes, 0)
  setField('freeBytes', bytes(free), free)
  setField('lease', r.lease ? (r.lease.held ? 'held' : 'NOT held') + (r.lease.remainingMs !== null ? ' (' + ms(r.lease.remainingMs) + ')' : '') : '–', r.lease ? String(r.lease.held) : '')
  setField('isr', r.isr ? String(r.isr.length) : '–', r.isr ? r.isr.length : '')
  setField('safeMode', r.safeMode ? 'ON' : 'off', String(r.safeMode))
  const servers = $('#servers'); servers.replaceChildren()
  for (const s of r.servers) {
    const tr = el('tr', null, { 'data-server-id': s.serverId }); if (!s.alive) tr.className = 'dead'
    tr.append(cell(s.serverId, 'serverId', s.serverId), cell(s.url, 'url', s.url), cell(s.alive ? 'alive' : 'DEAD', 'alive', String(s.alive)),
      cell(ms(s.lastHeartbeatAgeMs), 'lastHeartbeatAgeMs', s.lastHeartbeatAgeMs, true), cell(bytes(s.capacityBytes), 'capacityBytes', s.capacityBytes, true),
      cell(bytes(s.usedBytes), 'usedBytes', s.usedBytes, true), cell(bytes(s.freeBytes), 'freeBytes', s.freeBytes, true),
      cell(s.chunkCount, 'chunkCount', s.chunkCount, true), cell(s.activeWrites, 'activeWrites', s.activeWrites, true),
      cell(s.corruptReplicas || 0, 'corruptReplicas', s.corruptReplicas || 0, true))
    servers.append(tr)
  }
  const shadows = $('#shadows'); shadows.replaceChildren()
  const isr = new Set(r.isr || [])
  for (const s of r.shadows || []) {
    const tr = el('tr', null, { 'data-shadow-id': s.shadowId })
    tr.append(cell(s.shadowId, 'shadowId', s.shadowId), cell(s.url || '–', 'url', s.url), cell(s.appliedSeq, 'appliedSeq', s.appliedSeq, true),
      cell(s.lagRecords, 'lagRecords', s.lagRecords, true), cell(s.lagMs === null ? 'trimmed' : ms(s.lagMs), 'lagMs', s.lagMs, true),
      cell(ms(s.lastSeenAgeMs) + ' ago', 'lastSeenAgeMs', s.lastSeenAgeMs, true), cell(isr.has(s.shadowId) ? 'yes' : 'no', 'inSync', String(isr.has(s.shadowId))))
    shadows.append(tr)
  }
  $('#no-shadows').hidden = (r.shadows || []).length > 0 || r.role !== 'master'
  const f = r.following
  $('#following').textContent = f ? 'This is a shadow following ' + f.masterUrl + ': applied seq ' + f.appliedSeq + ', ' +
    (f.lagRecords === null ? 'lag unknown' : f.lagRecords + ' records behind') + ', last heard ' + ms(f.lastContactAgeMs) + ' ago' + (f.inSync ? ', in sync' : ', not in sync') : ''
  if (f) $('#following').dataset.value = String(f.lagRecords)
  const failovers = $('#failovers'); failovers.replaceChildren()
  for (const e of r.failovers || []) {
    const tr = el('tr', null, { 'data-failover-term': String(e.term) })
    tr.append(cell(new Date(e.atMs).toISOString(), 'atMs', e.atMs), cell(e.kind, 'kind', e.kind), cell(e.term, 'term', e.term, true), cell(e.fromUrl, 'fromUrl', e.fromUrl),
      cell(e.silentMs === null ? '–' : ms(e.silentMs), 'silentMs', e.silentMs, true), cell(ms(e.electionMs), 'electionMs', e.electionMs, true),
      cell(ms(e.totalMs), 'totalMs', e.totalMs, true), cell(e.votes + ' / ' + e.voters, 'votes', e.votes, true))
    failovers.append(tr)
  }
  $('#no-failovers').hidden = (r.failovers || []).length > 0
}
let refreshes = 0
async function refresh () {
  try {
    const res = await fetch(reportUrl, { headers: staleOk, cache: 'no-store' })
    const body = await res.json()
    if (!res.ok) throw new Error(body.code + ': ' + body.message)
    render(body)
    $('#error').textContent = ''
    $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString()
    document.body.dataset.refreshes = String(++refreshes)
  } catch (err) {
    $('#error').textContent = 'report failed: ' + err.message
  }
}
// The namespace browser: the folder in the URL's #fragment, a page of entries at a time.
let listing = { path: '/', after: null }
function currentPath () {
  const p = decodeURIComponent(location.hash.slice(1))
  return p.startsWith('/') ? p : '/'
}
function crumbs (path) {
  const c = $('#crumbs'); c.replaceChildren()
  const parts = path.split('/').filter(Boolean)
  const root = el('a', '/', { href: '#/', 'data-crumb': '/' }); c.append(root)
  let at = ''
  for (const part of parts) { at += '/' + part; c.append(el('a', part, { href: '#' + encodeURIComponent(at), 'data-crumb': at })) }
  c.dataset.path = path
}
async function list (path, after) {
  const q = new URLSearchParams({ path, limit: String(pageSize) })
  if (after) q.set('after', after)
  const entries = $('#entries')
  try {
    const res = await fetch(listUrl + '?' + q, { headers: staleOk, cache: 'no-store' })
    const body = await res.json()
    if (!res.ok) throw new Error(body.code + ': ' + body.message)
    if (!after) entries.replaceChildren()
    for (const e of body.entries) {
      const name = e.path.split('/').pop()
      const tr = el('tr', null, { 'data-entry': name, 'data-type': e.type })
      const nameCell = el('td')
      if (e.type === 'dir') nameCell.append(el('a', name + '/', { href: '#' + encodeURIComponent(e.path) }))
      else nameCell.textContent = name
      tr.append(nameCell, cell(e.type, 'type', e.type), cell(e.type === 'dir' ? '' : bytes(e.sizeBytes), 'sizeBytes', e.sizeBytes, true),
        cell(e.type === 'dir' ? '' : e.chunkCount, 'chunkCount', e.chunkCount, true), cell(e.type === 'dir' ? '' : e.replication, 'replication', e.replication, true),
        cell(new Date(e.mtimeMs).toISOString().replace('T', ' ').slice(0, 19), 'mtimeMs', e.mtimeMs))
      entries.append(tr)
    }
    listing = { path, after: body.nextAfter }
    $('#more').hidden = body.nextAfter === null
    $('#list-error').textContent = ''
    entries.dataset.path = path
    entries.dataset.complete = String(body.nextAfter === null)
  } catch (err) {
    $('#list-error').textContent = 'list ' + path + ' failed: ' + err.message
  }
}
function browse () { const path = currentPath(); crumbs(path); void list(path, null) }
$('#more').addEventListener('click', () => { void list(listing.path, listing.after) })
window.addEventListener('hashchange', browse)
browse()
void refresh()
setInterval(refresh, refreshMs)
`

const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Granary status</title><style>${css}</style></head>
<body>${html}
<script>${script}</script></body></html>
`

export function statusPageHtml (): string { return page }
