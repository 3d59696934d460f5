// Proves client/undici-agent.ts: the Agent loaded from undici's deep paths is undici's own Agent class (an
// application that imports undici shares it), its request() works, and loading it alone does not load undici's
// index. If an undici release moves the files, agentLoadedLean turns false (the whole package is loaded
// instead) and this test fails, so the move is noticed instead of silently costing every CLI start ~60 ms.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { Agent, agentLoadedLean } from '../../../client/undici-agent.js'

t.test('the lean Agent is undici\'s Agent, and it requests', async (t) => {
  t.equal(agentLoadedLean, true, 'undici\'s Agent, Dispatcher and api files are where client/undici-agent.ts looks')
  t.equal(Agent, (createRequire(import.meta.url)('undici') as { Agent: unknown }).Agent, 'the same class as undici\'s index exports')
  const server = createServer((_req, res) => { res.end('pong') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const agent = new Agent({ keepAliveTimeout: 10 })
  t.teardown(async () => { await agent.close() })
  const res = await agent.request({ origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, path: '/', method: 'GET' })
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), 'pong')
})

t.test('loading it does not load undici\'s index', async (t) => {
  // A fresh process: this one may have loaded undici's index for other reasons (the line above does).
  const file = pathToFileURL(join(process.cwd(), 'dist', 'client', 'undici-agent.js')).href
  const script = `const m = await import(${JSON.stringify(file)}); const { createRequire } = await import('node:module');
const cache = Object.keys(createRequire(import.meta.url).cache);
console.log(JSON.stringify({ lean: m.agentLoadedLean, request: typeof m.Agent.prototype.request, index: cache.filter((f) => f.endsWith('/undici/index.js')).length, undici: cache.filter((f) => f.includes('/undici/')).length }))`
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
  const seen = JSON.parse(stdout) as { lean: boolean, request: string, index: number, undici: number }
  t.equal(seen.lean, true)
  t.equal(seen.request, 'function', 'request() is on the Agent')
  t.equal(seen.index, 0, 'undici\'s index was not loaded')
  t.ok(seen.undici > 0, 'some of undici was (the check sees undici files)')
})
