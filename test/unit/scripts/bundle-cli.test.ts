// Proves scripts/bundle-cli.ts's patches fail loudly: each applies to today's text (undici's client-h2.js from
// node_modules, our undici-agent.js from dist), and a text that is missing or found twice makes
// checkPatchesApplied throw, so a new undici release can never ship an unpatched bundle silently (the bundle's
// effect, no node:http2 and undici inside the bundle, is proved in test/unit/client/cli-bundle.test.ts).
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { applyPatches, checkPatchesApplied, patches, type Patch } from '../../../scripts/bundle-cli.js'
import { findPackageDir } from '../../../client/cli/bundle.js'

const undiciDir = findPackageDir('undici', process.cwd()) as string
const clientH2 = join(undiciDir, 'lib', 'dispatcher', 'client-h2.js')
const agentJs = join(process.cwd(), 'dist', 'client', 'undici-agent.js')

t.test('every patch applies once to the files installed today', { skip: existsSync(agentJs) ? false : 'build first (npx tsc -p .)' }, async (t) => {
  const applied = new Map<Patch, number>()
  const h2 = applyPatches(clientH2, readFileSync(clientH2, 'utf8'), applied)
  t.notMatch(h2, /http2 = require\('node:http2'\)/, 'client-h2: no load of node:http2 when the module loads')
  t.match(h2, /http2Loaded \?\?= require\('node:http2'\)/, 'but on the first connect')
  const agent = applyPatches(agentJs, readFileSync(agentJs, 'utf8'), applied)
  t.notMatch(agent, /requireFromHere\(undiciAgentPaths\.(agent|dispatcher|api)\)/, 'undici-agent: the deep paths are plain require() calls')
  t.match(agent, /require\("undici\/lib\/dispatcher\/agent\.js"\)/)
  t.doesNotThrow(() => { checkPatchesApplied(applied) })
  t.equal(applied.size, patches.length)
})

t.test('a patch whose text is missing, or found twice, fails the build', async (t) => {
  const original = readFileSync(clientH2, 'utf8')
  const h2Patch = patches.find((p) => p.file.test(clientH2)) as Patch
  // The other patches counted as applied, so only client-h2's count decides.
  const othersApplied = (): Map<Patch, number> => new Map(patches.filter((p) => p !== h2Patch).map((p) => [p, 1]))
  const missing = othersApplied()
  const moved = original.replace("http2 = require('node:http2')", "http2 = require('http2')")
  t.equal(applyPatches(clientH2, moved, missing), moved, 'nothing changed')
  t.throws(() => { checkPatchesApplied(missing) }, { message: /node:http2 loaded by the first HTTP\/2 connection.* applied 0 times, not once: its text was not found/ })
  const twice = othersApplied()
  const doubled = `${original}\n${h2Patch.find}\n`
  t.equal(applyPatches(clientH2, doubled, twice), doubled, 'an ambiguous text is left alone')
  t.throws(() => { checkPatchesApplied(twice) }, { message: /applied 2 times/ })
  const once = othersApplied()
  applyPatches(clientH2, original, once)
  t.doesNotThrow(() => { checkPatchesApplied(once) }, 'and the text as installed passes')
})
