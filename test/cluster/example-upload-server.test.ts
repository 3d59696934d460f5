// Proves the example app (examples/upload-server) works over real HTTP against a real cluster: a streamed
// multi-chunk upload reads back byte-identical, Range requests (a-b, a-, -n, across chunk boundaries) answer
// 206 with the right bytes and Content-Range, a range past the end answers 416, a missing file 404, an
// exclusive upload over an existing file 409, a folder lists its entries, DELETE removes, and an upload cut
// off half way leaves nothing behind.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { signedRequest as request } from '../../testing/cluster.js'
import { startCluster } from '../../testing/cluster.js'
import { buildServer, parseRange } from '../../examples/upload-server/server.js'

const chunkSizeBytes = 256 * 1024

t.test('parseRange', async (t) => {
  t.same(parseRange('bytes=0-9', 100), { start: 0, end: 9 })
  t.same(parseRange('bytes=90-', 100), { start: 90, end: 99 })
  t.same(parseRange('bytes=-10', 100), { start: 90, end: 99 })
  t.same(parseRange('bytes=-1000', 100), { start: 0, end: 99 })
  t.same(parseRange('bytes=50-1000', 100), { start: 50, end: 99 })
  t.equal(parseRange('bytes=100-', 100), 'unsatisfiable')
  t.equal(parseRange('bytes=-0', 100), 'unsatisfiable')
  t.equal(parseRange('bytes=0-0', 0), 'unsatisfiable')
  t.equal(parseRange(undefined, 100), undefined)
  t.equal(parseRange('items=0-1', 100), undefined)
  t.equal(parseRange('bytes=9-3', 100), undefined)
})

t.test('the upload server on a real cluster', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, replication: 2, chunkSizeBytes, test: t })
  const client = cluster.client({ deadlineMs: 20_000 })
  const app = buildServer(client, { prefix: '/uploads' })
  t.teardown(async () => { await app.close() })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  const data = randomBytes(5 * chunkSizeBytes + 777)

  await t.test('a streamed upload reads back whole', async (t) => {
    let sent = 0
    const body = new Readable({ read () { const piece = data.subarray(sent, sent + 100_000); sent += piece.length; this.push(piece.length > 0 ? piece : null) } })
    const put = await request(`${base}/files/videos/clip.bin`, { method: 'PUT', body, headers: { 'content-type': 'video/mp4' } })
    t.equal(put.statusCode, 201)
    t.same(await put.body.json(), { path: 'videos/clip.bin', sizeBytes: data.length })
    t.equal((await client.stat('/uploads/videos/clip.bin')).chunkCount, 6, 'stored in Granary as 6 chunks')
    const get = await request(`${base}/files/videos/clip.bin`)
    t.equal(get.statusCode, 200)
    t.equal(get.headers['content-length'], String(data.length))
    t.equal(get.headers['accept-ranges'], 'bytes')
    t.ok(Buffer.from(await get.body.arrayBuffer()).equals(data), 'same bytes')
  })

  await t.test('Range requests answer 206 with the same bytes as the source', async (t) => {
    const c = chunkSizeBytes
    const cases: Array<[string, number, number]> = [
      [`bytes=0-99`, 0, 99], [`bytes=${c - 10}-${c + 9}`, c - 10, c + 9], [`bytes=${c - 1}-${3 * c}`, c - 1, 3 * c],
      [`bytes=${5 * c}-`, 5 * c, data.length - 1], ['bytes=-500', data.length - 500, data.length - 1], [`bytes=100-${data.length + 50}`, 100, data.length - 1],
    ]
    for (const [header, start, end] of cases) {
      const res = await request(`${base}/files/videos/clip.bin`, { headers: { range: header } })
      t.equal(res.statusCode, 206, header)
      t.equal(res.headers['content-range'], `bytes ${start}-${end}/${data.length}`)
      t.equal(res.headers['content-length'], String(end - start + 1))
      t.ok(Buffer.from(await res.body.arrayBuffer()).equals(data.subarray(start, end + 1)), `${header}: bytes ${start}-${end}`)
    }
    const past = await request(`${base}/files/videos/clip.bin`, { headers: { range: `bytes=${data.length}-` } })
    t.equal(past.statusCode, 416, 'a range past the end')
    t.equal(past.headers['content-range'], `bytes */${data.length}`)
    await past.body.dump()
    const head = await request(`${base}/files/videos/clip.bin`, { method: 'HEAD' })
    t.equal(head.statusCode, 200)
    t.equal(head.headers['content-length'], String(data.length))
    t.equal((await head.body.arrayBuffer()).byteLength, 0, 'HEAD has no body')
  })

  await t.test('errors keep their meaning', async (t) => {
    const missing = await request(`${base}/files/nope.bin`)
    t.equal(missing.statusCode, 404)
    t.match(await missing.body.json(), { code: 'ENOENT' })
    const exclusive = await request(`${base}/files/videos/clip.bin?exclusive=1`, { method: 'PUT', body: 'x' })
    t.equal(exclusive.statusCode, 409)
    t.match(await exclusive.body.json(), { code: 'EEXIST' })
    const listing = await request(`${base}/files/videos`)
    t.same(await listing.body.json(), [{ name: 'clip.bin', type: 'file' }], 'a folder lists its entries')
    const del = await request(`${base}/files/videos/clip.bin`, { method: 'DELETE' })
    t.equal(del.statusCode, 204)
    t.equal((await request(`${base}/files/videos/clip.bin`)).statusCode, 404, 'deleted')
  })

  await t.test('an upload cut off half way leaves nothing behind', async (t) => {
    let sent = 0
    const body = new Readable({
      read () {
        if (sent >= 2 * chunkSizeBytes) { this.destroy(new Error('client gave up')); return }
        const piece = data.subarray(sent, sent + 65_536); sent += piece.length; this.push(piece)
      },
    })
    await t.rejects(request(`${base}/files/cut.bin`, { method: 'PUT', body, headers: { 'content-length': String(data.length) } }))
    t.equal(await client.fs.exists('/uploads/cut.bin'), false, 'no file')
    // The server abandoned the upload (its writer lease is gone): a new exclusive upload of the name succeeds
    // at once instead of waiting out the 60 s lease.
    const again = await request(`${base}/files/cut.bin?exclusive=1`, { method: 'PUT', body: 'whole', headersTimeout: 10_000 })
    t.equal(again.statusCode, 201, JSON.stringify(await again.body.json()))
    t.equal(await client.fs.readFile('/uploads/cut.bin', 'utf8'), 'whole')
  })
})
