// Proves the transport turns every way a request can fail into a GranaryError with a stable code: refused
// and cut connections → GRN_UNAVAILABLE, a server that never answers → GRN_TIMEOUT, an error body → its own
// code (errorFromBody), an unreadable error → GRN_INTERNAL, and a closed transport → GRN_ABORTED.
import t, { type Test } from 'tap'
import { GranaryError } from '../../../shared/errors.js'
import { Transport, queryString, toGranaryError } from '../../../client/transport.js'
import { deadUrl, serve, codeOf } from './helpers.js'

function transport (t: Test): Transport {
  const tr = new Transport({ requestTimeoutMs: 300, keepAliveTimeoutMs: 10 })
  t.teardown(async () => { await tr.close() })
  return tr
}

t.test('a refused connection is GRN_UNAVAILABLE', async (t) => {
  const err = await transport(t).json({ method: 'GET', origin: await deadUrl(), path: '/fs/stat' }).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_UNAVAILABLE')
  t.equal(err.retryable, true)
  t.match(err.details, { cause: 'ECONNREFUSED' })
})

t.test('a server that never answers is GRN_TIMEOUT', async (t) => {
  const { url } = await serve(t, () => { /* never answers */ })
  const startMs = Date.now()
  const err = await transport(t).json({ method: 'GET', origin: url, path: '/slow', timeoutMs: 100 }).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_TIMEOUT')
  t.ok(Date.now() - startMs < 1000, 'the per-call timeout applied')
})

t.test('a connection cut mid-reply is GRN_UNAVAILABLE', async (t) => {
  const { url } = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' })
    res.write('{"a":')
    setTimeout(() => res.socket?.destroy(), 10)
  })
  t.equal(await codeOf(transport(t).json({ method: 'GET', origin: url, path: '/' })), 'GRN_UNAVAILABLE')
})

t.test('error bodies become their GranaryError; JSON replies are parsed; queries encoded', async (t) => {
  const seen: string[] = []
  const { url } = await serve(t, (req, res) => {
    seen.push(req.url ?? '')
    if (req.url?.startsWith('/missing') === true) {
      const body = JSON.stringify(new GranaryError('GRN_NOT_FOUND', ['/x']).toBody())
      res.writeHead(404, { 'content-type': 'application/json' }).end(body)
    } else if (req.url === '/html') {
      res.writeHead(502, { 'content-type': 'text/html' }).end('<h1>bad gateway</h1>')
    } else {
      let body = ''
      req.on('data', (d: Buffer) => { body += d.toString() })
      req.on('end', () => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echo: body.length > 0 ? JSON.parse(body) : null })) })
    }
  })
  const tr = transport(t)
  const missing = await tr.json({ method: 'GET', origin: url, path: '/missing', query: { path: '/a b&c', after: undefined } }).catch((e: unknown) => e) as GranaryError
  t.equal(missing.code, 'GRN_NOT_FOUND')
  t.equal(missing.message, 'no such file or directory: /x')
  t.equal(seen[0], '/missing?path=%2Fa+b%26c', 'undefined query values are left out, others encoded')
  t.equal(await codeOf(tr.json({ method: 'GET', origin: url, path: '/html' })), 'GRN_INTERNAL')
  t.same(await tr.json({ method: 'POST', origin: url, path: '/echo', body: { n: 1 } }), { echo: { n: 1 } })
  await tr.close()
  t.equal(await codeOf(tr.json({ method: 'GET', origin: url, path: '/' })), 'GRN_ABORTED', 'a closed transport refuses work')
})

t.test('toGranaryError maps undici and socket codes; bugs pass through', async (t) => {
  const map = (err: unknown): unknown => toGranaryError(err, 'http://x/y', 5)
  t.equal((map(Object.assign(new Error('x'), { code: 'UND_ERR_HEADERS_TIMEOUT' })) as GranaryError).code, 'GRN_TIMEOUT')
  t.equal((map(Object.assign(new Error('x'), { code: 'UND_ERR_SOCKET' })) as GranaryError).code, 'GRN_UNAVAILABLE')
  t.equal((map(Object.assign(new Error('x'), { code: 'ECONNRESET', syscall: 'read' })) as GranaryError).code, 'GRN_UNAVAILABLE')
  t.equal((map(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })])) as GranaryError).code, 'GRN_UNAVAILABLE')
  t.equal((map(Object.assign(new Error('x'), { name: 'AbortError' })) as GranaryError).code, 'GRN_ABORTED')
  const bug = new TypeError('not a network problem')
  t.equal(map(bug), bug)
  const controller = new AbortController()
  controller.abort(new GranaryError('GRN_DEADLINE_EXCEEDED', ['x', 1, 1, 'y']))
  t.equal((toGranaryError(new Error('aborted'), 'x', 1, controller.signal) as GranaryError).code, 'GRN_DEADLINE_EXCEEDED', 'the abort reason wins')
  t.equal(queryString({}), '')
  t.equal(queryString({ version: 3, offset: 0 }), '?version=3&offset=0')
})
