// Proves that a pipelined PUT through three real chunkservers stores identical, checksummed copies on each,
// acks every replica with the right length and CRC, and that a failed hop or a vanished client leaves nothing behind;
// and that a write token writes only on the servers it names (a replay to a fourth server stores nothing) and
// each hop forwards only to the next server it names.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { crc32 } from 'node:zlib'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startFixture, putChunk, getChunk, newHandle, closedPort, tmpFiles, chunkFiles } from './fixtures/servers.js'
import { fileBytesOf } from '../../../chunkserver/chunk-format.js'
import { pipelineHeader, tokenHeader } from '../../../shared/protocol.js'
import type { ServerId } from '../../../shared/ids.js'
import { signToken } from '../../../shared/token.js'

const sha256 = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex')

t.test('a pipelined write through three servers', async (t) => {
  const f = await startFixture(t, 3)
  const [a, b, c] = f.servers as [typeof f.servers[0], typeof f.servers[0], typeof f.servers[0]]
  const data = randomBytes(5 * 1024 * 1024 + 12_345)
  const handle = newHandle()
  const res = await putChunk(a.url, handle, 1, f.token(handle, 1, 'write'), data, [b.url, c.url])
  t.equal(res.statusCode, 200)
  t.same(res.body.replicas.map((r: { serverId: string }) => r.serverId), [a.serverId, b.serverId, c.serverId], 'acks in pipeline order')
  t.same(res.body.replicas.map((r: { url: string }) => r.url), [a.url, b.url, c.url])
  for (const ack of res.body.replicas) {
    t.equal(ack.lengthBytes, data.length)
    t.equal(ack.crc32, crc32(data))
  }

  const files = f.dataDirs.map((dir) => readFileSync(`${dir}/chunks/${handle.slice(-2)}/${handle}_1.chunk`))
  for (const file of files) {
    t.equal(file.length, fileBytesOf(data.length), 'data + CRC table + footer')
    t.equal(sha256(file.subarray(0, data.length)), sha256(data), 'replica holds the bytes sent')
    t.equal(sha256(file), sha256(files[0] as Buffer), 'replica files are identical, trailer included')
  }
  for (const dir of f.dataDirs) t.same(tmpFiles(dir), [], 'no temp file left')

  for (const server of f.servers) {
    const got = await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read'))
    t.equal(got.statusCode, 200)
    t.ok(got.body.equals(data), `${server.url} reads back the chunk`)
  }
  const status = await request(`${a.url}/status`)
  const body = await status.body.json() as { chunkCount: number, activeWrites: number, serverId: string, role: string }
  t.match(body, { role: 'chunkserver', chunkCount: 1, activeWrites: 0, serverId: a.serverId })

  const again = await putChunk(a.url, handle, 1, f.token(handle, 1, 'write', { pipeline: [a] }), data.subarray(0, 10))
  t.equal(again.statusCode, 409, 'a stored version is never overwritten')
  t.equal(again.body.code, 'GRN_CHUNK_MISMATCH')
  t.equal(readFileSync(`${f.dataDirs[0]}/chunks/${handle.slice(-2)}/${handle}_1.chunk`).length, fileBytesOf(data.length))
})

t.test('a dead hop fails the write with GRN_REPLICA_FAILED naming it, and nothing stays on disk', async (t) => {
  const f = await startFixture(t, 2)
  const [a, b] = f.servers as [typeof f.servers[0], typeof f.servers[0]]
  const dead = `http://127.0.0.1:${await closedPort()}`
  const data = randomBytes(3 * 1024 * 1024)

  const handle1 = newHandle()
  const deadServer = { serverId: 'cs-00000000dead' as ServerId, url: dead }
  const last = await putChunk(a.url, handle1, 1, f.token(handle1, 1, 'write', { pipeline: [a, b, deadServer] }), data, [b.url, dead])
  t.equal(last.statusCode, 502)
  t.equal(last.body.code, 'GRN_REPLICA_FAILED')
  t.equal(last.body.details.failedUrl, dead, 'the third hop is named, passed up through the second')

  const handle2 = newHandle()
  const middle = await putChunk(a.url, handle2, 1, f.token(handle2, 1, 'write', { pipeline: [a, deadServer, b] }), data, [dead, b.url])
  t.equal(middle.statusCode, 502)
  t.equal(middle.body.details.failedUrl, dead)
  await sleep(50)
  for (const dir of f.dataDirs) {
    t.same(tmpFiles(dir), [], 'no temp file')
    t.same(chunkFiles(dir), [], 'no chunk file')
  }

  // A hop that answers but refuses (it already holds the version) is named with its server id.
  const handle3 = newHandle()
  t.equal((await putChunk(b.url, handle3, 1, f.token(handle3, 1, 'write', { pipeline: [b] }), data.subarray(0, 100))).statusCode, 200)
  const refused = await putChunk(a.url, handle3, 1, f.token(handle3, 1, 'write'), data, [b.url])
  t.equal(refused.statusCode, 502)
  t.match(refused.body.details, { failedUrl: b.url, serverId: b.serverId, code: 'GRN_CHUNK_MISMATCH' })
  t.same(tmpFiles(f.dataDirs[0] as string), [])
  t.same(chunkFiles(f.dataDirs[0] as string), [])
})

t.test('a client that disconnects mid-body leaves no temp file on any hop', async (t) => {
  const f = await startFixture(t, 2)
  const [a, b] = f.servers as [typeof f.servers[0], typeof f.servers[0]]
  const handle = newHandle()
  const { port } = new URL(a.url)
  const req = httpRequest({
    host: '127.0.0.1', port, method: 'PUT', path: `/chunks/${handle}?version=1`,
    headers: { 'content-type': 'application/octet-stream', 'content-length': 8 * 1024 * 1024, [tokenHeader]: f.token(handle, 1, 'write'), [pipelineHeader]: b.url }
  })
  req.on('error', () => {})
  req.write(randomBytes(2 * 1024 * 1024))
  await sleep(200)
  t.ok(tmpFiles(f.dataDirs[0] as string).length + tmpFiles(f.dataDirs[1] as string).length > 0, 'writes were under way')
  req.destroy()
  for (let i = 0; i < 50 && f.dataDirs.some((dir) => tmpFiles(dir).length > 0); i++) await sleep(20)
  for (const dir of f.dataDirs) {
    t.same(tmpFiles(dir), [], 'temp file removed')
    t.same(chunkFiles(dir), [], 'nothing stored')
  }
  const status = await (await request(`${a.url}/status`)).body.json() as { activeWrites: number }
  t.equal(status.activeWrites, 0)
})

t.test('a chunked body (no content-length) is stored and forwarded too', async (t) => {
  const f = await startFixture(t, 2)
  const [a, b] = f.servers as [typeof f.servers[0], typeof f.servers[0]]
  const handle = newHandle()
  const parts = [randomBytes(100_000), randomBytes(1_000_000), randomBytes(7)]
  async function * body (): AsyncGenerator<Buffer> { for (const part of parts) yield part }
  const res = await request(`${a.url}/chunks/${handle}?version=1`, {
    method: 'PUT', body: Readable.from(body()),
    headers: { 'content-type': 'application/octet-stream', [tokenHeader]: f.token(handle, 1, 'write'), [pipelineHeader]: b.url }
  })
  const reply = await res.body.json() as { replicas: Array<{ lengthBytes: number, crc32: number }> }
  t.equal(res.statusCode, 200)
  const data = Buffer.concat(parts)
  t.same(reply.replicas.map((r) => [r.lengthBytes, r.crc32]), [[data.length, crc32(data)], [data.length, crc32(data)]])
  const got = await getChunk(b.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read'))
  t.ok(got.body.equals(data))
})

t.test('a write token writes only on the servers it names, each forwarding only to the next one named', async (t) => {
  const f = await startFixture(t, 4)
  const [a, b, c, d] = f.servers as [typeof f.servers[0], typeof f.servers[0], typeof f.servers[0], typeof f.servers[0]]
  const data = randomBytes(200_000)
  const handle = newHandle()
  const token = f.token(handle, 1, 'write', { pipeline: [a, b, c] })
  t.equal((await putChunk(a.url, handle, 1, token, data, [b.url, c.url])).statusCode, 200, 'the pipeline it names')

  // The same still-valid token replayed to a fourth server, as a pipeline's last hop or with any header.
  for (const rest of [[], [b.url, c.url], [c.url]]) {
    const replayed = await putChunk(d.url, handle, 1, token, randomBytes(1000), rest)
    t.equal(replayed.statusCode, 403, `refused at a server the token does not name (header ${rest.length} URLs)`)
    t.equal(replayed.body.code, 'GRN_TOKEN_INVALID')
  }
  t.same(chunkFiles(f.dataDirs[3] as string), [], 'no chunk file on the fourth server')
  t.same(tmpFiles(f.dataDirs[3] as string), [])
  // Replayed to a server it names: that server already stores the version and refuses to add or overwrite.
  const again = await putChunk(c.url, handle, 1, token, randomBytes(1000))
  t.equal(again.body.code, 'GRN_CHUNK_MISMATCH', 'a stored (handle, version) is not written again')
  const got = await getChunk(c.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read'))
  t.ok(got.body.equals(data), 'the stored bytes are the pipeline\'s')

  // A token for a → b, forwarded by the client (or a hop) to d instead: refused before anything is stored.
  const handle2 = newHandle()
  const token2 = f.token(handle2, 1, 'write', { pipeline: [a, b] })
  const diverted = await putChunk(a.url, handle2, 1, token2, data, [d.url])
  t.equal(diverted.statusCode, 403)
  t.equal(diverted.body.code, 'GRN_TOKEN_INVALID')
  const longer = await putChunk(a.url, handle2, 1, token2, data, [b.url, d.url])
  t.equal(longer.body.code, 'GRN_TOKEN_INVALID', 'nor may a hop be added after the last one named')
  for (const dir of f.dataDirs) t.same(chunkFiles(dir).filter((name) => name.includes(handle2)), [], 'nothing of the diverted write is stored')

  // A write token that names no pipeline (an older master's) writes nowhere.
  const handle3 = newHandle()
  const bare = signToken(f.secret, { chunkHandle: handle3, version: 1, mode: 'write', expiresAtMs: Date.now() + 60_000, term: 1 })
  t.equal((await putChunk(a.url, handle3, 1, bare, data)).body.code, 'GRN_TOKEN_INVALID')
})
