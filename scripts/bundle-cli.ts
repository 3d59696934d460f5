// node dist/scripts/bundle-cli.js (npm run build, prepare, test and bench run it after tsc): bundles the CLI's
// client side, dist/client/cli/main.js and everything it loads, into one CommonJS file beside it,
// main.bundle.cjs, plus main.bundle.json listing every input file with its size and mtime. client/cli/bundle.ts
// runs a client command from the bundle while every input is unchanged, through vm.Script with a V8 code
// cache, so a fresh `granary cat` does not find, read and compile ~60 ES modules one by one (issue 11: a read
// with the master frozen must answer within 300 ms, process start included).
//
// esbuild (a dev dependency, ~10 MB, one platform binary) does the bundling: one call, no config file, and it
// follows CommonJS require() inside undici as well as our ES imports. What stays out, loaded at run time:
//   - server code (dist/master, dist/chunkserver, dist/gateway, dist/client/cluster): cli.ts runs server commands
//     from the ES modules; here their import() becomes a module that throws, so the bundle cannot half-run one.
//   - undici's index (fsck and admin promote import 'undici' for request()): loaded from node_modules when used.
//   - tar-stream and cli-progress: already loaded lazily through createRequire (client/tar.ts, cli/format.ts).
//   - better-sqlite3 and any native addon (never reached from a client command; listed so they never are).
// esbuild turns the remaining import() calls into require() (the bundle has no ES module loader behind it in
// vm.Script) and wraps each module in a function run on first use, so lazy imports stay lazy to run.
//
// Patches, each by exact text, each applied exactly once or the build fails (an unpatched bundle would be
// slower, or load the whole of undici, without anyone noticing):
//   - client/undici-agent.js loads undici's deep paths through createRequire, which esbuild cannot follow:
//     in the bundle they are plain require() calls, so the Agent's files are bundled too.
//   - undici's client-h2.js loads node:http2 when it loads (3-6 ms here) for its constants: the bundle uses the
//     constants' values (checked against node:http2 at build time) and loads node:http2 on the first HTTP/2
//     connection, which a Granary client never makes.
import { build, type Plugin } from 'esbuild'
import { realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { constants as http2Constants } from 'node:http2'
import { join, relative, resolve, sep } from 'node:path'
import { bundleFiles, bundleManifestFormat, bundleInputsMax, findPackageDir, type BundleInput, type BundleManifest } from '../client/cli/bundle.js'
import { undiciAgentPaths } from '../client/undici-agent.js'

const root = resolve(import.meta.dirname, '..', '..')   // dist/scripts/ → the package
const cliDir = join(root, 'dist', 'client', 'cli')
const bundlePath = join(cliDir, bundleFiles.bundle)
const serverCode = /[\\/]dist[\\/](master|chunkserver|gateway|client[\\/]cluster)[\\/]/
const bundleUrlName = '__granaryBundleUrl'

export interface Patch { file: RegExp, why: string, find: string, replace: string }

const http2ConstantValues = {
  HTTP2_HEADER_AUTHORITY: ':authority', HTTP2_HEADER_METHOD: ':method', HTTP2_HEADER_PATH: ':path', HTTP2_HEADER_SCHEME: ':scheme',
  HTTP2_HEADER_CONTENT_LENGTH: 'content-length', HTTP2_HEADER_EXPECT: 'expect', HTTP2_HEADER_STATUS: ':status',
  HTTP2_HEADER_PROTOCOL: ':protocol', NGHTTP2_REFUSED_STREAM: 7, NGHTTP2_CANCEL: 8,
} as const

export const patches: readonly Patch[] = [
  ...(['agent', 'dispatcher', 'api'] as const).map((name) => ({
    file: /[\\/]dist[\\/]client[\\/]undici-agent\.js$/,
    why: `undici's ${name} bundled, not required from node_modules at run time`,
    find: `requireFromHere(undiciAgentPaths.${name})`,
    replace: `require(${JSON.stringify(undiciAgentPaths[name])})`,
  })),
  {
    file: /[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client-h2\.js$/,
    why: 'node:http2 loaded by the first HTTP/2 connection, not when undici loads',
    find: `let http2
try {
  http2 = require('node:http2')
} catch {
  // @ts-ignore
  http2 = { constants: {} }
}

const {
  constants: {
    HTTP2_HEADER_AUTHORITY,
    HTTP2_HEADER_METHOD,
    HTTP2_HEADER_PATH,
    HTTP2_HEADER_SCHEME,
    HTTP2_HEADER_CONTENT_LENGTH,
    HTTP2_HEADER_EXPECT,
    HTTP2_HEADER_STATUS,
    HTTP2_HEADER_PROTOCOL,
    NGHTTP2_REFUSED_STREAM,
    NGHTTP2_CANCEL
  }
} = http2`,
    replace: `// Patched by granary's scripts/bundle-cli.ts: node:http2 is loaded by the first HTTP/2 connection.
let http2Loaded
const http2 = { connect: (...args) => (http2Loaded ??= require('node:http2')).connect(...args) }
${Object.entries(http2ConstantValues).map(([name, value]) => `const ${name} = ${JSON.stringify(value)}`).join('\n')}`,
  },
]

export async function bundleCli (): Promise<{ sizeBytes: number, inputCount: number }> {
  for (const [name, value] of Object.entries(http2ConstantValues)) {
    if ((http2Constants as Record<string, unknown>)[name] !== value) throw new Error(`bundle-cli: node:http2 constants.${name} is ${String((http2Constants as Record<string, unknown>)[name])}, the client-h2 patch says ${String(value)}: update the patch`)
  }
  const applied = new Map<Patch, number>()
  const result = await build({
    absWorkingDir: root,
    entryPoints: [join(cliDir, 'main.js')],
    outfile: bundlePath,
    bundle: true, platform: 'node', target: 'node20', format: 'cjs', write: false, metafile: true, logLevel: 'warning',
    supported: { 'dynamic-import': false },
    // No comments or indentation (a third of the bytes every start reads); names stay, for stack traces. ASCII
    // only (esbuild escapes the rest), so bundle.ts reads it as latin1, the cheapest decode.
    minifyWhitespace: true, legalComments: 'none', charset: 'ascii',
    external: ['better-sqlite3', '*.node'],
    define: { 'import.meta.url': bundleUrlName },
    banner: { js: `var ${bundleUrlName} = require('node:url').pathToFileURL(__filename).href;` },
    plugins: [leaveOut(), patch(applied)],
  })
  checkPatchesApplied(applied)
  const output = result.outputFiles?.[0]
  const meta = Object.values(result.metafile.outputs)[0]
  if (output === undefined || meta === undefined) throw new Error('bundle-cli: esbuild wrote no output')
  if (output.contents.some((byte) => byte > 0x7f)) throw new Error('bundle-cli: the bundle is not ASCII (bundle.ts reads it as latin1)')
  const dynamic = meta.imports.filter((entry) => entry.kind === 'dynamic-import')
  if (dynamic.length > 0) throw new Error(`bundle-cli: import() left in the bundle (vm.Script cannot run it): ${dynamic.map((entry) => entry.path).join(', ')}`)
  const inputPaths = Object.keys(result.metafile.inputs).filter((path) => !path.includes(':'))   // not the stubs' namespace
  const server = inputPaths.filter((path) => serverCode.test(resolve(root, path)))
  if (server.length > 0) throw new Error(`bundle-cli: server code reached the bundle: ${server.join(', ')}`)
  if (inputPaths.length > bundleInputsMax) throw new Error(`bundle-cli: ${inputPaths.length} inputs is over bundleInputsMax ${bundleInputsMax}`)

  writeAtomic(bundlePath, output.contents)
  const bundleStats = statSync(bundlePath)
  const manifest: BundleManifest = {
    format: bundleManifestFormat,
    root: relative(cliDir, root) || '.',
    bundle: { sizeBytes: bundleStats.size, mtimeMs: bundleStats.mtimeMs },
    inputs: inputPaths.map((path) => inputRecord(resolve(root, path))),
  }
  writeAtomic(join(cliDir, bundleFiles.manifest), JSON.stringify(manifest, null, 1) + '\n')
  rmSync(join(cliDir, bundleFiles.cache), { force: true })   // keyed to the old bundle; the next run writes one
  return { sizeBytes: bundleStats.size, inputCount: manifest.inputs.length }
}

// Server modules become a module that throws when imported: cli.ts never runs a server command from the bundle.
// 'undici' itself (its index) stays outside; its deep paths (the Agent) are bundled.
function leaveOut (): Plugin {
  return {
    name: 'granary-leave-out',
    setup (builder) {
      builder.onResolve({ filter: /^undici$/ }, () => ({ path: 'undici', external: true }))
      builder.onResolve({ filter: /^\.\.?\// }, (args) => {
        const path = resolve(args.resolveDir, args.path)
        return serverCode.test(path) ? { path, namespace: 'granary-server-stub' } : undefined
      })
      // An AssertionError (GRN_ASSERTION): reaching it is a bug of cli.ts's choice, not something a user did.
      builder.onLoad({ filter: /.*/, namespace: 'granary-server-stub' }, (args) => ({
        contents: `import { AssertionError } from ${JSON.stringify(join(root, 'dist', 'shared', 'assert.js'))}
throw new AssertionError(${JSON.stringify(`${relative(root, args.path)} is not in the CLI bundle: server commands run from the ES modules (client/cli/cli.ts)`)})`,
        loader: 'js',
        resolveDir: root,
      }))
    },
  }
}

function patch (applied: Map<Patch, number>): Plugin {
  return {
    name: 'granary-patch',
    setup (builder) {
      builder.onLoad({ filter: /\.js$/ }, async (args) => {
        if (!patches.some((p) => p.file.test(args.path))) return undefined
        return { contents: applyPatches(args.path, await readFile(args.path, 'utf8'), applied), loader: 'js' }
      })
    },
  }
}

// The patches meant for `path`, each where its text occurs exactly once; `applied` counts the occurrences
// found, for checkPatchesApplied.
export function applyPatches (path: string, contents: string, applied: Map<Patch, number>): string {
  for (const p of patches.filter((candidate) => candidate.file.test(path))) {
    const count = contents.split(p.find).length - 1
    applied.set(p, (applied.get(p) ?? 0) + count)
    if (count === 1) contents = contents.replace(p.find, () => p.replace)
  }
  return contents
}

// Every patch applied once in the whole build, or the build fails: never a silently unpatched bundle.
export function checkPatchesApplied (applied: Map<Patch, number>): void {
  for (const p of patches) {
    const count = applied.get(p) ?? 0
    if (count !== 1) throw new Error(`bundle-cli: patch "${p.why}" applied ${count} times, not once: its text was not found in ${String(p.file)} (a new release?); update scripts/bundle-cli.ts`)
  }
}

// A file of an npm package is recorded relative to that package's folder, as found from the bundle's folder,
// so the check holds wherever npm puts the package; anything else relative to the package root.
function inputRecord (path: string): BundleInput {
  const stats = statSync(path)
  const record = { sizeBytes: stats.size, mtimeMs: stats.mtimeMs }
  const parts = path.split(sep)
  const at = parts.lastIndexOf('node_modules')
  if (at !== -1) {
    const nameParts = parts[at + 1]?.startsWith('@') === true ? 2 : 1
    const name = parts.slice(at + 1, at + 1 + nameParts).join('/')
    const packageDir = parts.slice(0, at + 1 + nameParts).join(sep)
    const found = findPackageDir(name, cliDir)
    if (found !== undefined && realpathSync(found) === realpathSync(packageDir)) return { path: relative(packageDir, path), package: name, ...record }
  }
  return { path: relative(root, path), ...record }
}

function writeAtomic (path: string, contents: string | Uint8Array): void {
  const temp = `${path}.${process.pid}.tmp`
  writeFileSync(temp, contents)
  renameSync(temp, path)
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.dirname, 'bundle-cli.js')) {
  const startedMs = performance.now()
  const { sizeBytes, inputCount } = await bundleCli()
  process.stdout.write(`bundle-cli: ${relative(root, bundlePath)}, ${Math.round(sizeBytes / 1024)} KiB from ${inputCount} files, ${Math.round(performance.now() - startedMs)} ms\n`)
}
