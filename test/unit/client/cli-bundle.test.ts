// Proves the CLI bundle (scripts/bundle-cli.ts, client/cli/bundle.ts): a fresh bundle is what a client command
// runs, and never a stale one. Each case copies the compiled dist (client, shared, the servers' folders and
// scripts/bundle-cli.js) into a test folder, with node_modules linked, and bundles the copy there: the real
// dist is never changed, and the test holds after a bare tsc (which leaves the real bundle stale). What ran is
// seen from outside, with no switch of our own: a module-loader hook (node:module register) records the ES
// modules node loads, and at exit the process records its CommonJS require cache and node's internal module
// list. The bundle runs through vm.Script, so with the bundle dist/client/cli/main.js is never loaded as an ES
// module; without it, it is.
// - fresh: --version, ls and cat run from the bundle (cat's bytes right), undici comes from inside the bundle
//   (nothing of node_modules/undici in the require cache), node:http2 is not loaded (the client-h2 patch), and
//   a code cache appears beside the bundle, which V8 then takes (a rejected one would be rewritten); a server
//   command still runs from the ES modules (and the bundle, handed one anyway, fails it with GRN_ASSERTION).
// - stale: an input made newer, an input of another size (same mtime), an input gone, a changed file of an npm
//   package (undici), a changed bundle, a manifest that is not JSON or lists a broken input, and
//   GRANARY_CLI_BUNDLE=off each mean the ES modules.
// - the code cache: garbage, a flipped byte (its sha256 no longer matches), another node's header are each
//   survived and rewritten; a read-only folder runs without one.
// - --version, --help, a command's help and usage errors print the same bytes either way.
import t, { type Test } from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { appendFileSync, chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { bundleFiles, loadCliBundle, type BundleManifest } from '../../../client/cli/bundle.js'
import { Writable } from 'node:stream'
import { connect } from '../../../client/index.js'
import { startFakeCluster } from './fake-cluster.js'
import { clientOptions } from './helpers.js'

const dist = join(process.cwd(), 'dist')
const built = existsSync(join(dist, 'scripts', 'bundle-cli.js')) ? false : 'build first (npx tsc -p .)'
const cacheMagic = 'granary-cli-cache 1\n'

interface Install { root: string, cliDir: string, bin: string, manifest: BundleManifest }
interface Run { code: number | null, stdout: string, stderr: string, esm: string[], required: string[], builtins: string[] }

// dist's folders, package.json, and node_modules: a link to the real one, or (ownUndici) a real folder of links
// but for a copy of undici, for the case that changes a file of it; then the copy's own bundle, built there.
function install (t: Test, options: { ownUndici?: boolean } = {}): Install {
  const root = t.testdir({})
  for (const part of ['client', 'shared', 'master', 'chunkserver', 'gateway']) cpSync(join(dist, part), join(root, 'dist', part), { recursive: true })
  cpSync(join(dist, 'scripts', 'bundle-cli.js'), join(root, 'dist', 'scripts', 'bundle-cli.js'))
  cpSync(join(process.cwd(), 'package.json'), join(root, 'package.json'))
  const modules = realpathSync(join(process.cwd(), 'node_modules'))
  if (options.ownUndici === true) {
    mkdirSync(join(root, 'node_modules'))
    for (const name of readdirSync(modules)) if (name !== 'undici') symlinkSync(join(modules, name), join(root, 'node_modules', name))
    cpSync(join(modules, 'undici'), join(root, 'node_modules', 'undici'), { recursive: true })
  } else {
    symlinkSync(modules, join(root, 'node_modules'))
  }
  const cliDir = join(root, 'dist', 'client', 'cli')
  for (const name of Object.values(bundleFiles)) rmSync(join(cliDir, name), { force: true })
  execFileSync(process.execPath, [join(root, 'dist', 'scripts', 'bundle-cli.js')], { stdio: ['ignore', 'ignore', 'pipe'] })
  writeFileSync(join(root, 'hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function load (url, context, next) { appendFileSync(process.env.TRACE_ESM, url + '\\n'); return next(url, context) }
`)
  writeFileSync(join(root, 'trace.mjs'), `import { register, createRequire } from 'node:module'
import { writeFileSync } from 'node:fs'
register(${JSON.stringify(pathToFileURL(join(root, 'hooks.mjs')).href)})
const cache = createRequire(import.meta.url).cache
process.on('exit', () => {
  writeFileSync(process.env.TRACE_REQUIRED, Object.keys(cache).join('\\n'))
  writeFileSync(process.env.TRACE_BUILTINS, process.moduleLoadList.join('\\n'))
})
`)
  const manifest = JSON.parse(readFileSync(join(cliDir, bundleFiles.manifest), 'utf8')) as BundleManifest
  return { root, cliDir, bin: join(cliDir, 'cli.js'), manifest }
}

let runCount = 0
async function run (where: Install, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const trace = (name: string): string => join(where.root, `trace-${runCount}-${name}.txt`)
  runCount++
  const files = { TRACE_ESM: trace('esm'), TRACE_REQUIRED: trace('required'), TRACE_BUILTINS: trace('builtins') }
  for (const file of Object.values(files)) writeFileSync(file, '')
  let stdout = ''
  let stderr = ''
  // Async: the fake cluster answers from this process.
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...files, ...env }
  if (env.GRANARY_CLI_BUNDLE === undefined) delete childEnv.GRANARY_CLI_BUNDLE
  const code = await new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, ['--import', pathToFileURL(join(where.root, 'trace.mjs')).href, where.bin, ...args], {
      env: childEnv, stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout.on('data', (piece: Buffer) => { stdout += piece.toString() })
    child.stderr.on('data', (piece: Buffer) => { stderr += piece.toString() })
    child.on('close', resolve)
  })
  const lines = (file: string): string[] => readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0)
  return { code, stdout, stderr, esm: lines(files.TRACE_ESM), required: lines(files.TRACE_REQUIRED), builtins: lines(files.TRACE_BUILTINS) }
}

const ranEsm = (result: Run): boolean => result.esm.some((url) => url.endsWith('/dist/client/cli/main.js'))
const ranBundle = (result: Run): boolean => result.esm.some((url) => url.endsWith('/dist/client/cli/bundle.js')) && !ranEsm(result)

function readCacheHeader (where: Install): Record<string, unknown> | undefined {
  const path = join(where.cliDir, bundleFiles.cache)
  if (!existsSync(path)) return undefined
  const file = readFileSync(path)
  if (file.subarray(0, cacheMagic.length).toString('latin1') !== cacheMagic) return undefined
  const end = file.indexOf(0x0a, cacheMagic.length)
  return JSON.parse(file.subarray(cacheMagic.length, end).toString('utf8')) as Record<string, unknown>
}

t.test('a fresh bundle runs client commands; a server command still runs from the ES modules', { skip: built }, async (t) => {
  const cluster = await startFakeCluster(3)
  t.teardown(cluster.stop)
  const fs = connect(clientOptions(cluster.master.url))
  await fs.writeFile('/f', Buffer.from('some bytes'))
  await fs.close()
  const where = install(t)
  const env = { GRANARY_MASTER: cluster.master.url }

  const version = await run(where, ['--version'])
  t.equal(version.code, 0)
  t.match(version.stdout, /^granary \S+ \(node v/)
  t.ok(ranBundle(version), '--version ran from the bundle (main.js never loaded as an ES module)')
  t.match(readCacheHeader(where), { commands: ['-'], node: process.version }, 'and left a code cache beside it')

  for (const args of [['ls', '/'], ['cat', '/f']]) {
    const result = await run(where, args, env)
    t.equal(result.code, 0, `${args[0]} succeeded: ${result.stderr}`)
    t.ok(ranBundle(result), `${args[0]} ran from the bundle`)
    t.same(result.required.filter((file) => file.includes(`${'node_modules'}/undici/`)), [], `${args[0]}: undici's Agent came from inside the bundle`)
    t.same(result.builtins.filter((name) => /\bhttp2\b/.test(name)), [], `${args[0]}: node:http2 not loaded (undici's client-h2, patched)`)
    if (args[0] === 'cat') t.equal(result.stdout, 'some bytes', 'cat printed the file')
  }
  t.match(readCacheHeader(where), { commands: ['-', 'ls', 'cat'] }, 'each command added what it compiled to the cache')

  const cacheBefore = readFileSync(join(where.cliDir, bundleFiles.cache))
  const warm = await run(where, ['cat', '/f'], env)
  t.equal(warm.stdout, 'some bytes', 'cat again, from the cache it wrote')
  t.ok(ranBundle(warm))
  // A cache V8 rejected (another flag set, another source) would be written again at exit.
  t.ok(readFileSync(join(where.cliDir, bundleFiles.cache)).equals(cacheBefore), 'V8 took the cache: not rewritten')

  const master = await run(where, ['master', '--no-such-flag'])
  t.equal(master.code, 2, 'a server command with a bad flag is a usage error')
  t.ok(ranEsm(master), 'and ran from the ES modules')
})

t.test('the bundle itself refuses a server command: GRN_ASSERTION, not half a server', { skip: built }, async (t) => {
  // cli.ts never hands it one; this runs the bundle in-process (a copy's) to see what would happen if it did.
  const where = install(t)
  const cli = loadCliBundle({}, 'master', where.cliDir)
  if (cli === undefined) throw new Error('the copy\'s bundle should be fresh')
  let stderr = ''
  const sink = new Writable({ write (piece: Buffer, _encoding, done) { stderr += piece.toString(); done() } })
  const code = await cli.main(['master', '--no-such-flag', '--json'], { stdin: process.stdin, stdout: sink, stderr: sink, env: {} })
  t.equal(code, 1)
  t.match(JSON.parse(stderr), { code: 'GRN_ASSERTION', message: /dist\/master\/main\.js is not in the CLI bundle/ })
})

t.test('a bundle any of whose inputs changed is not used', { skip: built }, async (t) => {
  const cases: Array<[string, (where: Install) => void, { ownUndici?: boolean }?]> = [
    ['an input newer than recorded', (where) => { const file = join(where.root, 'dist', 'client', 'cli', 'args.js'); const later = new Date(Date.now() + 60_000); utimesSync(file, later, later) }],
    ['an input of another size, its mtime unchanged', (where) => {
      const file = join(where.root, 'dist', 'shared', 'limits.js')
      const { atime, mtime } = statSync(file)
      appendFileSync(file, '\n// edited\n')
      utimesSync(file, atime, mtime)
    }],
    ['an input gone', (where) => { rmSync(join(where.root, 'dist', 'client', 'cli', 'sync.js')) }],
    ['a file of undici changed', (where) => { appendFileSync(join(where.root, 'node_modules', 'undici', 'lib', 'dispatcher', 'agent.js'), '\n') }, { ownUndici: true }],
    ['the bundle itself changed', (where) => { appendFileSync(join(where.cliDir, bundleFiles.bundle), '\n') }],
    ['the manifest not JSON', (where) => { writeFileSync(join(where.cliDir, bundleFiles.manifest), '{"format":1,') }],
    ['the manifest with a broken input', (where) => { writeFileSync(join(where.cliDir, bundleFiles.manifest), JSON.stringify({ ...where.manifest, inputs: [...where.manifest.inputs, null] })) }],
  ]
  for (const [name, change, options] of cases) {
    const where = install(t, options)
    t.ok(where.manifest.inputs.some((input) => input.package === 'undici'), 'the manifest lists undici\'s files by package')
    const before = await run(where, ['--version'])
    t.ok(ranBundle(before), `${name}: the copy's bundle is fresh before the change`)
    change(where)
    const after = await run(where, ['--version'])
    t.equal(after.code, 0)
    t.equal(after.stdout, before.stdout)
    t.ok(ranEsm(after), `${name}: the ES modules ran instead`)
  }
  const where = install(t)
  const off = await run(where, ['--version'], { GRANARY_CLI_BUNDLE: 'off' })
  t.ok(ranEsm(off), 'GRANARY_CLI_BUNDLE=off: the ES modules')
  t.equal(readCacheHeader(where), undefined, 'and no code cache written')
})

t.test('a corrupt, foreign or rejected code cache is survived and rewritten', { skip: built }, async (t) => {
  const where = install(t)
  const cachePath = join(where.cliDir, bundleFiles.cache)
  await run(where, ['--version'])
  const good = readFileSync(cachePath)
  const header = readCacheHeader(where)
  t.ok(header !== undefined, 'a first run wrote a cache')
  const flipped = Buffer.from(good)
  flipped[flipped.length - 100] = (flipped[flipped.length - 100] ?? 0) ^ 0xff
  const foreign = Buffer.concat([Buffer.from(cacheMagic + JSON.stringify({ ...header, node: 'v0.0.1' }) + '\n'), good.subarray(good.indexOf(0x0a, cacheMagic.length) + 1)])
  const cases: Array<[string, Buffer]> = [
    ['garbage', Buffer.from('not a cache at all')],
    ['an empty file', Buffer.alloc(0)],
    ['a flipped byte in V8\'s data', flipped],
    ['a header for another node', foreign],
    ['a header line that never ends', Buffer.concat([Buffer.from(cacheMagic), Buffer.alloc(8192, 0x41)])],
  ]
  for (const [name, contents] of cases) {
    writeFileSync(cachePath, contents)
    const result = await run(where, ['--version'])
    t.equal(result.code, 0, `${name}: exit 0`)
    t.match(result.stdout, /^granary /)
    t.equal(result.stderr, '', `${name}: nothing on stderr`)
    t.ok(ranBundle(result), `${name}: still ran from the bundle`)
    t.match(readCacheHeader(where), { node: process.version, commands: ['-'] }, `${name}: the cache was rewritten`)
  }
})

t.test('a read-only install runs from the bundle without a cache', { skip: built !== false ? built : process.getuid?.() === 0 ? 'root writes anyway' : false }, async (t) => {
  const where = install(t)
  chmodSync(where.cliDir, 0o555)
  t.teardown(() => { chmodSync(where.cliDir, 0o755) })
  const result = await run(where, ['--version'])
  t.equal(result.code, 0)
  t.equal(result.stderr, '')
  t.ok(ranBundle(result))
  t.equal(readCacheHeader(where), undefined)
})

t.test('--version, help and usage errors print the same with and without the bundle', { skip: built }, async (t) => {
  const where = install(t)
  for (const args of [['--version'], ['--help'], ['help', 'cat'], ['cat', '--help'], ['put', '-h'], ['frobnicate'], ['ls', '--no-such-flag'], ['stat'], ['ls', '--json', '--nope'], ['completion', 'bash']]) {
    const bundled = await run(where, args)
    const modules = await run(where, args, { GRANARY_CLI_BUNDLE: 'off' })
    t.ok(ranBundle(bundled) && ranEsm(modules), `${args.join(' ')}: one run each way`)
    t.same({ code: bundled.code, stdout: bundled.stdout, stderr: bundled.stderr }, { code: modules.code, stdout: modules.stdout, stderr: modules.stderr }, `${args.join(' ')}: same exit status and output`)
  }
})
