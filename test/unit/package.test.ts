// Proves the published package holds what it should and nothing it should not (issue 16 item 7), from what
// `npm pack --dry-run --json` would put in the tarball: the runtime, its types, its TypeScript sources (so
// every source map resolves), the public test kit (granary/testing, in testing/), docs, README and LICENSE;
// nothing from test/ (compiled unit or cluster tests, private helpers), no benchmarks or examples. Every source
// map's sources and every relative import of a shipped .js file resolve inside the tarball, so the package works as installed. Also:
// engines says what actually runs (zlib crc32 needs 20.15; require(esm) for cookie@2 needs 20.19 / 22.12),
// the LICENSE is the MIT text package.json names, and supervise is exported from granary/testing.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'

const root = process.cwd()
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  engines: { node: string }, license: string, bin: Record<string, string>, main: string, types: string,
  exports: Record<string, string | Record<string, string>>, dependencies: Record<string, string>
}

t.test('npm pack contents', { skip: existsSync(join(root, 'dist', 'client', 'index.js')) ? false : 'build first (npx tsc -p .)' }, async (t) => {
  // --ignore-scripts: `prepare` would run tsc again; the build is already there.
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const files = new Set((JSON.parse(out) as Array<{ files: Array<{ path: string }> }>)[0]?.files.map((f) => f.path) ?? [])
  t.ok(files.size > 50, `the pack lists files (${files.size})`)

  for (const needed of ['package.json', 'README.md', 'LICENSE', 'dist/client/index.js', 'dist/client/index.d.ts', 'dist/client/cli/cli.js',
    'dist/client/cluster/up.js', 'dist/testing/cluster.js', 'dist/testing/cluster.d.ts', 'dist/testing/supervise.js', 'dist/testing/netns.js',
    'testing/cluster.ts', 'docs/API.md', 'docs/TESTING.md']) {
    t.ok(files.has(needed), `ships ${needed}`)
  }
  for (const target of [...Object.values(pkg.bin), pkg.main, pkg.types, ...Object.values(pkg.exports).flatMap((e) => typeof e === 'string' ? [e] : Object.values(e))]) {
    t.ok(files.has(normalize(target)), `package.json points at a shipped file: ${target}`)
  }

  const unwanted = [...files].filter((path) =>
    /^(dist\/)?test\//.test(path) || /\.test\.(js|ts|d\.ts|js\.map)$/.test(path) ||
    /^(dist\/)?(scripts|examples)\//.test(path) || /bench/i.test(path))
  t.same(unwanted, [], 'nothing from test/ (the public kit is testing/), no benchmarks or examples')

  // Source maps: each .js names a shipped map, and each map's sources are shipped.
  const dangling: string[] = []
  for (const path of files) {
    if (path.endsWith('.js')) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(root, path), 'utf8'))?.[1]
      if (url !== undefined && !files.has(join(dirname(path), url))) dangling.push(`${path} → ${url}`)
    }
    if (path.endsWith('.js.map')) {
      const map = JSON.parse(readFileSync(join(root, path), 'utf8')) as { sources: string[] }
      for (const source of map.sources) if (!files.has(join(dirname(path), source))) dangling.push(`${path} → ${source}`)
    }
  }
  t.same(dangling, [], 'no source map points at a file the package does not ship')

  // Every relative import of a shipped .js file is shipped too (the installed package can load itself).
  const missing: string[] = []
  for (const path of files) {
    if (!path.endsWith('.js')) continue
    const text = readFileSync(join(root, path), 'utf8')
    for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) {
      const target = join(dirname(path), match[1] as string)
      if (!files.has(target)) missing.push(`${path} imports ${match[1] as string}`)
    }
  }
  t.same(missing, [], 'every relative import resolves inside the package')

  // The CLI bundle (npm run build): shipped with its manifest and every input the manifest checks (an input
  // left out would make an installed bundle stale forever), never with the code cache a run wrote here.
  const manifestPath = 'dist/client/cli/main.bundle.json'
  if (existsSync(join(root, manifestPath))) {
    t.ok(files.has('dist/client/cli/main.bundle.cjs') && files.has(manifestPath), 'ships the CLI bundle and its manifest')
    t.notOk(files.has('dist/client/cli/main.bundle.cache'), 'not the code cache')
    const manifest = JSON.parse(readFileSync(join(root, manifestPath), 'utf8')) as { inputs: Array<{ path: string, package?: string }> }
    const unshipped = manifest.inputs.filter((input) => input.package === undefined && !files.has(input.path)).map((input) => input.path)
    t.same(unshipped, [], 'every input of the bundle outside node_modules is shipped')
    const packages = new Set(manifest.inputs.flatMap((input) => input.package === undefined ? [] : [input.package]))
    t.same([...packages].filter((name) => !(name in pkg.dependencies)), [], 'and every package it bundles is a dependency')
  }
})

t.test('engines, LICENSE, and granary/testing exports supervise', async (t) => {
  t.equal(pkg.engines.node, '^20.19 || >=22.12', 'zlib crc32 needs 20.15; cookie@2 (fastify) needs require(esm): 20.19 or 22.12')
  t.equal(pkg.license, 'MIT')
  const license = readFileSync(join(root, 'LICENSE'), 'utf8')
  t.match(license, /^MIT License\n/)
  t.match(license, /Permission is hereby granted, free of charge/)
  const kit = await import('../../testing/cluster.js') as Record<string, unknown>
  t.type(kit.supervise, 'function', 'supervise, which docs/TESTING.md shows, comes with startCluster')
  t.type(kit.startCluster, 'function')
})
