// Proves that ranged GETs return exactly the requested bytes (block boundaries, clamping past the end, Range
// headers), and that a block failing its CRC is never sent: refused outright or the body cut short.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { appendFileSync, openSync, readSync, writeSync, closeSync, statSync, truncateSync, unlinkSync } from 'node:fs'
import { request } from 'undici'
import { startFixture, putChunk, getChunk, newHandle } from './fixtures/servers.js'
import { blockSizeBytes, readBufferBytes } from '../../../shared/limits.js'
import { chunkLengthHeader, tokenHeader } from '../../../shared/protocol.js'
import { parseRangeHeader, syncReadChunkBytesMax, wholeReadBytesMax } from '../../../chunkserver/chunk-reader.js'
import { blockCountOf } from '../../../chunkserver/chunk-format.js'
import type { ChunkHandle } from '../../../shared/ids.js'

function flipByte (file: string, offsetBytes: number): void {
  const fd = openSync(file, 'r+')
  const byte = Buffer.alloc(1)
  readSync(fd, byte, 0, 1, offsetBytes)
  byte[0] = (byte[0] as number) ^ 0x5a
  writeSync(fd, byte, 0, 1, offsetBytes)
  closeSync(fd)
}

const fileOf = (dataDir: string, handle: ChunkHandle, version: number): string => `${dataDir}/chunks/${handle.slice(-2)}/${handle}_${version}.chunk`

t.test('ranged reads', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const data = randomBytes(3 * readBufferBytes + 5 * blockSizeBytes + 777)
  const handle = newHandle()
  t.equal((await putChunk(server.url, handle, 2, f.token(handle, 2, 'write'), data)).statusCode, 200)
  const read = f.token(handle, 2, 'read')
  const get = async (query: string, headers: Record<string, string> = {}): Promise<Awaited<ReturnType<typeof getChunk>>> =>
    await getChunk(server.url, `/chunks/${handle}?version=2${query}`, read, headers)

  const whole = await get('')
  t.equal(whole.statusCode, 200)
  t.ok(whole.body.equals(data), 'whole chunk')
  t.equal(whole.headers[chunkLengthHeader], String(data.length))
  t.equal(whole.headers['content-length'], String(data.length))

  const cases: Array<[number, number]> = [
    [0, 1], [blockSizeBytes, blockSizeBytes], [blockSizeBytes - 1, 2], [100, 200_000],
    [readBufferBytes - 10, 20], [readBufferBytes, readBufferBytes + 1], [5, 2 * readBufferBytes + 3], [data.length - 1, 1]
  ]
  for (const [offset, length] of cases) {
    const got = await get(`&offset=${offset}&length=${length}`)
    t.ok(got.body.equals(data.subarray(offset, offset + length)), `offset ${offset} length ${length}`)
  }
  t.ok((await get(`&offset=${data.length - 10}&length=100`)).body.equals(data.subarray(data.length - 10)), 'clamped at the end')
  t.ok((await get(`&offset=${blockSizeBytes * 3}`)).body.equals(data.subarray(blockSizeBytes * 3)), 'offset without length reads to the end')
  const past = await get(`&offset=${data.length}&length=5`)
  t.equal(past.statusCode, 200)
  t.equal(past.body.length, 0, 'offset at the end: empty body')
  t.equal(past.headers[chunkLengthHeader], String(data.length))
  t.equal((await get(`&offset=${data.length + 1000}`)).body.length, 0, 'offset past the end: empty body')
  t.equal((await get('&offset=10&length=0')).body.length, 0)

  t.ok((await get('', { range: 'bytes=65536-131071' })).body.equals(data.subarray(65536, 131072)), 'Range a-b is inclusive')
  t.ok((await get('', { range: 'bytes=1000-' })).body.equals(data.subarray(1000)), 'Range a-')
  t.ok((await get('', { range: 'bytes=-300' })).body.equals(data.subarray(data.length - 300)), 'Range -n')
  t.ok((await get('', { range: `bytes=${data.length - 5}-${data.length + 500}` })).body.equals(data.subarray(data.length - 5)), 'Range clamped')
  const bad = await get('', { range: 'bytes=5-1' })
  t.equal(bad.statusCode, 400)
  t.equal(JSON.parse(bad.body.toString()).code, 'GRN_INVALID_ARGUMENT')

  const other = await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read'))
  t.equal(other.statusCode, 404, 'another version')
  t.equal(JSON.parse(other.body.toString()).code, 'GRN_CHUNK_NOT_FOUND')
  const missing = newHandle()
  const none = await getChunk(server.url, `/chunks/${missing}?version=1`, f.token(missing, 1, 'read'))
  t.equal(JSON.parse(none.body.toString()).code, 'GRN_CHUNK_NOT_FOUND')
  const invalid = await getChunk(server.url, '/chunks/NOTAHANDLE?version=1', read)
  t.equal(invalid.statusCode, 400)
  t.equal(JSON.parse(invalid.body.toString()).code, 'GRN_INVALID_ARGUMENT')
})

t.test('a flipped byte on disk is caught by its block checksum', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const data = randomBytes(2 * readBufferBytes + 3 * blockSizeBytes)
  const handle = newHandle()
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), data)).statusCode, 200)
  const read = f.token(handle, 1, 'read')
  const badBlock = 2
  flipByte(fileOf(f.dataDirs[0] as string, handle, 1), badBlock * blockSizeBytes + 123)

  const refused = await getChunk(server.url, `/chunks/${handle}?version=1&offset=${badBlock * blockSizeBytes + 5}&length=10`, read)
  t.equal(refused.statusCode, 502)
  t.match(JSON.parse(refused.body.toString()), { code: 'GRN_CHECKSUM_MISMATCH', message: new RegExp(`block ${badBlock} `) })
  const whole = await getChunk(server.url, `/chunks/${handle}?version=1`, read)
  t.equal(whole.statusCode, 502, 'the first step holds the bad block: refused before anything is sent')

  const before = await getChunk(server.url, `/chunks/${handle}?version=1&offset=0&length=${badBlock * blockSizeBytes}`, read)
  t.ok(before.body.equals(data.subarray(0, badBlock * blockSizeBytes)), 'blocks before it still read')
  const after = await getChunk(server.url, `/chunks/${handle}?version=1&offset=${(badBlock + 1) * blockSizeBytes}`, read)
  t.ok(after.body.equals(data.subarray((badBlock + 1) * blockSizeBytes)), 'blocks after it still read')

  // A bad block in a later step: the reply has started, so the body is cut short and never holds the bad bytes.
  const late = newHandle()
  t.equal((await putChunk(server.url, late, 1, f.token(late, 1, 'write'), data)).statusCode, 200)
  const lateBlock = Math.floor(readBufferBytes / blockSizeBytes) + 4
  flipByte(fileOf(f.dataDirs[0] as string, late, 1), lateBlock * blockSizeBytes)
  const res = await request(`${server.url}/chunks/${late}?version=1`, { headers: { [tokenHeader]: f.token(late, 1, 'read') } })
  t.equal(res.statusCode, 200)
  let receivedBytes = 0
  await t.rejects((async () => { for await (const buf of res.body) receivedBytes += (buf as Buffer).length })(), 'the body ends early')
  t.ok(receivedBytes <= lateBlock * blockSizeBytes, `no byte of the bad block was sent (${receivedBytes} bytes)`)
})

t.test('a damaged CRC table fails the read too', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const data = randomBytes(5 * blockSizeBytes)
  const handle = newHandle()
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), data)).statusCode, 200)
  flipByte(fileOf(f.dataDirs[0] as string, handle, 1), data.length + 2)
  const got = await getChunk(server.url, `/chunks/${handle}?version=1&length=10`, f.token(handle, 1, 'read'))
  t.equal(got.statusCode, 502)
  t.match(JSON.parse(got.body.toString()), { code: 'GRN_CHECKSUM_MISMATCH', message: new RegExp(`block ${blockCountOf(data.length)} `) })
})

t.test('parseRangeHeader', async (t) => {
  t.same(parseRangeHeader('bytes=0-0', 10), { offsetBytes: 0, lengthBytes: 1 })
  t.same(parseRangeHeader('bytes=-20', 10), { offsetBytes: 0, lengthBytes: 10 })
  t.same(parseRangeHeader('bytes=4-', 10), { offsetBytes: 4, lengthBytes: null })
  for (const bad of ['bytes=-', 'items=0-1', 'bytes=0-1,3-4', 'bytes=a-b']) {
    t.throws(() => parseRangeHeader(bad, 10), { code: 'GRN_INVALID_ARGUMENT' }, bad)
  }
})

// A chunk file of at most wholeReadBytesMax is read in one pread and answered as one Buffer (on the event loop
// when the chunk is at most syncReadChunkBytesMax, one block): the same bytes for every range, and every check
// the streaming path makes (a bad block in the range, a damaged trailer, a file longer or shorter than its footer
// says). Both sizes: three blocks read on the thread pool, and part of one block read synchronously.
for (const [size, where] of [[2 * blockSizeBytes + 4321, 'on the thread pool'], [4321, 'on the event loop']] as Array<[number, string]>) {
  t.test(`small chunks, read whole ${where}: ranges, a bad block, a damaged trailer, a wrong file length`, async (t) => {
    const f = await startFixture(t, 1)
    const server = f.servers[0] as typeof f.servers[0]
    const data = randomBytes(size)
    t.ok(data.length + 1024 <= wholeReadBytesMax, 'the chunk takes the whole-read path')
    t.equal(data.length <= syncReadChunkBytesMax, where === 'on the event loop', `the chunk is read ${where}`)
    const put = async (): Promise<ChunkHandle> => {
      const handle = newHandle()
      t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), data)).statusCode, 200)
      return handle
    }
    const get = async (handle: ChunkHandle, range: string) => await getChunk(server.url, `/chunks/${handle}?version=1${range}`, f.token(handle, 1, 'read'))
    const good = await put()
    const ranges = [[0, data.length], [0, 1], [blockSizeBytes - 3, 10], [blockSizeBytes * 2, 4321], [data.length - 1, 1], [777, 2 * blockSizeBytes], [100, 200]] as Array<[number, number]>
    for (const [offset, length] of ranges.filter(([offset, length]) => offset + length <= data.length)) {
      const got = await get(good, `&offset=${offset}&length=${length}`)
      t.equal(got.statusCode, 200)
      t.ok(got.body.equals(data.subarray(offset, offset + length)), `bytes ${offset}+${length}`)
    }
    t.ok((await get(good, '')).body.equals(data), 'the whole chunk')

    const badData = await put()
    const badBlock = blockCountOf(data.length) - 1   // the last block
    flipByte(fileOf(f.dataDirs[0] as string, badData, 1), badBlock * blockSizeBytes + 5)
    if (badBlock > 0) t.ok((await get(badData, `&offset=0&length=${blockSizeBytes}`)).body.equals(data.subarray(0, blockSizeBytes)), 'a range before the bad block is served')
    const refused = await get(badData, `&offset=${badBlock * blockSizeBytes + 4}&length=2`)
    t.equal(refused.statusCode, 502)
    t.match(JSON.parse(refused.body.toString()), { code: 'GRN_CHECKSUM_MISMATCH', message: new RegExp(` block ${badBlock} `) })

    const badTrailer = await put()
    flipByte(fileOf(f.dataDirs[0] as string, badTrailer, 1), data.length + 2)
    t.match(JSON.parse((await get(badTrailer, '&offset=0&length=1')).body.toString()), { code: 'GRN_CHECKSUM_MISMATCH', message: new RegExp(`block ${blockCountOf(data.length)} `) })

    const longer = await put()
    appendFileSync(fileOf(f.dataDirs[0] as string, longer, 1), Buffer.from([0]))
    t.match(JSON.parse((await get(longer, '&offset=0&length=1')).body.toString()), { code: 'GRN_CHECKSUM_MISMATCH' }, 'a byte too many')
    const shorter = await put()
    const shorterFile = fileOf(f.dataDirs[0] as string, shorter, 1)
    truncateSync(shorterFile, statSync(shorterFile).size - 1)
    t.match(JSON.parse((await get(shorter, '&offset=0&length=1')).body.toString()), { code: 'GRN_CHECKSUM_MISMATCH' }, 'a byte too few')
    const gone = await put()
    unlinkSync(fileOf(f.dataDirs[0] as string, gone, 1))   // deleted under the store's index (a racing delete command)
    t.match(JSON.parse((await get(gone, '&offset=0&length=1')).body.toString()), { code: 'GRN_CHUNK_NOT_FOUND' }, 'a file gone between lookup and open')
  })
}
