// Proves the whole data path end to end on real processes (a master and 3 chunkservers spawned by the
// granary/testing kit): a 200 MiB file spanning many chunks round-trips byte-identical by sha256 with every
// replica on disk identical; namespace operations, 50 concurrent puts and ranged reads at chunk boundaries
// work; bad input is refused with stable codes and changes nothing; an upload whose writer was SIGKILLed
// never becomes visible.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream, readFileSync, statSync, writeFileSync } from 'node:fs'
import { pipeline } from 'node:stream/promises'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'

const MiB = 1024 * 1024
const chunkSizeBytes = 16 * MiB

async function sha256OfStream (stream: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of stream) hash.update(piece)
  return hash.digest('hex')
}

async function writeRandomFile (path: string, sizeBytes: number): Promise<string> {
  const hash = createHash('sha256')
  const out = createWriteStream(path)
  for (let written = 0; written < sizeBytes; written += MiB) {
    const piece = randomBytes(Math.min(MiB, sizeBytes - written))
    hash.update(piece)
    if (!out.write(piece)) await new Promise<void>((resolve) => out.once('drain', () => resolve()))
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => { if (err) reject(err); else resolve() }))
  return hash.digest('hex')
}

async function codeOf (promise: Promise<unknown>): Promise<string | undefined> {
  try { await promise; return undefined } catch (err) { return (err as { code?: string }).code }
}

t.test('core data path on a real cluster', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, chunkSizeBytes, test: t, leaseTtlMs: 1500 })
  const fs = cluster.client()
  const local = t.testdir({})

  await t.test('200 MiB put/get with replication 3: same sha256, every replica identical on disk', async (t) => {
    const source = join(local, 'big.bin')
    const expected = await writeRandomFile(source, 200 * MiB)
    await pipeline(createReadStream(source), fs.createWriteStream('/isos/big.bin'))
    const stat = await fs.stat('/isos/big.bin')
    t.equal(stat.sizeBytes, 200 * MiB)
    t.equal(stat.chunkCount, Math.ceil(200 * MiB / chunkSizeBytes))
    t.ok(stat.chunkCount >= 4, 'spans at least 4 chunks')
    t.equal(await sha256OfStream(fs.createReadStream('/isos/big.bin')), expected, 'bytes read back equal bytes written')

    const perServer = [0, 1, 2].map((i) => cluster.chunkFiles(i))
    t.equal(perServer[0]?.length, stat.chunkCount, 'server 0 holds a replica of every chunk')
    for (let i = 0; i < (perServer[0]?.length ?? 0); i++) {
      const names = perServer.map((files) => files[i]?.split('/').pop())
      t.ok(names.every((n) => n === names[0]), `chunk ${names[0]} is on all 3 servers`)
      const digests = perServer.map((files) => createHash('sha256').update(readFileSync(files[i] as string)).digest('hex'))
      t.ok(digests.every((d) => d === digests[0]), `replicas of ${names[0]} are byte-identical`)
    }
  })

  await t.test('ranged reads at chunk boundaries equal the same ranges of the source', async (t) => {
    const data = randomBytes(3 * chunkSizeBytes + 4321)
    await fs.writeFile('/ranges.bin', data)
    const ranges: Array<[number, number]> = [
      [0, 0], [chunkSizeBytes - 1, chunkSizeBytes], [chunkSizeBytes - 10, 2 * chunkSizeBytes + 10],
      [2 * chunkSizeBytes, 2 * chunkSizeBytes], [3 * chunkSizeBytes, data.length - 1], [12345, 12345 + 65536 * 3]
    ]
    for (const [start, end] of ranges) {
      const got = Buffer.concat(await fs.createReadStream('/ranges.bin', { start, end }).toArray())
      t.ok(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`)
    }
    t.ok((await fs.readFile('/ranges.bin')).equals(data), 'whole file')
  })

  await t.test('mkdir, list, rename, delete', async (t) => {
    await fs.mkdir('/a/b/c', { recursive: true })
    await fs.writeFile('/a/b/one.txt', 'one')
    await fs.writeFile('/a/b/two.txt', 'two')
    t.same((await fs.readdir('/a/b')).sort(), ['c', 'one.txt', 'two.txt'])
    await fs.rename('/a/b', '/a/moved')
    t.equal((await fs.readFile('/a/moved/two.txt')).toString(), 'two')
    t.equal(await codeOf(fs.stat('/a/b')), 'GRN_NOT_FOUND')
    t.equal(await codeOf(fs.rename('/a', '/a/moved/c/inside')), 'GRN_RENAME_INTO_SELF')
    t.equal(await codeOf(fs.rm('/a/moved')), 'GRN_NOT_EMPTY')
    await fs.rm('/a', { recursive: true })
    t.equal(await codeOf(fs.stat('/a')), 'GRN_NOT_FOUND')
    t.notOk((await fs.readdir('/')).includes('a'))
  })

  await t.test('50 concurrent small puts all land intact', async (t) => {
    await fs.mkdir('/small', { recursive: true })
    const files = Array.from({ length: 50 }, (_, i) => ({ path: `/small/f${i}`, data: randomBytes(1000 + i * 97) }))
    await Promise.all(files.map(async (f) => await fs.writeFile(f.path, f.data)))
    t.equal((await fs.readdir('/small')).length, 50)
    for (const f of files) t.ok((await fs.readFile(f.path)).equals(f.data), f.path)
  })

  await t.test('bad input is refused with a stable code and changes nothing', async (t) => {
    const before = (await fs.readdir('/')).sort()
    for (const path of ['/x/../y', '/nul\u0000byte', 'relative', '/' + 'n'.repeat(256)]) {
      const res = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path }) })
      const body = await res.body.json() as { code: string }
      t.equal(res.statusCode, 400, `mkdir ${JSON.stringify(path).slice(0, 30)} refused`)
      t.equal(body.code, 'GRN_INVALID_PATH')
    }
    const unknownKey = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/ok', evil: 1 }) })
    t.equal(unknownKey.statusCode, 400)
    t.equal((await unknownKey.body.json() as { code: string }).code, 'GRN_INVALID_ARGUMENT')
    const huge = await request(`${cluster.master.url}/fs/mkdir`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ path: '/ok', pad: 'x'.repeat(2 * MiB) }) })
    t.equal(huge.statusCode, 413)
    t.equal((await huge.body.json() as { code: string }).code, 'GRN_LIMIT_EXCEEDED')
    t.same((await fs.readdir('/')).sort(), before, 'namespace unchanged')

    t.equal(await codeOf(fs.readFile('/does/not/exist')), 'GRN_NOT_FOUND')
    await fs.writeFile('/exists.txt', 'first')
    t.equal(await codeOf(fs.writeFile('/exists.txt', 'second')), 'GRN_EXISTS')
    t.equal((await fs.readFile('/exists.txt')).toString(), 'first', 'refused put changed nothing')

    const chunkFile = cluster.chunkFiles(0)[0] as string
    const handle = (chunkFile.split('/').pop() as string).split('_')[0] as string
    const version = Number((chunkFile.split('_').pop() as string).split('.')[0])
    const cs = cluster.chunkservers[0]?.url as string
    const noToken = await request(`${cs}/chunks/${handle}?version=${version}`)
    t.equal(noToken.statusCode, 403)
    t.equal((await noToken.body.json() as { code: string }).code, 'GRN_TOKEN_INVALID')
    const forged = await request(`${cs}/chunks/${handle}?version=${version}`, { headers: { 'x-granary-token': 'eyJ4Ijox.forged' } })
    t.equal(forged.statusCode, 403)
    t.equal((await forged.body.json() as { code: string }).code, 'GRN_TOKEN_INVALID')
    const forgedWrite = await request(`${cs}/chunks/${handle}?version=${version + 1}`, {
      method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'x-granary-token': 'abc.def' }, body: randomBytes(1000)
    })
    t.equal(forgedWrite.statusCode, 403)
    await forgedWrite.body.dump()
    t.equal(cluster.chunkFiles(0, handle).length, 1, 'no new version written by a forged token')
  })

  await t.test('an upload whose writer is SIGKILLed never becomes visible; the path is usable after the lease expires', async (t) => {
    const script = join(local, 'writer.mjs')
    const entry = join(process.cwd(), 'dist', 'client', 'index.js')
    t.ok(statSync(entry).isFile(), `the built client is at ${entry}`)
    writeFileSync(script, `
      import { connect } from ${JSON.stringify(entry)}
      const fs = connect({ masters: ${JSON.stringify(cluster.masters)}, chunkSizeBytes: ${chunkSizeBytes} })
      const out = fs.createWriteStream('/half.bin')
      const piece = Buffer.alloc(1024 * 1024, 7)
      let n = 0
      function more () { while (n < 40) { n++; if (n === 20) process.stdout.write('halfway\\n'); if (!out.write(piece)) { out.once('drain', more); return } } }
      more()
    `)
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('halfway')) resolve() }))
    process.kill(child.pid as number, 'SIGKILL')
    await new Promise((resolve) => child.once('exit', resolve))
    t.equal(await codeOf(fs.stat('/half.bin')), 'GRN_NOT_FOUND', 'not visible after the writer died')
    t.notOk((await fs.readdir('/')).includes('half.bin'), 'not listed')
    await cluster.waitFor(async () => (await codeOf(fs.writeFile('/half.bin', 'complete'))) === undefined, { timeoutMs: 10_000, what: 'path usable again' })
    t.equal((await fs.readFile('/half.bin')).toString(), 'complete')
  })
})
