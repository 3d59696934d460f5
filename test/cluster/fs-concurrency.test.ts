// Proves client.fs under concurrency on a real cluster: 48 readers of one multi-chunk file all get its exact
// bytes (whole and ranged) while the client never holds more than 16 sockets to any chunkserver (one undici
// Agent, bounded per origin: counted from undici's diagnostics channel); 32 writers of distinct files all
// land intact; readers polling a file while it is written see ENOENT until it completes and then the whole
// file, never a prefix; and readers of a file being replaced (flag 'w') see the old or the new file whole.
import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import type { Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { startCluster } from '../../testing/cluster.js'
import { connectionsPerOriginMax } from '../../shared/limits.js'

const KiB = 1024
const chunkSizeBytes = 256 * KiB

async function readAll (stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const pieces: Buffer[] = []
  for await (const piece of stream) pieces.push(piece)
  return Buffer.concat(pieces)
}

// Sockets open at once per origin, and the most ever seen, while `fn` runs.
async function countSockets (fn: () => Promise<void>): Promise<Map<string, number>> {
  const open = new Map<string, number>()
  const most = new Map<string, number>()
  const onConnected = (message: unknown): void => {
    const { connectParams, socket } = message as { connectParams: { hostname: string, port: string | number }, socket: Socket }
    const origin = `${connectParams.hostname}:${connectParams.port}`
    open.set(origin, (open.get(origin) ?? 0) + 1)
    most.set(origin, Math.max(most.get(origin) ?? 0, open.get(origin) ?? 0))
    socket.once('close', () => { open.set(origin, (open.get(origin) ?? 1) - 1) })
  }
  diagnosticsChannel.subscribe('undici:client:connected', onConnected)
  try { await fn() } finally { diagnosticsChannel.unsubscribe('undici:client:connected', onConnected) }
  return most
}

t.test('client.fs under concurrency', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, replication: 2, chunkSizeBytes, test: t })
  const writer = cluster.client({ deadlineMs: 30_000 })
  const fs = writer.fs

  await t.test('many readers of one file, over a bounded number of sockets', async (t) => {
    const data = randomBytes(6 * chunkSizeBytes + 999)
    await fs.writeFile('/shared.bin', data)
    const readers = cluster.client({ deadlineMs: 30_000 })
    const results: boolean[] = []
    const most = await countSockets(async () => {
      await Promise.all(Array.from({ length: 48 }, async (_, i) => {
        if (i % 2 === 0) { results.push((await readers.fs.readFile('/shared.bin')).equals(data)); return }
        const start = (i * 7919) % data.length
        const end = Math.min(data.length - 1, start + 3 * chunkSizeBytes)
        results.push((await readAll(readers.fs.createReadStream('/shared.bin', { start, end, highWaterMark: 16 * KiB }))).equals(data.subarray(start, end + 1)))
      }))
    })
    t.equal(results.length, 48)
    t.ok(results.every(Boolean), 'every reader got the exact bytes')
    const chunkserverPorts = new Set(cluster.chunkservers.map((cs) => String(cs.port)))
    const perChunkserver = [...most].filter(([origin]) => chunkserverPorts.has(origin.split(':')[1] as string))
    t.ok(perChunkserver.length >= 1, `sockets to ${perChunkserver.length} chunkservers were seen`)
    for (const [origin, count] of perChunkserver) t.ok(count <= connectionsPerOriginMax, `${origin}: at most ${count} sockets at once (limit ${connectionsPerOriginMax})`)
  })

  await t.test('many writers of distinct files', async (t) => {
    await fs.mkdir('/many')
    const files = Array.from({ length: 32 }, (_, i) => ({ path: `/many/f${i}`, data: randomBytes(i % 4 === 0 ? 2 * chunkSizeBytes + i : 1000 + i * 311) }))
    await Promise.all(files.map(async (f) => { await fs.writeFile(f.path, f.data, { flag: 'wx' }) }))
    t.equal((await fs.readdir('/many')).length, 32)
    for (const f of files) t.ok((await fs.readFile(f.path)).equals(f.data), f.path)
  })

  await t.test('readers of a file being written see nothing, then the whole file', async (t) => {
    const data = randomBytes(4 * chunkSizeBytes + 5)
    const reader = cluster.client({ deadlineMs: 30_000 })
    const seen = { missing: 0, whole: 0, other: [] as string[] }
    let writing = true
    const poll = (async () => {
      while (writing || seen.whole === 0) {
        try {
          const got = await reader.fs.readFile('/growing.bin')
          if (got.equals(data)) seen.whole++
          else seen.other.push(`${got.length} bytes`)
        } catch (err) {
          if ((err as { code?: string }).code === 'ENOENT') seen.missing++
          else seen.other.push((err as { code?: string }).code ?? String(err))
        }
        await sleep(5)
      }
    })()
    const out = fs.createWriteStream('/growing.bin', { flags: 'wx' })
    for (let offset = 0; offset < data.length; offset += 64 * KiB) {
      await new Promise<void>((resolve, reject) => { out.write(data.subarray(offset, offset + 64 * KiB), (err) => { if (err) reject(err); else resolve() }) })
      await sleep(20)
    }
    await new Promise<void>((resolve, reject) => { out.end((err?: Error | null) => { if (err) reject(err); else resolve() }) })
    writing = false
    await poll
    t.ok(seen.missing > 0, `ENOENT while being written (${seen.missing} polls)`)
    t.ok(seen.whole > 0, 'the whole file once complete')
    t.same(seen.other, [], 'never a prefix, never another error')
  })

  await t.test("readers of a file being replaced see the old or the new file whole", async (t) => {
    const before = randomBytes(3 * chunkSizeBytes + 1)
    const after = randomBytes(2 * chunkSizeBytes + 7)
    await fs.writeFile('/replaced.bin', before)
    const readers = Array.from({ length: 4 }, () => cluster.client({ deadlineMs: 30_000 }))
    const seen = { before: 0, after: 0, other: [] as string[] }
    let replacing = true
    const polls = readers.map(async (reader) => {
      while (replacing || seen.after === 0) {
        // Each poll asks the master afresh (a new client), as a reader in another process would after its
        // metadata cache TTL: it must get one whole version.
        const fresh = cluster.client({ deadlineMs: 30_000 })
        const got = await fresh.fs.readFile('/replaced.bin').catch((err: { code?: string, granaryCode?: string }) => `${err.code} ${err.granaryCode}`)
        await fresh.close()
        if (Buffer.isBuffer(got) && got.equals(before)) seen.before++
        else if (Buffer.isBuffer(got) && got.equals(after)) seen.after++
        else seen.other.push(Buffer.isBuffer(got) ? `${got.length} bytes` : got)
        await sleep(reader === readers[0] ? 3 : 11)
      }
    })
    await sleep(50)
    await fs.writeFile('/replaced.bin', after)   // flag 'w': replaces atomically on completion
    replacing = false
    await Promise.all(polls)
    t.ok(seen.before > 0, `the old file before (${seen.before})`)
    t.ok(seen.after > 0, `the new file after (${seen.after})`)
    t.same(seen.other, [], 'never a mix, never an error')
  })
})
