// Proves that chunk routes refuse missing, forged, expired, wrong-mode, wrong-chunk and wrong-version tokens
// with their codes and write nothing; that an older master term is fenced off (and the newest is persisted);
// and that over-limit bodies and full disks are refused before anything is stored.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startFixture, putChunk, getChunk, newHandle, tmpFiles, chunkFiles } from './fixtures/servers.js'
import { chunkSizeBytesMax } from '../../../shared/limits.js'
import { tokenHeader } from '../../../shared/protocol.js'

t.test('tokens', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const data = randomBytes(100_000)
  const handle = newHandle()
  const cases: Array<[string, string | undefined, string]> = [
    ['missing', undefined, 'GRN_TOKEN_INVALID'],
    ['garbage', 'not-a-token', 'GRN_TOKEN_INVALID'],
    ['forged', f.token(handle, 1, 'write', { secret: randomBytes(32) }), 'GRN_TOKEN_INVALID'],
    ['expired', f.token(handle, 1, 'write', { expiresAtMs: Date.now() - 1 }), 'GRN_TOKEN_EXPIRED'],
    ['read token used to write', f.token(handle, 1, 'read'), 'GRN_TOKEN_INVALID'],
    ['other version', f.token(handle, 2, 'write'), 'GRN_TOKEN_INVALID'],
    ['other chunk', f.token(newHandle(), 1, 'write'), 'GRN_TOKEN_INVALID']
  ]
  for (const [what, token, code] of cases) {
    const res = await putChunk(server.url, handle, 1, token, data)
    t.equal(res.statusCode, 403, what)
    t.equal(res.body.code, code, what)
  }
  t.same(chunkFiles(f.dataDirs[0] as string), [], 'nothing written')
  t.same(tmpFiles(f.dataDirs[0] as string), [])

  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write'), data)).statusCode, 200)
  const wrongMode = await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'write'))
  t.equal(wrongMode.statusCode, 403, 'a write token cannot read')
  const noToken = await getChunk(server.url, `/chunks/${handle}?version=1`, undefined)
  t.equal(JSON.parse(noToken.body.toString()).code, 'GRN_TOKEN_INVALID')
  const expired = await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read', { expiresAtMs: Date.now() - 1 }))
  t.equal(JSON.parse(expired.body.toString()).code, 'GRN_TOKEN_EXPIRED')
  const status = await request(`${server.url}/status`)
  t.equal(status.statusCode, 200, '/status needs no token')
  await status.body.dump()
})

t.test('fencing by master term', async (t) => {
  const f = await startFixture(t, 1)
  const server = f.servers[0] as typeof f.servers[0]
  const handle = newHandle()
  const data = randomBytes(1000)
  t.equal((await putChunk(server.url, handle, 1, f.token(handle, 1, 'write', { term: 5 }), data)).statusCode, 200)
  t.equal(readFileSync(`${f.dataDirs[0] as string}/term`, 'utf8').trim(), '5', 'the newer term is persisted')
  const stale = await putChunk(server.url, handle, 2, f.token(handle, 2, 'write', { term: 4 }), data)
  t.equal(stale.statusCode, 409)
  t.equal(stale.body.code, 'GRN_STALE_TERM')
  const staleRead = await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read', { term: 3 }))
  t.equal(JSON.parse(staleRead.body.toString()).code, 'GRN_STALE_TERM')
  t.equal((await getChunk(server.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read', { term: 5 }))).statusCode, 200)
  const restarted = await f.restart(0)
  const status = await (await request(`${restarted.url}/status`)).body.json() as { term: number }
  t.equal(status.term, 5, 'the term survives a restart')
  const afterRestart = await getChunk(restarted.url, `/chunks/${handle}?version=1`, f.token(handle, 1, 'read', { term: 4 }))
  t.equal(JSON.parse(afterRestart.body.toString()).code, 'GRN_STALE_TERM')
})

t.test('limits and space', async (t) => {
  const f = await startFixture(t, 1, { capacityBytes: 1024 * 1024 })
  const server = f.servers[0] as typeof f.servers[0]
  const { port } = new URL(server.url)

  // Declared over the limit: refused before a byte of body is read.
  const handle = newHandle()
  const declared = await new Promise<{ statusCode: number, body: string }>((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1', port, method: 'PUT', path: `/chunks/${handle}?version=1`,
      headers: { 'content-type': 'application/octet-stream', 'content-length': chunkSizeBytesMax + 1, [tokenHeader]: f.token(handle, 1, 'write') }
    }, (res) => {
      let body = ''
      res.on('data', (d: Buffer) => { body += d.toString() })
      res.on('end', () => resolve({ statusCode: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
    req.flushHeaders()
  })
  t.equal(declared.statusCode, 413)
  t.equal(JSON.parse(declared.body).code, 'GRN_LIMIT_EXCEEDED')

  // Streamed (chunked) past the limit: cut off once it crosses it.
  const streamed = newHandle()
  const piece = Buffer.alloc(4 * 1024 * 1024)
  let sentBytes = 0
  const body = new Readable({ read () { sentBytes += piece.length; this.push(sentBytes > chunkSizeBytesMax + 2 * piece.length ? null : piece) } })
  const outcome = await request(`${server.url}/chunks/${streamed}?version=1`, {
    method: 'PUT', body, headers: { 'content-type': 'application/octet-stream', [tokenHeader]: f.token(streamed, 1, 'write') }
  }).then(async (res) => ({ statusCode: res.statusCode, code: (await res.body.json() as { code: string }).code }), (err: Error) => ({ statusCode: 0, code: err.name }))
  t.ok(outcome.statusCode === 413 || outcome.statusCode === 0, `refused (${JSON.stringify(outcome)})`)
  if (outcome.statusCode === 413) t.equal(outcome.code, 'GRN_LIMIT_EXCEEDED')
  t.ok(sentBytes <= chunkSizeBytesMax + 3 * piece.length)

  // Over capacity: 507 before anything is written.
  const big = newHandle()
  const full = await putChunk(server.url, big, 1, f.token(big, 1, 'write'), randomBytes(2 * 1024 * 1024))
  t.equal(full.statusCode, 507)
  t.equal(full.body.code, 'GRN_DISK_FULL')
  for (let i = 0; i < 50 && tmpFiles(f.dataDirs[0] as string).length > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(chunkFiles(f.dataDirs[0] as string), [])
  t.same(tmpFiles(f.dataDirs[0] as string), [])
  const small = newHandle()
  t.equal((await putChunk(server.url, small, 1, f.token(small, 1, 'write'), randomBytes(512 * 1024))).statusCode, 200, 'a chunk that fits is stored')
  const status = await (await request(`${server.url}/status`)).body.json() as { freeBytes: number }
  t.ok(status.freeBytes < 512 * 1024 && status.freeBytes > 500 * 1024, `free = capacity − used (${status.freeBytes})`)
})
