// Proves what happens to a file whose writer dies, across a master crash: a client process writing a 4 MiB file
// (1 MiB chunks) is SIGKILLed after 2.5 MiB, then the master is SIGKILLed and restarted by a supervisor. The
// writer's lease survived the restart (another writer is refused with GRN_LEASE_HELD, the half file is not
// visible); once the lease expires (10 s here) the restarted master removes the incomplete file — it never
// becomes visible, its chunks' replicas are deleted from every chunkserver — and the path is usable again.
import t from 'tap'
import { spawn } from 'node:child_process'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'
import { supervise } from '../../testing/supervise.js'

const MiB = 1024 * 1024
const leaseTtlMs = 10_000

async function codeOf (promise: Promise<unknown>): Promise<string | undefined> {
  try { await promise; return undefined } catch (err) { return (err as { code?: string }).code }
}

t.test('a writer killed mid-write: the lease survives a master restart, then the incomplete file is removed', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t, leaseTtlMs, chunkSizeBytes: MiB })
  const supervisor = supervise(cluster.master)
  t.teardown(async () => await supervisor.stop())
  const fs = cluster.client()
  const chunksBefore = cluster.chunkFiles(0).length

  const script = join(t.testdir(), 'writer.mjs')
  const entry = join(process.cwd(), 'dist', 'client', 'index.js')
  t.ok(statSync(entry).isFile(), 'the built client exists')
  writeFileSync(script, `
    import { connect } from ${JSON.stringify(entry)}
    const fs = connect({ masters: ${JSON.stringify(cluster.masters)}, chunkSizeBytes: ${MiB} })
    const out = fs.createWriteStream('/up/half.bin')
    const piece = Buffer.alloc(${MiB / 4}, 7)
    let n = 0
    function more () { while (n < 16) { n++; if (n === 10) process.stdout.write('written\\n'); if (!out.write(piece)) { out.once('drain', more); return } } }
    more()
  `)
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('written')) resolve() }))
  // The first chunks reach the chunkservers before the writer dies.
  await cluster.waitFor(() => [0, 1, 2].every((i) => cluster.chunkFiles(i).length >= chunksBefore + 2), { what: 'two chunks stored on every server', timeoutMs: 10_000 })
  process.kill(child.pid as number, 'SIGKILL')
  await new Promise((resolve) => child.once('exit', resolve))
  const storedByDeadWriter = [0, 1, 2].map((i) => cluster.chunkFiles(i).length)

  await cluster.master.kill()
  await supervisor.restarted(1)
  t.ok(supervisor.restarts[0]?.readyAtMs !== null, 'the master restarted')
  t.equal(await codeOf(fs.stat('/up/half.bin')), 'GRN_NOT_FOUND', 'the unfinished file is not visible')
  // A bare create (no client retries, nothing left behind): refused while the dead writer's lease lasts.
  // Until a chunkserver has confirmed its term (~0.1 s) the restarted master answers GRN_NOT_MASTER: ask again.
  let createCode: string | undefined
  await cluster.waitFor(async () => {
    const create = await request(`${cluster.master.url}/fs/create`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/up/half.bin' }) })
    createCode = (await create.body.json() as { code?: string }).code
    return createCode !== 'GRN_NOT_MASTER'
  }, { timeoutMs: 10_000, what: 'the restarted master to take mutations' })
  t.equal(createCode, 'GRN_LEASE_HELD', 'the dead writer still holds its lease after the restart')

  // After expiry the master's tick drops the upload; the path then takes a new file without --force.
  await cluster.waitFor(async () => (await codeOf(fs.writeFile('/up/half.bin', 'complete'))) === undefined, { timeoutMs: 40_000, what: 'path usable again' })
  t.equal((await fs.readFile('/up/half.bin')).toString(), 'complete', 'the new file is there')
  const open = await (await request(`${cluster.master.url}/fs/open?path=/up/half.bin`)).body.json() as { chunks: unknown[] }
  t.equal(open.chunks.length, 1, 'only the new file\'s chunk')
  // The dropped upload's replicas are deleted by commands riding the heartbeat replies.
  await cluster.waitFor(() => [0, 1, 2].every((i) => cluster.chunkFiles(i).length === chunksBefore + 1), { timeoutMs: 15_000, what: 'dead upload\'s replicas deleted' })
  t.ok(storedByDeadWriter.every((n) => n >= chunksBefore + 2), `the dead writer had stored chunks (${storedByDeadWriter.join(', ')})`)
  t.same([0, 1, 2].map((i) => cluster.chunkFiles(i).length), [1, 1, 1].map((n) => chunksBefore + n), 'each server keeps only the new file\'s chunk')
})
