// Proves the shadow master on real processes: under a write load (and a SIGKILLed, restarted shadow mid-stream)
// the shadow ends with the master's namespace and chunk tables, its oplog without gaps or duplicates; a second
// shadow bootstrapped from the tar snapshot while writes run ends identical too. With the master killed and not
// restarted, ls, stat, get and cat still work through the shadow (library and CLI) and a put fails with a
// retryable cause once its budget is spent. After `granary admin promote`, the old master restarted on its old
// data is deposed: it refuses requests, its term-1 tokens are refused by every chunkserver, and everything
// written before and after the promotion reads back intact through the new master.
import t from 'tap'
import Database from 'better-sqlite3'
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { signedRequest as request } from '../../testing/cluster.js'
import { connect, type GranaryClient } from '../../client/index.js'
import { cliPath } from '../../shared/process.js'
import type * as p from '../../shared/protocol.js'
import { signToken } from '../../shared/token.js'
import type { ChunkHandle } from '../../shared/ids.js'
import { ClusterProcess, startCluster, type Cluster } from '../../testing/cluster.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function codeOf (promise: Promise<unknown>): Promise<{ code?: string, details?: { lastCode?: string } }> {
  try { await promise; return {} } catch (err) { return err as { code?: string, details?: { lastCode?: string } } }
}

async function health (url: string): Promise<p.HealthReply> {
  const res = await request(`${url}/healthz`, { headersTimeout: 2000, bodyTimeout: 2000 })
  return await res.body.json() as p.HealthReply
}

// Every row of the tables that say what exists and where (read-only, beside the live process).
function stateOf (dataDir: string): Record<string, unknown[]> {
  const db = new Database(join(dataDir, 'master.db'), { readonly: true, fileMustExist: true })
  try {
    return {
      meta: db.prepare('SELECT * FROM meta').all(),
      inodes: db.prepare('SELECT * FROM inodes ORDER BY id').all(),
      chunks: db.prepare('SELECT * FROM chunks ORDER BY chunkHandle').all(),
      replicas: db.prepare('SELECT * FROM replicas ORDER BY chunkHandle, serverId').all(),
      servers: db.prepare('SELECT * FROM servers ORDER BY serverId').all()
    }
  } finally {
    db.close()
  }
}

// A recursive listing through one client: path, type, size and chunk count of every entry.
async function walk (fs: GranaryClient, root = '/'): Promise<string[]> {
  const out: string[] = []
  const pending = [root]
  while (pending.length > 0) {
    const dir = pending.pop() as string
    for (const entry of await fs.readdir(dir, { withStats: true })) {
      out.push(`${entry.path} ${entry.type} ${entry.sizeBytes} ${entry.chunkCount}`)
      if (entry.type === 'dir') pending.push(entry.path)
    }
  }
  return out.sort()
}

async function converged (cluster: Cluster, shadow: ClusterProcess): Promise<void> {
  await cluster.waitFor(async () => {
    const [m, s] = await Promise.all([health(cluster.master.url), health(shadow.url)])
    return m.seq === s.seq && JSON.stringify(stateOf(cluster.master.dataDir)) === JSON.stringify(stateOf(shadow.dataDir))
  }, { timeoutMs: 15_000, what: `${shadow.name} caught up with the master` })
}

async function load (fs: GranaryClient, prefix: string, count: number): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>()
  await fs.mkdir(`/${prefix}`, { recursive: true })
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    const data = randomBytes(1000 + (i % 4) * 150_000)   // some span several 64 KiB chunks
    await fs.mkdir(`/${prefix}/d${i}`)
    await fs.writeFile(`/${prefix}/d${i}/f`, data)
    files.set(`/${prefix}/d${i}/f`, data)
  }))
  return files
}

t.test('the shadow keeps an identical copy under load, across a restart and from a fresh bootstrap', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, shadow: true, chunkSizeBytes: 64 * 1024, test: t })
  const shadow = cluster.shadow as ClusterProcess
  const fs = cluster.client({ deadlineMs: 20_000 })
  await load(fs, 'warm', 10)
  const warmSeq = (await health(cluster.master.url)).seq

  // A load that runs until told to stop, so both the restart and the second bootstrap happen mid-stream.
  // Counted in rounds, not in ms: a slower machine (or acks that wait for the shadow) does fewer per second.
  let stopping = false
  let rounds = 0
  const busy = (async () => {
    for (let round = 0; !stopping; round++) { await load(fs, `busy/r${round}`, 4); rounds = round + 1 }
  })()
  await cluster.waitFor(async () => rounds >= 3, { what: 'three rounds of load before the shadow is killed' })
  await shadow.kill('SIGKILL')   // mid-stream
  await shadow.start()
  // A second shadow bootstraps from the tar snapshot while the load is still running.
  const second = new ClusterProcess('shadow2', 'shadow', join(cluster.dir, 'shadow2'), join(cluster.dir, 'logs', 'shadow2.log'),
    () => ['--secret-file', cluster.secretFile, '--master', cluster.master.url], 20_000)
  t.teardown(() => second.killSync())
  await second.start()
  const roundsAtBootstrap = rounds
  await cluster.waitFor(async () => rounds >= Math.max(8, roundsAtBootstrap + 3), { what: 'rounds of load after the second shadow bootstrapped', timeoutMs: 60_000 })
  stopping = true
  await busy
  const busySeq = (await health(cluster.master.url)).seq
  const bootLine = readFileSync(second.logPath, 'utf8').split('\n').find((line) => line.includes('"bootstrapped from a snapshot"')) ?? '{}'
  const snapshotSeq = (JSON.parse(bootLine) as { seq?: number }).seq ?? -1
  t.ok(snapshotSeq > warmSeq && snapshotSeq < busySeq, `the snapshot (seq ${snapshotSeq}) was taken in the middle of the load (seqs ${warmSeq}..${busySeq})`)
  await load(fs, 'after', 5)

  await converged(cluster, shadow)
  await converged(cluster, second)
  const viaMaster = connect({ masters: [cluster.master.url], keepAliveTimeoutMs: 10 })
  const viaShadow = connect({ masters: [shadow.url], keepAliveTimeoutMs: 10 })
  t.teardown(async () => { await viaMaster.close(); await viaShadow.close() })
  const listing = await walk(viaMaster)
  t.ok(listing.length > 100, `a real namespace (${listing.length} entries)`)
  t.same(await walk(viaShadow), listing, 'the same namespace listing through the shadow')
  t.same(stateOf(shadow.dataDir), stateOf(cluster.master.dataDir), 'the same chunk and replica tables (restarted shadow)')
  t.same(stateOf(second.dataDir), stateOf(cluster.master.dataDir), 'the same tables (shadow bootstrapped under load)')

  // No gap and no duplicate across the restart: the shadow's log is the master's, record for record.
  const shadowLog = new Database(join(shadow.dataDir, 'master.db'), { readonly: true })
  const masterLog = new Database(join(cluster.master.dataDir, 'master.db'), { readonly: true })
  t.teardown(() => { shadowLog.close(); masterLog.close() })
  const seqs = shadowLog.prepare('SELECT seq FROM oplog ORDER BY seq').pluck().all() as number[]
  const first = seqs[0] as number
  t.same(seqs, Array.from({ length: seqs.length }, (_, i) => first + i), 'consecutive seqs')
  t.same(shadowLog.prepare('SELECT * FROM oplog ORDER BY seq').all(), masterLog.prepare('SELECT * FROM oplog WHERE seq >= ? ORDER BY seq').all(first), 'record for record')

  const report = await cluster.report()
  t.equal(report.shadows?.length, 2, 'the master reports both shadows')
  t.ok(report.shadows?.every((s) => s.lagRecords === 0 && s.appliedSeq === report.seq))
})

t.test('master killed: reads go on through the shadow; promotion fences the old master', async (t) => {
  // Automatic promotion off: this test is about what a shadow serves while nobody has taken over, and about a
  // promotion an operator asks for (host death with automatic promotion: failover-host-death.test.ts).
  const cluster = await startCluster({ chunkservers: 3, shadow: true, chunkSizeBytes: 64 * 1024, test: t, shadowArgs: ['--no-auto-promote'] })
  const shadow = cluster.shadow as ClusterProcess
  const fs = cluster.client({ deadlineMs: 3_000 })
  const files = await load(fs, 'kept', 6)
  await converged(cluster, shadow)

  await cluster.master.kill('SIGKILL')   // and not restarted (yet)
  const [path, data] = [...files.entries()][3] as [string, Buffer]
  t.same((await fs.readdir('/kept')).sort(), Array.from({ length: 6 }, (_, i) => `d${i}`).sort(), 'ls')
  t.match(await fs.stat(path), { path, type: 'file', sizeBytes: data.length }, 'stat')
  t.equal(sha(await fs.readFile(path)), sha(data), 'get: the same bytes')
  const cat = await new Promise<{ code: number | null, stdout: Buffer }>((resolve) => {
    const child = spawn(process.execPath, [cliPath, 'cat', path], { env: { ...process.env, GRANARY_MASTER: cluster.masters.join(',') } })
    const out: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out) }))
  })
  t.equal(cat.code, 0, 'granary cat exits 0 with GRANARY_MASTER=master,shadow')
  t.equal(sha(cat.stdout), sha(data), 'cat: the same bytes')
  const startedMs = Date.now()
  const put = await codeOf(fs.writeFile('/new.txt', 'no master', { deadlineMs: 1500 }))
  t.equal(put.code, 'GRN_DEADLINE_EXCEEDED', 'a put gives up after its budget')
  t.match(put.details?.lastCode, /^GRN_(UNAVAILABLE|TIMEOUT|NOT_MASTER)$/, 'because the master is unreachable and the shadow takes no mutation: a retryable cause')
  t.ok(Date.now() - startedMs < 10_000)

  // Promote through the CLI.
  const promoted = await new Promise<{ code: number | null, stdout: string, stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [cliPath, 'admin', 'promote', '--shadow', shadow.url], { env: process.env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
  t.equal(promoted.code, 0, promoted.stderr)
  t.match(promoted.stdout, /is now the master: term 2/)
  await cluster.waitFor(async () => {
    const terms = await Promise.all(cluster.chunkservers.map(async (cs) => (await (await request(`${cs.url}/status`)).body.json() as p.ChunkserverStatus).term))
    return terms.every((term) => term === 2)
  }, { what: 'every chunkserver at term 2' })
  const fresh = connect({ masters: [shadow.url], chunkSizeBytes: 64 * 1024, deadlineMs: 15_000, keepAliveTimeoutMs: 10 })
  t.teardown(() => fresh.close())
  const later = randomBytes(300_000)
  await fresh.writeFile('/later.bin', later)

  // The old master comes back on its old data, still believing it is term 1.
  await cluster.master.start()
  // From its first moment (before or after a chunkserver tells it of term 2) it acknowledges no mutation.
  const early = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/early-on-old-master' }) })
  t.equal((await early.body.json() as { code: string }).code, 'GRN_NOT_MASTER', 'a mkdir sent the moment the old master is back is refused')
  await cluster.waitFor(async () => (await health(cluster.master.url)).fencedByTerm === 2, { what: 'the old master to learn of term 2' })
  // Asked directly, it refuses, and names the new master (a chunkserver told it where term 2 lives).
  const direct = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/from-old-master' }) })
  const directBody = await direct.body.json() as { code: string, details?: { masterUrl?: string | null } }
  t.equal(directBody.code, 'GRN_NOT_MASTER', 'the old master refuses mutations')
  t.equal(directBody.details?.masterUrl, shadow.url, 'and names the new master')
  t.equal((await request(`${cluster.master.url}/fs/stat?path=%2F`)).statusCode, 503, 'and master reads')
  const chunkFilesBefore = [0, 1, 2].map((i) => cluster.chunkFiles(i).length)
  // A client that knows only the old master's URL follows the refusal to the new master.
  const oldOnly = connect({ masters: [cluster.master.url], deadlineMs: 5_000, keepAliveTimeoutMs: 10 })
  t.teardown(() => oldOnly.close())
  await oldOnly.mkdir('/followed')
  t.match(await fresh.stat('/followed'), { type: 'dir' }, 'a client given the old URL alone writes through the new master')

  // Whatever the old master signed (term 1) is refused by every chunkserver: fencing.
  const secret = Buffer.from(readFileSync(cluster.secretFile, 'utf8').trim(), 'hex')
  const chunk = cluster.chunkFiles(0)[0] as string   // any stored replica: its handle and version are real
  const handle = (chunk.split('/').pop() as string).split('_')[0] as ChunkHandle
  const version = Number((chunk.split('_').pop() as string).split('.')[0])
  for (const cs of cluster.chunkservers) {
    const writeToken = signToken(secret, { chunkHandle: handle, version: version + 1, mode: 'write', expiresAtMs: Date.now() + 60_000, term: 1 })
    const put = await request(`${cs.url}/chunks/${handle}?version=${version + 1}`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'x-granary-token': writeToken }, body: randomBytes(1000)
    })
    t.equal(put.statusCode, 409, `${cs.name} refuses a term-1 write`)
    t.equal((await put.body.json() as { code: string }).code, 'GRN_STALE_TERM')
    const readToken = signToken(secret, { chunkHandle: handle, version, mode: 'read', expiresAtMs: Date.now() + 60_000, term: 1 })
    const get = await request(`${cs.url}/chunks/${handle}?version=${version}`, { headers: { 'x-granary-token': readToken } })
    t.equal((await get.body.json() as { code: string }).code, 'GRN_STALE_TERM', `${cs.name} refuses a term-1 read`)
  }
  t.same([0, 1, 2].map((i) => cluster.chunkFiles(i).length), chunkFilesBefore, 'no chunk file appeared on any chunkserver')

  t.equal(sha(await fresh.readFile('/later.bin')), sha(later), 'written through the new master: intact')
  for (const [file, bytes] of files) t.equal(sha(await fresh.readFile(file)), sha(bytes), `${file} from before the promotion: intact`)
  t.equal((await codeOf(fresh.stat('/from-old-master'))).code, 'GRN_NOT_FOUND', 'nothing from the old master')
  t.equal((await codeOf(fresh.stat('/early-on-old-master'))).code, 'GRN_NOT_FOUND', 'nothing it was sent the moment it came back')
})
