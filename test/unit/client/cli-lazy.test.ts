// Proves the CLI's start stays lazy (issue 16 item 7): `granary ls` loads no server code. The built CLI is
// spawned with a module-loader hook (node:module register) that records every module URL node loads, then
// lists a folder of a fake cluster. The list must hold the client (so the hook saw the command's modules) and
// nothing from dist/master/ or dist/chunkserver/, nor fastify or better-sqlite3. The same hook on `granary
// master` with a bad flag does see dist/master/: the check can fail.
import t from 'tap'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { startFakeCluster } from './fake-cluster.js'

const bin = join(process.cwd(), 'dist', 'client', 'cli', 'cli.js')

t.test('granary ls loads no master or chunkserver code', { skip: existsSync(bin) ? false : 'build first (npx tsc -p .)' }, async (t) => {
  const cluster = await startFakeCluster(3)
  t.teardown(cluster.stop)
  const dir = t.testdir({})
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function load (url, context, next) { appendFileSync(process.env.GRANARY_TRACE_FILE, url + '\\n'); return next(url, context) }
`)
  writeFileSync(join(dir, 'trace.mjs'), `import { register } from 'node:module'
register(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})
`)
  // Async spawn: the fake cluster answers from this process, so it must not block.
  const traced = async (name: string, args: string[]): Promise<{ code: number | null, loaded: string[] }> => {
    const file = join(dir, `${name}.txt`)
    writeFileSync(file, '')
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--import', pathToFileURL(join(dir, 'trace.mjs')).href, bin, ...args], {
        env: { ...process.env, GRANARY_TRACE_FILE: file, GRANARY_MASTER: cluster.master.url }, stdio: 'ignore'
      })
      child.on('close', resolve)
    })
    return { code, loaded: readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0) }
  }
  const { code, loaded } = await traced('ls', ['ls', '-l', '/'])
  t.equal(code, 0, 'ls succeeded')
  t.ok(loaded.some((url) => url.endsWith('/dist/client/index.js')), 'the hook saw the client library load')
  t.ok(loaded.some((url) => url.endsWith('/dist/client/cli/namespace.js')), 'and the ls command')
  t.same(loaded.filter((url) => /\/dist\/(master|chunkserver)\/|\/node_modules\/(fastify|better-sqlite3)\//.test(url)), [], 'no server code')

  const master = await traced('master', ['master', '--no-such-flag'])
  t.equal(master.code, 2)
  t.ok(master.loaded.some((url) => url.includes('/dist/master/')), 'the same hook does see server code when a server command runs')
})
