// Proves the kit's hosts on real processes. With hosts: 5 every process listens on its own loopback address
// only (127.0.0.2 ...) and is advertised on it: the master's and the shadow's reports, health and open replies
// name each chunkserver and shadow on its host's address and never 0.0.0.0 or 127.0.0.1, each replica serves its
// bytes there, and a file round-trips by sha256. A shadow host killed for good: the chunkservers only probe its
// address (GET /healthz; no heartbeat POST, so no report built), no more often than the 25 ms doubling backoff
// allows and well below the old report every 100 ms — counted by a listener of our own on the dead shadow's
// address:port — and the first heartbeat after a probe is answered carries a full report; meanwhile the master
// drops the shadow from its in-sync set and acknowledges writes. A chunkserver told to bind 0.0.0.0 without
// --advertise-url exits 1 before it binds or creates anything, naming the flag (spawned alone, and as one
// chunkserver's own flags through the kit). A frozen chunkserver host: a put goes around it, reads work once the
// master counts it dead, and after the thaw every file reads back byte-identical, from its own replicas too.
// Last, docs/TESTING.md's example: an upload rides out the death of the master's host.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage } from 'node:http'
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { signedRequest as request } from '../../testing/cluster.js'
import diagnosticsChannel from 'node:diagnostics_channel'
import { channelNames } from '../../client/diagnostics.js'
import { uploadBuffer } from '../../examples/upload-app/app.js'
import { advertisedUrl, chunkserverDefaults, configFromArgv, resolveChunkserverConfig } from '../../shared/config.js'
import { logSizeBytes, readFrom } from '../../shared/process.js'
import { retryAfterMs } from '../../chunkserver/heartbeat.js'
import { tokenHeader, type ClusterReport, type HealthReply, type HeartbeatRequest, type OpenReply } from '../../shared/protocol.js'
import { startCluster, type Cluster, type ClusterProcess } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'

const MiB = 1024 * 1024
const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex')

async function getText (url: string): Promise<string> {
  const res = await request(url, { headersTimeout: 5000, bodyTimeout: 5000 })
  const text = await res.body.text()
  if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${text}`)
  return text
}

const hostOf = (url: string): string => new URL(url).hostname

// The processes of this cluster by advertised URL, and the address of the host the kit placed each on.
function placedAddress (cluster: Cluster, url: string): string | undefined {
  const p = cluster.processes.find((candidate) => candidate.url === url)
  return p === undefined ? undefined : cluster.host(p).address
}

t.test('five hosts: every process on its own address, advertised as such; a dead shadow host costs probes only', async (t) => {
  const cluster = await startCluster({ hosts: 5, shadow: true, chunkservers: 3, test: t })
  const shadow = cluster.shadow as ClusterProcess
  const fs = cluster.client()

  await t.test('placement, binding and advertised URLs', async (t) => {
    t.same(cluster.hosts.map((h) => [h.name, h.address, h.processes.map((p) => p.name)]), [
      ['host0', '127.0.0.2', ['master']], ['host1', '127.0.0.3', ['shadow']], ['host2', '127.0.0.4', ['chunkserver0']],
      ['host3', '127.0.0.5', ['chunkserver1']], ['host4', '127.0.0.6', ['chunkserver2']]
    ], 'round-robin: master, shadow, chunkserver0, ... one per host')
    for (const p of cluster.processes) {
      t.equal(hostOf(p.url), cluster.host(p).address, `${p.name} advertises ${p.url}, on its host's address`)
      t.same(listening(p.pid), [`${cluster.host(p).address}:${p.port}`], `${p.name} listens on its host's address only`)
    }

    const data = randomBytes(3 * MiB + 12_345)   // 4 chunks of 1 MiB
    await fs.writeFile('/hosts/a.bin', data)
    t.equal(sha(await fs.readFile('/hosts/a.bin')), sha(data), 'a put reads back byte-identical')

    // The shadow follows (in the in-sync set) and has heard every chunkserver before its report is read.
    await cluster.waitFor(async () => {
      const [m, s] = await Promise.all([cluster.report(), getText(`${shadow.url}/cluster/report`).then((text) => JSON.parse(text) as ClusterReport)])
      return (m.isr?.length ?? 0) === 1 && m.shadows?.some((sh) => sh.url === shadow.url) === true && s.servers.filter((sv) => sv.alive).length === 3
    }, { what: 'the shadow in sync and hearing all three chunkservers' })

    const texts: Record<string, string> = {}
    for (const [name, url] of [['master', cluster.master.url], ['shadow', shadow.url]] as const) {
      texts[`${name} report`] = await getText(`${url}/cluster/report`)
      texts[`${name} health`] = await getText(`${url}/healthz`)
      texts[`${name} open`] = await getText(`${url}/fs/open?path=${encodeURIComponent('/hosts/a.bin')}`)
    }
    for (const [what, text] of Object.entries(texts)) {
      t.notOk(text.includes('0.0.0.0'), `${what}: no 0.0.0.0`)
      t.notOk(text.includes('127.0.0.1'), `${what}: no 127.0.0.1`)
    }
    for (const name of ['master', 'shadow']) {
      const report = JSON.parse(texts[`${name} report`] as string) as ClusterReport
      t.equal(report.servers.length, 3, `${name} report: three chunkservers`)
      for (const server of report.servers) {
        const cs = cluster.chunkservers.find((c) => c.serverId === server.serverId)
        t.ok(cs !== undefined, `${name} report: ${server.serverId} is one of ours`)
        if (cs === undefined) continue
        t.equal(server.url, cs.url, `${name} report: ${cs.name} at ${server.url}`)
        t.equal(hostOf(server.url), cluster.host(cs).address, `${name} report: ${cs.name} on its host's address`)
      }
      const health = JSON.parse(texts[`${name} health`] as string) as HealthReply
      t.same([...(health.metadataServers ?? [])].sort(), [cluster.master.url, shadow.url].sort(), `${name} health: the master and the shadow, each on its host`)
      const open = JSON.parse(texts[`${name} open`] as string) as OpenReply
      t.equal(open.chunks.length, 4)
      for (const chunk of open.chunks) {
        t.equal(chunk.replicas.length, 3, `${name} open: chunk ${chunk.chunkIndex} has 3 replicas`)
        t.same(chunk.replicas.map((r) => hostOf(r.url)), chunk.replicas.map((r) => placedAddress(cluster, r.url)), `${name} open: chunk ${chunk.chunkIndex}'s replicas each on its host`)
      }
    }
    const masterReport = JSON.parse(texts['master report'] as string) as ClusterReport
    t.same(masterReport.shadows?.map((s) => hostOf(s.url ?? '')), [cluster.host(shadow).address], 'the master lists the shadow on its host')
    const shadowReport = JSON.parse(texts['shadow report'] as string) as ClusterReport
    t.equal(shadowReport.following?.masterUrl, cluster.master.url, 'the shadow follows the master at its host address')

    // Every replica serves its bytes from the address it is listed at.
    const open = JSON.parse(texts['master open'] as string) as OpenReply
    for (const chunk of open.chunks) {
      const want = sha(data.subarray(chunk.chunkIndex * MiB, chunk.chunkIndex * MiB + chunk.lengthBytes))
      for (const replica of chunk.replicas) {
        const res = await request(`${replica.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { [tokenHeader]: chunk.token } })
        t.equal(sha(Buffer.from(await res.body.arrayBuffer())), want, `chunk ${chunk.chunkIndex} from ${replica.url}`)
      }
    }
  })

  await t.test('the shadow host dies: chunkservers probe it with backoff, the master drops it and acks writes', async (t) => {
    const before = await cluster.report()
    const shadowId = before.shadows?.find((s) => s.url === shadow.url)?.shadowId as string
    t.same(before.isr, [shadowId], 'the shadow is in the in-sync set before its host dies')
    const shadowHost = cluster.host(shadow)
    const { address, port } = { address: shadowHost.address, port: shadow.port }
    const logOffsets = cluster.chunkservers.map((cs) => logSizeBytes(cs.logPath))

    await shadowHost.kill()
    t.notOk(shadow.alive, 'the shadow is gone')
    // A write while the shadow is dead: its ack waits for the in-sync shadow, proposes it out after
    // isrConfirmWaitMsMax, and goes once a chunkserver majority has echoed the set without it.
    const during = randomBytes(2 * MiB + 777)
    const put = (async () => {
      await fs.writeFile('/hosts/during.bin', during)
      return sha(await fs.readFile('/hosts/during.bin'))
    })()
    put.catch(() => {})   // awaited below; a failure must not surface earlier as an unhandled rejection

    // Every chunkserver has seen the shadow fail (it logs the change once): from here on each of its
    // attempts there starts with a probe.
    await cluster.waitFor(() => cluster.chunkservers.every((cs, i) => readFrom(cs.logPath, logOffsets[i] as number).text.split('\n').some((line) => {
      if (!line.includes('"master unreachable"')) return false
      return (JSON.parse(line) as { master?: string }).master === shadow.url
    })), { what: 'every chunkserver to log the shadow unreachable' })

    // Our own listener on the dead shadow's address and port, answering everything 503. Each request is
    // put down to the chunkserver whose socket it came from (all connect from 127.0.0.1: the socket's inode
    // in /proc/net/tcp, found among the chunkserver's open files).
    const pids = new Map(cluster.chunkservers.map((cs) => [cs.pid, cs.name]))
    const seen: Array<{ from: string, what: string, atMs: number }> = []
    const posted: Array<{ from: string, body: HeartbeatRequest }> = []
    let healthStatus = 503
    const owners = new WeakMap<object, string>()
    const listener = createServer((req: IncomingMessage, res) => {
      const from = owners.get(req.socket) ?? ownerOf(req.socket.remotePort ?? 0, port, pids)
      owners.set(req.socket, from)
      const what = `${req.method ?? '?'} ${(req.url ?? '').split('?')[0] ?? ''}`
      seen.push({ from, what, atMs: Date.now() })
      const chunks: Buffer[] = []
      req.on('data', (d: Buffer) => chunks.push(d))
      req.on('end', () => {
        if (what === 'POST /chunkservers/heartbeat') posted.push({ from, body: JSON.parse(Buffer.concat(chunks).toString()) as HeartbeatRequest })
        const status = what === 'GET /healthz' ? healthStatus : 503
        res.writeHead(status, { 'content-type': 'application/json' })
          .end(status === 200 ? '{"role":"shadow","term":1,"seq":0,"safeMode":false}' : '{"statusCode":503,"code":"GRN_UNAVAILABLE","error":"Service Unavailable","message":"a test listener on a dead host"}')
      })
    })
    await new Promise<void>((resolve, reject) => { listener.once('error', reject); listener.listen({ host: address, port }, resolve) })
    t.teardown(async () => { listener.closeAllConnections(); await new Promise((resolve) => listener.close(resolve)) })
    const openedAtMs = Date.now()

    const windowMs = 3_000
    await cluster.waitFor(() => Date.now() - openedAtMs >= windowMs, { what: `a ${windowMs} ms window`, timeoutMs: windowMs + 1_000 })
    const windowEndMs = Date.now()
    const inWindow = seen.filter((r) => r.atMs <= windowEndMs)
    const actualMs = windowEndMs - openedAtMs

    t.same(inWindow.filter((r) => r.what.startsWith('POST /chunkservers/heartbeat')), [], 'no heartbeat POST (and no report built) while every probe fails')
    const interval = 200   // the kit's heartbeatIntervalMs, which the shadow told the chunkservers in its replies
    // Waits shorter than the interval (25, 50, 100 ms) come once after a failure is logged; then one attempt per
    // interval. An attempt starts at least its wait after the last one started (timers fire late, not early).
    let rampWaits = 0
    while (retryAfterMs({ failures: rampWaits + 1, intervalMs: interval }) < interval) rampWaits++
    const mostAttempts = 1 + rampWaits + Math.ceil(actualMs / interval)
    // The old code sent a full report every 100 ms; the new steady rate is exactly half that, so a ×2 margin on
    // the whole would admit the old behaviour. The margin is half the steady rate again, on top of the ramp.
    const oldAttempts = Math.floor(actualMs / 100)
    const bound = mostAttempts + Math.ceil(actualMs / interval / 2)
    t.ok(bound < oldAttempts, `the bound (${bound}) is below what the old behaviour sent (${oldAttempts}) in ${actualMs} ms`)
    for (const cs of cluster.chunkservers) {
      const probes = inWindow.filter((r) => r.from === cs.name && r.what === 'GET /healthz').length
      t.ok(probes >= 3, `${cs.name} keeps probing: ${probes} probes in ${actualMs} ms`)
      t.ok(probes <= bound, `${cs.name}: ${probes} probes in ${actualMs} ms, at most ${bound} (1 + ${rampWaits} ramp + one per ${interval} ms, and slack)`)
    }
    t.same([...new Set(inWindow.filter((r) => r.from.startsWith('chunkserver')).map((r) => r.what))], ['GET /healthz'], 'the chunkservers sent nothing but probes')
    t.comment(`requests in the window: ${JSON.stringify(countBy(inWindow))}`)

    // The gate is the probe: answered 200, each chunkserver's next request is a heartbeat with a full report.
    healthStatus = 200
    await cluster.waitFor(() => cluster.chunkservers.every((cs) => posted.some((p) => p.from === cs.name)), { what: 'a heartbeat from every chunkserver once a probe succeeds' })
    for (const cs of cluster.chunkservers) {
      const first = posted.find((p) => p.from === cs.name)
      t.equal(first?.body.serverId, cs.serverId, `${cs.name}'s heartbeat names it (the socket owner was found right)`)
      t.ok(Array.isArray(first?.body.fullReport), `${cs.name}'s first heartbeat after the probe carries a full report`)
      t.equal(first?.body.url, cs.url, `${cs.name} advertises ${cs.url}`)
    }
    healthStatus = 503

    t.equal(await put, sha(during), 'the master acked a put while the shadow host is dead; it reads back byte-identical')
    await cluster.waitFor(async () => (await cluster.report()).isr?.includes(shadowId) === false, { what: 'the dead shadow out of the in-sync set' })
    const after = randomBytes(MiB + 5)
    await fs.writeFile('/hosts/after.bin', after)
    t.equal(sha(await fs.readFile('/hosts/after.bin')), sha(after), 'and one more, with the shadow out of the set')
  })
})

t.test('a chunkserver on 0.0.0.0 without --advertise-url exits before it binds, naming the flag', async (t) => {
  const dir = t.testdir({})
  // No secret file, no master: the address check comes first and nothing is bound or dialled.
  const run = await granary(['chunkserver', '--host', '0.0.0.0', '--port', '0', '--data-dir', `${dir}/cs`, '--secret-file', `${dir}/secret`, '--masters', 'http://127.0.0.2:9'], {})
  t.equal(run.code, 2, 'exits 2: a usage error, like every bad server flag')
  t.match(run.stderr, /^granary: GRN_INVALID_ARGUMENT: .*chunkserver --host 0\.0\.0\.0 binds every address/, 'an invalid argument, and why')
  t.match(run.stderr, /give --advertise-url http:\/\/ADDRESS:PORT/, 'the message names --advertise-url')
  t.notOk(run.stdout.toString().includes('"msg":"ready"'), 'it never got as far as ready')
  t.same(readdirSync(dir), [], 'and created nothing')

  // Through the kit, as a chunkserver's own flags: it fails to start, and says why. One chunkserver only: a
  // failed startCluster does not wait for the chunkservers still starting beside it (see the report).
  const failed = await startCluster({ chunkservers: [{ args: ['--host', '0.0.0.0'] }], replication: 1, dataDir: `${dir}/kit`, test: t }).then(() => 'started', (err: Error) => err.message)
  t.match(failed, /granary chunkserver.*exited before it was ready/s, 'startCluster fails: the chunkserver exited')
  t.match(failed, /chunkserver0\.log/, 'the log tail is the chunkserver\'s')
  t.match(failed, /chunkserver --host 0\.0\.0\.0 binds every address.*--advertise-url/, 'and names --advertise-url')

  // With an address to advertise the same flags are accepted (checked without binding 0.0.0.0 here).
  const argv = ['--host', '0.0.0.0', '--port', '7001', '--advertise-url', 'http://127.0.0.9:7001']
  const config = resolveChunkserverConfig(configFromArgv('chunkserver', chunkserverDefaults, argv))
  t.match(config, { host: '0.0.0.0', port: 7001, advertiseUrl: 'http://127.0.0.9:7001' }, '--advertise-url http://127.0.0.9:7001 is accepted')
  t.equal(advertisedUrl(config.host, config.port, config.advertiseUrl), 'http://127.0.0.9:7001', 'and is what it would tell the master')
})

t.test('a frozen chunkserver host: a put goes around it; after the thaw every file reads back', async (t) => {
  const cluster = await startCluster({ hosts: 5, chunkservers: 4, test: t })
  const fs = cluster.client()
  const existing = randomBytes(3 * MiB + 99)
  await fs.writeFile('/frozen/existing.bin', existing)
  const openBefore = JSON.parse(await getText(`${cluster.master.url}/fs/open?path=${encodeURIComponent('/frozen/existing.bin')}`)) as OpenReply
  // Freeze a server that holds replicas of the existing file.
  const frozen = cluster.chunkservers.find((cs) => openBefore.chunks.some((c) => c.replicas.some((r) => r.serverId === cs.serverId))) as ClusterProcess
  const host = cluster.host(frozen)
  host.freeze()
  t.ok(frozen.hung, `${frozen.name} (${host.name}, ${host.address}) frozen`)

  const startedMs = Date.now()
  const fresh = randomBytes(2 * MiB + 3)
  const retries: unknown[] = []
  const onRetry = (message: unknown): void => { retries.push({ atMs: Date.now() - startedMs, ...(message as object) }) }
  diagnosticsChannel.subscribe(channelNames.pipelineRetry, onRetry)
  try {
    await fs.writeFile('/frozen/fresh.bin', fresh)
  } finally {
    diagnosticsChannel.unsubscribe(channelNames.pipelineRetry, onRetry)
  }
  const names = Object.fromEntries(cluster.chunkservers.map((cs) => [cs.serverId, cs.name]))
  t.comment(`put with ${frozen.name} frozen took ${Date.now() - startedMs} ms; pipeline retries: ${JSON.stringify(retries).replace(/cs-[0-9a-f]{12}/g, (id) => names[id] ?? id)}`)
  const openFresh = JSON.parse(await getText(`${cluster.master.url}/fs/open?path=${encodeURIComponent('/frozen/fresh.bin')}`)) as OpenReply
  for (const chunk of openFresh.chunks) {
    t.equal(chunk.replicas.length, 3, `fresh chunk ${chunk.chunkIndex}: 3 replicas`)
    t.notOk(chunk.replicas.some((r) => r.serverId === frozen.serverId), `fresh chunk ${chunk.chunkIndex}: none on the frozen server`)
  }

  // Silent for deadAfterMs, the frozen server is dead to the master: open lists it last, and reads go to the others.
  await cluster.waitFor(async () => (await cluster.report()).servers.find((s) => s.serverId === frozen.serverId)?.alive === false, { what: `${frozen.name} dead to the master` })
  t.equal(sha(await fs.readFile('/frozen/existing.bin')), sha(existing), 'the existing file reads back while its host is frozen')

  host.thaw()
  t.notOk(frozen.hung)
  await cluster.waitForChunkservers(4)
  t.equal(sha(await fs.readFile('/frozen/existing.bin')), sha(existing), 'the existing file reads back after the thaw')
  t.equal(sha(await fs.readFile('/frozen/fresh.bin')), sha(fresh), 'and so does the one put while it was frozen')
  for (const chunk of openBefore.chunks.filter((c) => c.replicas.some((r) => r.serverId === frozen.serverId))) {
    // While it was dead the master may have copied its replicas elsewhere; back, its copy is surplus and may be
    // deleted on the master's word. What it still serves must be intact; what it no longer has is a clean 404.
    const res = await request(`${frozen.url}/chunks/${chunk.chunkHandle}?version=${chunk.version}`, { headers: { [tokenHeader]: chunk.token } })
    const body = Buffer.from(await res.body.arrayBuffer())
    const want = sha(existing.subarray(chunk.chunkIndex * MiB, chunk.chunkIndex * MiB + chunk.lengthBytes))
    if (res.statusCode === 200) t.equal(sha(body), want, `the thawed ${frozen.name} serves chunk ${chunk.chunkIndex} intact`)
    else t.match({ statusCode: res.statusCode, body: JSON.parse(body.toString()) as object }, { statusCode: 404, body: { code: 'GRN_CHUNK_NOT_FOUND' } }, `the thawed ${frozen.name} no longer holds surplus chunk ${chunk.chunkIndex}`)
  }
})

// docs/TESTING.md's hosts example, verbatim in substance (the kit imported from source here).
t.test('an upload survives the death of the master\'s machine', async (t) => {
  // One process per host: master 127.0.0.2, shadow 127.0.0.3, chunkservers 127.0.0.4-6.
  const cluster = await startCluster({ hosts: 5, shadow: true, chunkservers: 3, test: t })
  const fs = cluster.client({ deadlineMs: 30_000 })                // knows the master and the shadow
  // Only a shadow in the master's in-sync set may take over: wait until it is.
  await cluster.waitFor(async () => (await cluster.report()).isr?.length === 1, { what: 'the shadow in sync' })
  const data = randomBytes(8 * 1024 * 1024)

  const upload = uploadBuffer(fs, '/uploads/report.bin', data, (sent) => sent >= data.length / 2)
  await upload.halfway
  await cluster.host(cluster.master).kill()                        // the machine is gone, for good
  await upload.done                                                 // the upload completes anyway

  const health = await (await fetch(`${cluster.shadow?.url}/healthz`)).json() as { role: string }
  t.equal(health.role, 'master', 'the shadow took over')
  t.equal(sha(await fs.readFile('/uploads/report.bin')), sha(data))
})

function countBy (requests: Array<{ from: string, what: string }>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of requests) out[`${r.from} ${r.what}`] = (out[`${r.from} ${r.what}`] ?? 0) + 1
  return out
}

// The sockets a process holds: the inodes behind /proc/PID/fd/N -> socket:[INODE] (same user: no privileges).
function socketInodes (pid: number): Set<string> {
  const inodes = new Set<string>()
  let fds: string[]
  try { fds = readdirSync(`/proc/${pid}/fd`) } catch { return inodes }
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (match !== null) inodes.add(match[1] as string)
    } catch {}
  }
  return inodes
}

// Rows of /proc/net/tcp and tcp6: local and remote address as hex, state, inode.
function tcpRows (): Array<{ local: string, remote: string, state: string, inode: string }> {
  const rows: Array<{ local: string, remote: string, state: string, inode: string }> = []
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = ''
    try { text = readFileSync(file, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10) continue
      rows.push({ local: fields[1] as string, remote: fields[2] as string, state: fields[3] as string, inode: fields[9] as string })
    }
  }
  return rows
}

// "0400007F:A1B2" (IPv4, host byte order on little-endian machines) -> "127.0.0.4:41394"; IPv6 rows as hex.
function decodeAddress (hex: string): string {
  const [ip, port] = hex.split(':') as [string, string]
  const address = ip.length === 8 ? [3, 2, 1, 0].map((i) => parseInt(ip.slice(i * 2, i * 2 + 2), 16)).join('.') : `[${ip}]`
  return `${address}:${parseInt(port, 16)}`
}

// Where a process accepts connections: its listening sockets' local addresses.
function listening (pid: number): string[] {
  const inodes = socketInodes(pid)
  return tcpRows().filter((row) => row.state === '0A' && inodes.has(row.inode)).map((row) => decodeAddress(row.local)).sort()
}

// Which of `pids` owns the client end of a connection to our listener: the client socket is the row of
// /proc/net/tcp with local port `clientPort` and remote port `serverPort`; its inode is one of that
// process's open files (/proc/PID/fd/N -> socket:[INODE]). Same user, so readable without privileges.
function ownerOf (clientPort: number, serverPort: number, pids: Map<number, string>): string {
  const row = tcpRows().find((r) => Number(decodeAddress(r.local).split(':').pop()) === clientPort && Number(decodeAddress(r.remote).split(':').pop()) === serverPort)
  if (row === undefined) return 'unknown'
  for (const [pid, name] of pids) if (socketInodes(pid).has(row.inode)) return name
  return 'other'
}
