// Proves the CLI's start stays lazy (issue 16 item 7; issue 11 item 3: a fresh `granary cat` pays only for what
// a read needs). The built CLI is spawned with a module-loader hook (node:module register) that records every
// module URL node loads through import, plus, at exit, every CommonJS file in require's cache (undici and
// cli-progress are CommonJS, required from ESM: the import hook alone does not see what they require).
// - ls, stat, cat against a fake cluster: the client and the command's module load; nothing from dist/master/,
//   dist/chunkserver/ or dist/gateway/, nor fastify, better-sqlite3, prom-client or pino; of undici only the
//   Agent (client/undici-agent.ts), never its index (fetch, WebSocket, mocks, cache stores); no cli-progress
//   (stdout and stderr are not terminals); no tar-stream (loaded by the first pack or unpack, client/tar.ts).
// - --version loads no undici at all.
// It inspects ES module loading, so it runs the CLI with GRANARY_CLI_BUNDLE=off: the bundle (one file through
// vm.Script, test/unit/client/cli-bundle.test.ts) would hide every module from the hook.
// The same hook does see what it must: dist/master/ for `granary master` with a bad flag, and undici's whole
// index for `granary fsck` (which calls undici's request()): each check can fail.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { connect } from '../../../client/index.js'
import { startFakeCluster } from './fake-cluster.js'
import { clientOptions } from './helpers.js'

const bin = join(process.cwd(), 'dist', 'client', 'cli', 'cli.js')
const serverCode = /\/dist\/(master|chunkserver|gateway)\/|\/node_modules\/(fastify|better-sqlite3|prom-client|pino)\//
const undiciIndex = /\/node_modules\/undici\/index\.js$/

t.test('a read command loads the client only: no server code, not all of undici', { skip: existsSync(bin) ? false : 'build first (npx tsc -p .)' }, async (t) => {
  const cluster = await startFakeCluster(3)
  t.teardown(cluster.stop)
  const fs = connect(clientOptions(cluster.master.url))
  await fs.writeFile('/f', Buffer.from('some bytes'))
  await fs.close()
  const dir = t.testdir({})
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function load (url, context, next) { appendFileSync(process.env.GRANARY_TRACE_FILE, url + '\\n'); return next(url, context) }
`)
  writeFileSync(join(dir, 'trace.mjs'), `import { register, createRequire } from 'node:module'
import { appendFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})
const cache = createRequire(import.meta.url).cache
process.on('exit', () => { appendFileSync(process.env.GRANARY_TRACE_FILE, Object.keys(cache).map((file) => pathToFileURL(file).href + '\\n').join('')) })
`)
  // Async spawn: the fake cluster answers from this process, so it must not block.
  const traced = async (name: string, args: string[]): Promise<{ code: number | null, loaded: string[], stdout: string }> => {
    const file = join(dir, `${name}.txt`)
    writeFileSync(file, '')
    let stdout = ''
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--import', pathToFileURL(join(dir, 'trace.mjs')).href, bin, ...args], {
        env: { ...process.env, GRANARY_TRACE_FILE: file, GRANARY_MASTER: cluster.master.url, GRANARY_CLI_BUNDLE: 'off' }, stdio: ['ignore', 'pipe', 'ignore']
      })
      child.stdout.on('data', (piece: Buffer) => { stdout += piece.toString() })
      child.on('close', resolve)
    })
    return { code, stdout, loaded: readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0) }
  }
  for (const [name, args, command] of [['ls', ['ls', '-l', '/'], 'namespace'], ['stat', ['stat', '/f'], 'namespace'], ['cat', ['cat', '/f'], 'transfer']] as const) {
    const { code, loaded, stdout } = await traced(name, [...args])
    t.equal(code, 0, `${name} succeeded`)
    if (name === 'cat') t.equal(stdout, 'some bytes', 'cat printed the file')
    t.ok(loaded.some((url) => url.endsWith('/dist/client/index.js')), `${name}: the hook saw the client library load`)
    t.ok(loaded.some((url) => url.endsWith(`/dist/client/cli/${command}.js`)), `${name}: and the command's module`)
    t.ok(loaded.some((url) => url.endsWith('/node_modules/undici/lib/dispatcher/agent.js')), `${name}: the require cache shows undici's Agent`)
    t.same(loaded.filter((url) => serverCode.test(url)), [], `${name}: no server code`)
    t.same(loaded.filter((url) => undiciIndex.test(url)), [], `${name}: not undici's index`)
    t.same(loaded.filter((url) => url.includes('/node_modules/cli-progress/')), [], `${name}: no progress bar library`)
    t.same(loaded.filter((url) => url.includes('/node_modules/tar-stream/')), [], `${name}: no tar library`)
  }

  const version = await traced('version', ['--version'])
  t.equal(version.code, 0)
  t.match(version.stdout, /^granary /)
  t.same(version.loaded.filter((url) => url.includes('/node_modules/undici/')), [], '--version loads no undici')

  const master = await traced('master', ['master', '--no-such-flag'])
  t.equal(master.code, 2)
  t.ok(master.loaded.some((url) => url.includes('/dist/master/')), 'the same hook does see server code when a server command runs')
  const fsck = await traced('fsck', ['fsck', '/'])
  t.ok(fsck.loaded.some((url) => undiciIndex.test(url)), 'and undici\'s index when a command that uses it runs (fsck)')
  const tree = await traced('get-r', ['get', '-r', '/', join(dir, 'tree')])
  t.equal(tree.code, 0, 'get -r succeeded')
  t.ok(tree.loaded.some((url) => url.includes('/node_modules/tar-stream/')), 'and tar-stream when a folder moves as tar (get -r)')
})
