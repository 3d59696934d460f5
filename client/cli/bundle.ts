// Runs a client command from the CLI bundle: scripts/bundle-cli.ts puts main.js and everything a client command
// loads (the client library, the lean undici Agent) into one CommonJS file beside this one. A fresh `granary cat`
// otherwise spends most of its life finding, reading and compiling ~60 ES modules; one file compiled from a V8
// code cache skips nearly all of that (issue 11: a read with the master frozen answers within 300 ms, process
// start included; scripts/bench-gray.ts measures it).
//
// Never stale: the bundle is used only when every file it was built from (main.bundle.json lists each with its
// size and mtime) is still the same size and no newer, so a developer who edits a source and runs tsc gets the
// ES modules, never old code. Anything missing, unreadable or changed means the ES modules (the caller's
// fallback); GRANARY_CLI_BUNDLE=off forces them.
//
// The code cache (main.bundle.cache) is V8's compiled code for the bundle, taken after a command ran so it holds
// the functions that command compiled. It is keyed by the bundle's size and mtime, node's version and arch; V8
// checks it again (source, flags) and may reject it. A missing, foreign, rejected or corrupt cache is rewritten
// at exit, as is one that has not yet seen the command now running (each command compiles its own code): a few
// runs after a build it stops changing. Writes are atomic (temp file, then rename); a read-only install simply
// has no cache.
import { createHash } from 'node:crypto'
import { closeSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Script } from 'node:vm'
import { assert } from '../../shared/assert.js'
import type * as mainModule from './main.js'

export type CliModule = Pick<typeof mainModule, 'main' | 'isBrokenPipe' | 'commandNames'>

// Beside this file in dist/client/cli/. bundleFiles.cache is not shipped (package.json "files").
export const bundleFiles = { bundle: 'main.bundle.cjs', manifest: 'main.bundle.json', cache: 'main.bundle.cache' } as const
export const bundleManifestFormat = 1
export const bundleInputsMax = 1_000          // a manifest listing more is not ours
export const cacheHeaderBytesMax = 4_096
export const cacheCommandsMax = 64            // command names one cache records as seen (there are ~30)
const cacheMagic = 'granary-cli-cache 1\n'
const here = dirname(fileURLToPath(import.meta.url))

// scripts/bundle-cli.ts writes this. An input is a file of this package (path relative to root) or of an npm
// package (path relative to that package's folder, found from the bundle the way require finds it, so the
// check holds wherever npm put the package).
export interface BundleManifest {
  format: typeof bundleManifestFormat
  root: string                  // the package's folder, relative to the manifest's
  bundle: { sizeBytes: number, mtimeMs: number }
  inputs: BundleInput[]
}
export interface BundleInput { path: string, package?: string, sizeBytes: number, mtimeMs: number }

// dataSha256: V8 checks a cache's version, flags, source length and size, but a release build does not
// checksum the bytes; a flipped bit would be run. (node:crypto is loaded by the bundle's first lines anyway.)
interface CacheHeader { bundleSizeBytes: number, bundleMtimeMs: number, node: string, arch: string, commands: string[], dataSha256: string }

// The bundle's exports, or undefined when the ES modules must run instead. command: argv[0].
export function loadCliBundle (env: NodeJS.ProcessEnv, command: string | undefined, dir: string = here): CliModule | undefined {
  if (env.GRANARY_CLI_BUNDLE === 'off') return undefined
  const bundlePath = join(dir, bundleFiles.bundle)
  const manifest = readManifest(join(dir, bundleFiles.manifest))
  if (manifest === undefined || !isFresh(manifest, dir, bundlePath)) return undefined
  let source: string
  try { source = readFileSync(bundlePath, 'latin1') } catch { return undefined }   // ASCII only (bundle-cli.ts checks)
  const cachePath = join(dir, bundleFiles.cache)
  const key = { bundleSizeBytes: manifest.bundle.sizeBytes, bundleMtimeMs: manifest.bundle.mtimeMs, node: process.version, arch: process.arch }
  const cache = readCache(cachePath, key)
  // The CommonJS wrapper node would put around the file; the code cache is for exactly this text.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: bundlePath, cachedData: cache?.data })
  const moduleObject = { exports: {} as Partial<CliModule> }
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void
  wrapper.call(moduleObject.exports, moduleObject.exports, createRequire(bundlePath), moduleObject, bundlePath, dir)
  const cli = moduleObject.exports
  // A fresh bundle without these is a bug of scripts/bundle-cli.ts (its entry is main.js), not a user's problem.
  assert(typeof cli.main === 'function' && typeof cli.isBrokenPipe === 'function', `${bundlePath} exports main and isBrokenPipe`)
  assert(cli.commandNames instanceof Set, `${bundlePath} exports commandNames`)
  const name = command !== undefined && cli.commandNames.has(command) ? command : '-'
  const seen = cache === undefined || script.cachedDataRejected === true ? [] : cache.header.commands
  if (!seen.includes(name) && seen.length < cacheCommandsMax) {
    process.once('exit', () => { writeCache(script, cachePath, { ...key, commands: [...seen, name] }) })
  }
  return cli as CliModule
}

function readManifest (path: string): BundleManifest | undefined {
  let manifest: Partial<BundleManifest>
  try { manifest = JSON.parse(readFileSync(path, 'utf8')) as Partial<BundleManifest> } catch { return undefined }
  if (manifest.format !== bundleManifestFormat || typeof manifest.root !== 'string' || typeof manifest.bundle?.sizeBytes !== 'number') return undefined
  if (!Array.isArray(manifest.inputs) || manifest.inputs.length === 0 || manifest.inputs.length > bundleInputsMax) return undefined
  if (!manifest.inputs.every(isInput)) return undefined
  return manifest as BundleManifest
}

function isInput (input: Partial<BundleInput> | null): boolean {
  return typeof input?.path === 'string' && typeof input.sizeBytes === 'number' && typeof input.mtimeMs === 'number' &&
    (input.package === undefined || typeof input.package === 'string')
}

// Every input, and the bundle itself, the same size and no newer than at build time. No newer, not the same
// time: npm packs every file with one old mtime, so an installed package's files are all older than recorded.
function isFresh (manifest: BundleManifest, dir: string, bundlePath: string): boolean {
  if (!sameFile(bundlePath, manifest.bundle.sizeBytes, manifest.bundle.mtimeMs)) return false
  const root = resolve(dir, manifest.root)
  const packageDirs = new Map<string, string | undefined>()
  for (const input of manifest.inputs) {
    let base = root
    if (input.package !== undefined) {
      if (!packageDirs.has(input.package)) packageDirs.set(input.package, findPackageDir(input.package, dir))
      const found = packageDirs.get(input.package)
      if (found === undefined) return false
      base = found
    }
    if (!sameFile(resolve(base, input.path), input.sizeBytes, input.mtimeMs)) return false
  }
  return true
}

// The folder require() would load package `name` from, seen from `dir`: the nearest node_modules/<name> with a
// package.json, walking up (what require does for a bare name; a few stats, where createRequire().resolve costs
// ~1 ms). undefined: not installed.
export function findPackageDir (name: string, dir: string): string | undefined {
  for (let at = resolve(dir); ; at = dirname(at)) {
    const candidate = join(at, 'node_modules', name)
    if (isFile(join(candidate, 'package.json'))) return candidate
    if (dirname(at) === at) return undefined
  }
}

function isFile (path: string): boolean {
  try { return statSync(path, { throwIfNoEntry: false })?.isFile() === true } catch { return false }
}

function sameFile (path: string, sizeBytes: number, mtimeMs: number): boolean {
  try {
    const stats = statSync(path, { throwIfNoEntry: false })
    return stats !== undefined && stats.isFile() && stats.size === sizeBytes && stats.mtimeMs <= mtimeMs
  } catch {
    return false   // unreadable (EACCES, ENOTDIR): not what was built from
  }
}

// The cache file: cacheMagic, one line of JSON (CacheHeader), then V8's bytes. Anything else is no cache.
function readCache (path: string, key: Omit<CacheHeader, 'commands' | 'dataSha256'>): { header: CacheHeader, data: Buffer } | undefined {
  let file: Buffer
  try { file = readFileSync(path) } catch { return undefined }
  if (file.subarray(0, cacheMagic.length).toString('latin1') !== cacheMagic) return undefined
  const headerEnd = file.indexOf(0x0a, cacheMagic.length)
  if (headerEnd === -1 || headerEnd > cacheHeaderBytesMax) return undefined
  let header: Partial<CacheHeader>
  try { header = JSON.parse(file.subarray(cacheMagic.length, headerEnd).toString('utf8')) as Partial<CacheHeader> } catch { return undefined }
  if (header.bundleSizeBytes !== key.bundleSizeBytes || header.bundleMtimeMs !== key.bundleMtimeMs || header.node !== key.node || header.arch !== key.arch) return undefined
  if (!Array.isArray(header.commands) || !header.commands.every((c) => typeof c === 'string')) return undefined
  const data = file.subarray(headerEnd + 1)
  if (data.length === 0 || header.dataSha256 !== sha256(data)) return undefined
  return { header: header as CacheHeader, data }
}

// At exit, so the cache holds what this command compiled. Silent on failure: the cache only saves time.
function writeCache (script: Script, path: string, header: Omit<CacheHeader, 'dataSha256'>): void {
  const temp = `${path}.${process.pid}.${process.hrtime.bigint()}.tmp`
  let fd: number | undefined
  try {
    fd = openSync(temp, 'wx')   // first, so a read-only install does not pay for createCachedData
    const data = script.createCachedData()
    writeAll(fd, Buffer.from(cacheMagic + JSON.stringify({ ...header, dataSha256: sha256(data) }) + '\n'))
    writeAll(fd, data)
    closeSync(fd)
    fd = undefined
    renameSync(temp, path)
  } catch {
    if (fd !== undefined) try { closeSync(fd) } catch {}
    try { unlinkSync(temp) } catch {}
  }
}

function writeAll (fd: number, data: Buffer): void {
  for (let offsetBytes = 0; offsetBytes < data.length;) offsetBytes += writeSync(fd, data, offsetBytes)
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}
