// Proves client.fs behaves like node:fs/promises: one table of calls runs against node:fs on a temp folder and
// against a real Granary cluster, and each call must give the same result, or fail with the same err.code,
// syscall and path (edge cases included: reading a folder, mkdir over a file, rename onto folders, rm of a
// folder without recursive, ranges past EOF, zero-length files, aborted signals). Ranged reads across chunk
// boundaries equal the same ranges of the local file. Differences by design (docs/API.md) are tested as such.
import t from 'tap'
import * as nodeFs from 'node:fs/promises'
import { createReadStream as nodeCreateReadStream, createWriteStream as nodeCreateWriteStream, constants as nodeConstants } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { Readable, Writable } from 'node:stream'
import { startCluster } from '../../testing/cluster.js'

const KiB = 1024
const chunkSizeBytes = 64 * KiB   // the smallest chunk, so small files span many chunks

// What both backends offer, in node:fs/promises' terms (plus node:fs's two streams).
interface FsLike {
  readFile: (path: string, options?: unknown) => Promise<Buffer | string>
  writeFile: (path: string, data: string | Buffer, options?: unknown) => Promise<void>
  appendFile: (path: string, data: string | Buffer) => Promise<void>
  readdir: (path: string, options?: unknown) => Promise<unknown[]>
  stat: (path: string) => Promise<StatLike>
  lstat: (path: string) => Promise<StatLike>
  mkdir: (path: string, options?: unknown) => Promise<string | undefined>
  rename: (source: string, target: string) => Promise<void>
  rm: (path: string, options?: unknown) => Promise<void>
  unlink: (path: string) => Promise<void>
  rmdir: (path: string) => Promise<void>
  access: (path: string) => Promise<void>
  opendir: (path: string, options?: unknown) => Promise<AsyncIterable<DirentLike> & { read: () => Promise<DirentLike | null>, close: () => Promise<void> }>
  copyFile: (source: string, target: string, mode?: number) => Promise<void>
  cp: (source: string, target: string, options?: unknown) => Promise<void>
  mkdtemp: (prefix: string) => Promise<string>
  realpath: (path: string) => Promise<string>
  truncate: (path: string, length?: number) => Promise<void>
  readlink: (path: string) => Promise<string>
  createReadStream: (path: string, options?: { start?: number, end?: number, highWaterMark?: number }) => Readable
  createWriteStream: (path: string, options?: { flags?: string }) => Writable
}
interface DirentLike { name: string, parentPath: string, isFile: () => boolean, isDirectory: () => boolean }
interface StatLike { size: number, mtime: Date, mtimeMs: number, mode: number, isFile: () => boolean, isDirectory: () => boolean, isSymbolicLink: () => boolean }
interface Backend { name: string, fs: FsLike, root: string }
type Case = (fs: FsLike, p: (relative: string) => string) => Promise<unknown>

const nodeBackend = (root: string): Backend => ({
  name: 'node:fs',
  root,
  fs: { ...(nodeFs as unknown as FsLike), createReadStream: nodeCreateReadStream, createWriteStream: nodeCreateWriteStream },
})

// ---- how a call's outcome is compared -----------------------------------------------------------------

async function outcome (backend: Backend, run: Case): Promise<unknown> {
  const p = (relative: string): string => relative === '' ? backend.root : join(backend.root, relative)
  try {
    return { ok: describe(await run(backend.fs, p), backend.root) }
  } catch (err) {
    return { error: describeError(err, backend.root) }
  }
}

function relative (value: unknown, root: string): unknown {
  return typeof value === 'string' && value.startsWith(root) ? `<root>${value.slice(root.length)}` : value
}

function describe (value: unknown, root: string): unknown {
  if (Buffer.isBuffer(value)) return { bytes: value.toString('hex') }
  if (Array.isArray(value)) return value.map((v) => describe(v, root))
  if (value !== null && typeof value === 'object' && typeof (value as StatLike).isDirectory === 'function') {
    const v = value as StatLike & { name?: string, size?: number }
    return { name: v.name, isFile: v.isFile(), isDirectory: v.isDirectory(), isSymbolicLink: v.isSymbolicLink(), size: v.isFile() ? v.size : undefined }
  }
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, describe(v, root)]))
  }
  return relative(value, root)
}

function describeError (err: unknown, root: string): unknown {
  const e = err as { code?: string, syscall?: string, path?: string, dest?: string, name?: string }
  return { code: e.code, syscall: e.syscall, path: relative(e.path, root), dest: relative(e.dest, root), name: e.name === 'AbortError' ? 'AbortError' : undefined }
}

async function readAll (stream: Readable): Promise<Buffer> {
  const pieces: Buffer[] = []
  for await (const piece of stream) pieces.push(piece as Buffer)
  return Buffer.concat(pieces)
}

async function writeAll (stream: Writable, data: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    stream.once('error', reject)
    stream.end(data, (err?: Error | null) => { if (err) reject(err); else resolve() })
  })
}

const sorted = <T>(items: T[], key: (item: T) => string): T[] => [...items].sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
const names = (entries: unknown[]): string[] => sorted(entries as string[], (s) => s)
const dirents = (entries: unknown[]): unknown[] => sorted(entries as Array<{ name: string, isFile: () => boolean, isDirectory: () => boolean }>, (d) => d.name)
  .map((d) => ({ name: d.name, isFile: d.isFile(), isDirectory: d.isDirectory() }))

async function tree (fs: FsLike, p: (r: string) => string, base: string): Promise<void> {
  await fs.mkdir(p(`${base}/dir/sub`), { recursive: true })
  await fs.writeFile(p(`${base}/file.txt`), 'hello')
  await fs.writeFile(p(`${base}/dir/inner.txt`), 'inner')
  await fs.mkdir(p(`${base}/empty`))
}

const data = randomBytes(5 * chunkSizeBytes + 4321)

// ---- the table: every entry runs on both backends and must give the same outcome ----------------------
const cases: Record<string, Case> = {
  'writeFile then readFile: bytes and utf8': async (fs, p) => {
    await fs.writeFile(p('a.bin'), data)
    await fs.writeFile(p('a.txt'), 'héllo wörld')
    return [(await fs.readFile(p('a.bin')) as Buffer).equals(data), await fs.readFile(p('a.txt'), 'utf8'), await fs.readFile(p('a.txt'), { encoding: 'utf8' })]
  },
  'zero-length file: write, read, stat, stream': async (fs, p) => {
    await fs.writeFile(p('zero'), '')
    return [await fs.readFile(p('zero')), (await fs.stat(p('zero'))).size, await readAll(fs.createReadStream(p('zero'))),
      await readAll(fs.createReadStream(p('zero'), { start: 0, end: 10 }))]
  },
  'readFile of a missing file': async (fs, p) => await fs.readFile(p('missing')),
  'readFile of a folder': async (fs, p) => { await fs.mkdir(p('rf-dir')); return await fs.readFile(p('rf-dir')) },
  'readFile below a file': async (fs, p) => { await fs.writeFile(p('rf-file'), 'x'); return await fs.readFile(p('rf-file/x')) },
  "writeFile flag 'wx' over an existing file": async (fs, p) => { await fs.writeFile(p('wx'), 'one'); await fs.writeFile(p('wx'), 'two', { flag: 'wx' }) },
  "writeFile flag 'wx' on a new file": async (fs, p) => { await fs.writeFile(p('wx-new'), 'one', { flag: 'wx' }); return await fs.readFile(p('wx-new'), 'utf8') },
  'writeFile replaces an existing file': async (fs, p) => { await fs.writeFile(p('w'), 'first and longer'); await fs.writeFile(p('w'), 'second'); return await fs.readFile(p('w'), 'utf8') },
  'writeFile onto a folder': async (fs, p) => { await fs.mkdir(p('wf-dir')); await fs.writeFile(p('wf-dir'), 'x') },
  'writeFile with a missing parent': async (fs, p) => await fs.writeFile(p('no-such-dir/f'), 'x'),
  'writeFile below a file': async (fs, p) => { await fs.writeFile(p('wf-file'), 'x'); await fs.writeFile(p('wf-file/y'), 'x') },
  'mkdir of an existing folder': async (fs, p) => { await fs.mkdir(p('md')); return await fs.mkdir(p('md')) },
  'mkdir over a file': async (fs, p) => { await fs.writeFile(p('md-file'), 'x'); return await fs.mkdir(p('md-file')) },
  'mkdir recursive over a file': async (fs, p) => { await fs.writeFile(p('mdr-file'), 'x'); return await fs.mkdir(p('mdr-file'), { recursive: true }) },
  'mkdir recursive below a file': async (fs, p) => { await fs.writeFile(p('mdb-file'), 'x'); return await fs.mkdir(p('mdb-file/a/b'), { recursive: true }) },
  'mkdir recursive returns the first folder created': async (fs, p) => {
    await fs.mkdir(p('mdp'))
    return [await fs.mkdir(p('mdp/a/b/c'), { recursive: true }), await fs.mkdir(p('mdp/a/b/c'), { recursive: true }), await fs.mkdir(p('mdp/a/x'), { recursive: true })]
  },
  'mkdir with a missing parent': async (fs, p) => await fs.mkdir(p('md-missing/child')),
  'readdir: names, withFileTypes, recursive': async (fs, p) => {
    await tree(fs, p, 'rd')
    return [names(await fs.readdir(p('rd'))), dirents(await fs.readdir(p('rd'), { withFileTypes: true })),
      names(await fs.readdir(p('rd'), { recursive: true })), await fs.readdir(p('rd/empty'))]
  },
  'readdir of a file': async (fs, p) => { await fs.writeFile(p('rd-file'), 'x'); return await fs.readdir(p('rd-file')) },
  'readdir of a missing folder': async (fs, p) => await fs.readdir(p('rd-missing')),
  'stat and lstat of a file and a folder': async (fs, p) => {
    await tree(fs, p, 'st')
    const file = await fs.stat(p('st/file.txt'))
    const dir = await fs.lstat(p('st/dir'))
    return [file, dir, file.mtime instanceof Date, Math.abs(file.mtimeMs - Date.now()) < 60_000, (await fs.lstat(p('st/file.txt'))).size]
  },
  'stat of a missing path': async (fs, p) => await fs.stat(p('st-missing')),
  'stat below a file': async (fs, p) => { await fs.writeFile(p('st-file'), 'x'); return await fs.stat(p('st-file/x')) },
  'lstat of a missing path': async (fs, p) => await fs.lstat(p('lst-missing')),
  'rename a file onto an existing file': async (fs, p) => {
    await fs.writeFile(p('rn-a'), 'A'); await fs.writeFile(p('rn-b'), 'B')
    await fs.rename(p('rn-a'), p('rn-b'))
    return [await fs.readFile(p('rn-b'), 'utf8'), await fs.access(p('rn-a')).then(() => 'exists', (e: { code: string }) => e.code)]
  },
  'rename a file onto an existing folder': async (fs, p) => { await fs.writeFile(p('rnf'), 'x'); await fs.mkdir(p('rnf-dir')); await fs.rename(p('rnf'), p('rnf-dir')) },
  'rename a folder onto a non-empty folder': async (fs, p) => { await tree(fs, p, 'rnd'); await fs.rename(p('rnd/empty'), p('rnd/dir')) },
  'rename a folder onto an empty folder': async (fs, p) => {
    await tree(fs, p, 'rne'); await fs.rename(p('rne/dir'), p('rne/empty'))
    return [names(await fs.readdir(p('rne'))), names(await fs.readdir(p('rne/empty')))]
  },
  'rename a folder onto a file': async (fs, p) => { await tree(fs, p, 'rnff'); await fs.rename(p('rnff/dir'), p('rnff/file.txt')) },
  'rename a folder into itself': async (fs, p) => { await tree(fs, p, 'rns'); await fs.rename(p('rns/dir'), p('rns/dir/sub/deeper')) },
  'rename a missing path': async (fs, p) => await fs.rename(p('rn-missing'), p('rn-missing-2')),
  'rename into a missing folder': async (fs, p) => { await fs.writeFile(p('rnm'), 'x'); await fs.rename(p('rnm'), p('rnm-missing/x')) },
  'rm of a non-empty folder without recursive': async (fs, p) => { await tree(fs, p, 'rm1'); await fs.rm(p('rm1/dir')) },
  'rm of an empty folder without recursive': async (fs, p) => { await tree(fs, p, 'rm2'); await fs.rm(p('rm2/empty')) },
  'rm of a missing path, with and without force': async (fs, p) => { await fs.rm(p('rm-missing'), { force: true }); await fs.rm(p('rm-missing')) },
  'rm recursive and rm of a file': async (fs, p) => {
    await tree(fs, p, 'rm3'); await fs.rm(p('rm3/file.txt')); await fs.rm(p('rm3/dir'), { recursive: true })
    return names(await fs.readdir(p('rm3')))
  },
  'unlink of a folder': async (fs, p) => { await fs.mkdir(p('ul-dir')); await fs.unlink(p('ul-dir')) },
  'unlink of a file, then of a missing one': async (fs, p) => { await fs.writeFile(p('ul'), 'x'); await fs.unlink(p('ul')); await fs.unlink(p('ul')) },
  'rmdir of a file': async (fs, p) => { await fs.writeFile(p('rmd-file'), 'x'); await fs.rmdir(p('rmd-file')) },
  'rmdir of a non-empty folder': async (fs, p) => { await tree(fs, p, 'rmd'); await fs.rmdir(p('rmd/dir')) },
  'rmdir of an empty folder, then of a missing one': async (fs, p) => { await fs.mkdir(p('rmd-e')); await fs.rmdir(p('rmd-e')); await fs.rmdir(p('rmd-e')) },
  'access of a file and of a missing path': async (fs, p) => { await fs.writeFile(p('ac'), 'x'); await fs.access(p('ac')); await fs.access(p('ac-missing')) },
  'createReadStream ranges, past EOF included': async (fs, p) => {
    await fs.writeFile(p('range'), '0123456789')
    const ranges = [{ start: 2, end: 5 }, { start: 0, end: 0 }, { start: 7 }, { end: 3 }, { start: 8, end: 100 }, { start: 10 }, { start: 50, end: 60 }]
    return await Promise.all(ranges.map(async (r) => (await readAll(fs.createReadStream(p('range'), r))).toString()))
  },
  'createReadStream with start after end': async (fs, p) => { await fs.writeFile(p('range-bad'), 'x'); fs.createReadStream(p('range-bad'), { start: 3, end: 1 }) },
  'createReadStream of a missing file': async (fs, p) => await readAll(fs.createReadStream(p('crs-missing'))),
  'createReadStream of a folder': async (fs, p) => { await fs.mkdir(p('crs-dir')); return await readAll(fs.createReadStream(p('crs-dir'))) },
  'createWriteStream writes, replaces, and refuses wx over a file': async (fs, p) => {
    await writeAll(fs.createWriteStream(p('cws')), data)
    await writeAll(fs.createWriteStream(p('cws')), Buffer.from('short'))
    const replaced = await fs.readFile(p('cws'), 'utf8')
    await writeAll(fs.createWriteStream(p('cws'), { flags: 'wx' }), Buffer.from('no'))
    return replaced
  },
  'createWriteStream with a missing parent': async (fs, p) => await writeAll(fs.createWriteStream(p('cws-missing/f')), Buffer.from('x')),
  'opendir: for await, read() to null, close twice': async (fs, p) => {
    await tree(fs, p, 'od')
    const seen: DirentLike[] = []
    for await (const dirent of await fs.opendir(p('od'))) seen.push(dirent)
    const dir = await fs.opendir(p('od/dir'))
    const first = await dir.read()
    const second = await dir.read()
    const end = await dir.read()
    await dir.close()
    const again = await dir.close().then(() => 'closed twice', (e: { code: string }) => e.code)
    return [dirents(seen), [first, second].map((d) => d?.name).sort(), end, again]
  },
  'opendir of a file and of a missing path': async (fs, p) => {
    await fs.writeFile(p('od-file'), 'x')
    const file = await fs.opendir(p('od-file')).then(() => 'opened', (e: unknown) => describeError(e, p('')))
    return [file, await fs.opendir(p('od-missing')).then(() => 'opened', (e: unknown) => describeError(e, p('')))]
  },
  'copyFile copies, replaces, and refuses COPYFILE_EXCL over a file': async (fs, p) => {
    await fs.writeFile(p('cf-a'), data)
    await fs.copyFile(p('cf-a'), p('cf-b'))
    const copied = (await fs.readFile(p('cf-b')) as Buffer).equals(data)
    await fs.writeFile(p('cf-c'), 'small')
    await fs.copyFile(p('cf-c'), p('cf-b'))
    const replaced = await fs.readFile(p('cf-b'), 'utf8')
    return [copied, replaced, await fs.copyFile(p('cf-a'), p('cf-b'), nodeConstants.COPYFILE_EXCL).then(() => 'copied', (e: unknown) => describeError(e, p('')))]
  },
  'copyFile of a missing file': async (fs, p) => await fs.copyFile(p('cf-missing'), p('cf-x')),
  'copyFile with a missing target folder': async (fs, p) => { await fs.writeFile(p('cf-m'), 'x'); await fs.copyFile(p('cf-m'), p('cf-nodir/x')) },
  'copyFile onto a folder': async (fs, p) => { await fs.writeFile(p('cf-f'), 'x'); await fs.mkdir(p('cf-d')); await fs.copyFile(p('cf-f'), p('cf-d')) },
  'copyFile of a folder': async (fs, p) => { await fs.mkdir(p('cf-dd')); await fs.copyFile(p('cf-dd'), p('cf-dd2')) },
  'cp of a file, and of a folder with recursive': async (fs, p) => {
    await tree(fs, p, 'cp')
    await fs.cp(p('cp/file.txt'), p('cp/copy.txt'))
    await fs.cp(p('cp/dir'), p('cp/dir2'), { recursive: true })
    return [await fs.readFile(p('cp/copy.txt'), 'utf8'), names(await fs.readdir(p('cp/dir2'), { recursive: true })), await fs.readFile(p('cp/dir2/inner.txt'), 'utf8')]
  },
  'cp of a folder without recursive': async (fs, p) => { await tree(fs, p, 'cpn'); await fs.cp(p('cpn/dir'), p('cpn/dir2')) },
  'cp of a missing path': async (fs, p) => await fs.cp(p('cp-missing'), p('cp-x')),
  'cp force: false keeps an existing file': async (fs, p) => {
    await fs.writeFile(p('cpf-a'), 'new'); await fs.writeFile(p('cpf-b'), 'old')
    await fs.cp(p('cpf-a'), p('cpf-b'), { force: false })
    return await fs.readFile(p('cpf-b'), 'utf8')
  },
  'mkdtemp makes a new folder from the prefix': async (fs, p) => {
    await fs.mkdir(p('mt'))
    const made = await fs.mkdtemp(p('mt/tmp-'))
    const other = await fs.mkdtemp(p('mt/tmp-'))
    return [made.startsWith(p('mt/tmp-')), made.length - p('mt/tmp-').length, /^[A-Za-z0-9]{6}$/.test(made.slice(-6)), made !== other,
      (await fs.stat(made)).isDirectory(), await fs.readdir(made)]
  },
  'mkdtemp in a missing folder': async (fs, p) => await fs.mkdtemp(p('mt-missing/tmp-')).catch((e: { path?: string }) => {
    // the error names the random path tried: compare its shape
    throw Object.assign(e, { path: e.path?.replace(/tmp-[A-Za-z0-9]{6}$/, 'tmp-XXXXXX') })
  }),
  'realpath of a file, a folder, a missing path': async (fs, p) => {
    await tree(fs, p, 'rp')
    return [await fs.realpath(p('rp/dir//inner.txt')), await fs.realpath(p('rp/dir/')), await fs.realpath(p('rp/nope')).catch((e: unknown) => describeError(e, p('')))]
  },
  'readlink of a file and of a missing path': async (fs, p) => {
    await fs.writeFile(p('rl'), 'x')
    return [await fs.readlink(p('rl')).catch((e: unknown) => describeError(e, p(''))), await fs.readlink(p('rl-missing')).catch((e: unknown) => describeError(e, p('')))]
  },
  'truncate: shorter, longer with zeros, to zero, unchanged': async (fs, p) => {
    await fs.writeFile(p('tr'), data)
    await fs.truncate(p('tr'), 3 * chunkSizeBytes + 17)
    const shorter = (await fs.readFile(p('tr')) as Buffer).equals(data.subarray(0, 3 * chunkSizeBytes + 17))
    await fs.writeFile(p('tr2'), 'abc')
    await fs.truncate(p('tr2'), 70_000)
    const longer = await fs.readFile(p('tr2')) as Buffer
    await fs.truncate(p('tr2'), 3)
    const same = await fs.readFile(p('tr2'), 'utf8')
    await fs.truncate(p('tr2'))
    return [shorter, longer.length, longer.subarray(0, 3).toString(), longer.subarray(3).every((b) => b === 0), same, (await fs.stat(p('tr2'))).size]
  },
  'truncate of a missing file and of a folder': async (fs, p) => {
    await fs.mkdir(p('tr-dir'))
    return [await fs.truncate(p('tr-missing')).catch((e: unknown) => describeError(e, p(''))), await fs.truncate(p('tr-dir')).catch((e: unknown) => describeError(e, p('')))]
  },
  'readFile with an aborted signal': async (fs, p) => { await fs.writeFile(p('ab'), 'x'); return await fs.readFile(p('ab'), { signal: AbortSignal.abort() }) },
  'writeFile with an aborted signal writes nothing': async (fs, p) => {
    const failed = await fs.writeFile(p('ab-w'), 'x', { signal: AbortSignal.abort() }).then(() => 'written', (e: { code: string, name: string }) => `${e.name} ${e.code}`)
    return [failed, await fs.access(p('ab-w')).then(() => 'exists', (e: { code: string }) => e.code)]
  },
}

t.test('client.fs conforms to node:fs/promises', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, replication: 2, chunkSizeBytes, test: t })
  const client = cluster.client({ deadlineMs: 20_000 })
  const granary: Backend = { name: 'granary', fs: client.fs as unknown as FsLike, root: '/conformance' }
  await client.fs.mkdir(granary.root)
  const local = nodeBackend(t.testdir({}))

  for (const [name, run] of Object.entries(cases)) {
    const expected = await outcome(local, run)
    const actual = await outcome(granary, run)
    t.same(actual, expected, name)
    if (process.env.SHOW_OUTCOMES === '1') console.error(name, JSON.stringify(actual))   // to see what was compared
  }

  await t.test('ranged reads across chunk boundaries equal the same ranges of the local file', async (t) => {
    await local.fs.writeFile(join(local.root, 'chunks.bin'), data)
    await client.fs.writeFile('/conformance/chunks.bin', data)
    t.equal((await client.stat('/conformance/chunks.bin')).chunkCount, 6, 'the file spans 6 chunks')
    const c = chunkSizeBytes
    const ranges = [[0, c - 1], [c - 1, c], [c - 100, 3 * c + 100], [2 * c, 2 * c], [5 * c, data.length - 1], [4 * c + 1, data.length + 99],
      [0, data.length - 1], [data.length - 1, data.length - 1], [12345, 12345 + 3 * c]]
    for (const [start, end] of ranges as Array<[number, number]>) {
      const want = await readAll(nodeCreateReadStream(join(local.root, 'chunks.bin'), { start, end }))
      const got = await readAll(client.fs.createReadStream('/conformance/chunks.bin', { start, end, highWaterMark: 7 * KiB }))
      t.ok(got.equals(want), `bytes ${start}-${end}: ${got.length} bytes, the same as node:fs`)
    }
  })

  await t.test('errors carry node codes and Granary codes', async (t) => {
    const err = await client.fs.readFile('/conformance/nope').catch((e: unknown) => e) as { code: string, granaryCode: string, errno: number, syscall: string, path: string, message: string }
    t.match(err, { code: 'ENOENT', granaryCode: 'GRN_NOT_FOUND', errno: -2, syscall: 'open', path: '/conformance/nope' })
    t.match(err.message, /^ENOENT: no such file or directory, open '\/conformance\/nope'/)
    const rename = await client.fs.rename('/conformance/nope', '/conformance/x').catch((e: unknown) => e) as { dest: string, granaryCode: string }
    t.match(rename, { code: 'ENOENT', granaryCode: 'GRN_NOT_FOUND', dest: '/conformance/x' })
  })

  await t.test('differences by design (docs/API.md)', async (t) => {
    const fs = client.fs
    await fs.writeFile('/conformance/append.txt', 'one')
    await t.rejects(fs.appendFile('/conformance/append.txt', 'two'), { code: 'ENOTSUP', granaryCode: 'GRN_INVALID_ARGUMENT', syscall: 'open' }, 'no append')
    t.equal(await fs.readFile('/conformance/append.txt', 'utf8'), 'one', 'the file is unchanged')
    t.throws(() => fs.createWriteStream('/conformance/append.txt', { flags: 'a' }), { code: 'ENOTSUP' }, "no 'a' flag")
    t.throws(() => fs.createWriteStream('/conformance/append.txt', { flags: 'r+' }), { code: 'ENOTSUP' }, 'no partial overwrite')
    t.throws(() => fs.createWriteStream('/conformance/append.txt', { start: 2 }), { code: 'ENOTSUP' }, 'no write at an offset')
    await t.rejects(fs.writeFile('/conformance/append.txt', 'x', { flag: 'a' }), { code: 'ENOTSUP' })

    // node creates the file at open; Granary shows it only once the stream finishes.
    const stream = fs.createWriteStream('/conformance/late.txt')
    await new Promise<void>((resolve, reject) => { stream.write('part', (err) => { if (err) reject(err); else resolve() }) })
    t.equal(await fs.exists('/conformance/late.txt'), false, 'invisible while being written')
    await writeAll(stream, Buffer.from(' and the rest'))
    t.equal(await fs.readFile('/conformance/late.txt', 'utf8'), 'part and the rest', 'visible, whole, once finished')

    await t.rejects(fs.readFile('relative/path'), { code: 'EINVAL', granaryCode: 'GRN_INVALID_PATH' }, 'paths are absolute')
    await t.rejects(fs.stat('/conformance/../etc'), { code: 'EINVAL', granaryCode: 'GRN_INVALID_PATH' }, "'..' is refused, not resolved")
    t.equal((await fs.stat('/conformance/append.txt')).mode, 0o100644, 'files report mode 0644')
    t.equal((await fs.stat('/conformance')).mode, 0o040755, 'folders report mode 0755')
    await fs.writeFile('/conformance/run.sh', '#!/bin/sh\n', { mode: 0o755 })
    t.equal((await fs.stat('/conformance/run.sh')).mode, 0o100755, 'a writeFile mode is stored')
    await fs.mkdir('/conformance/private', 0o700)
    t.equal((await fs.stat('/conformance/private')).mode, 0o040700, 'a mkdir mode is stored')
    t.same(await fs.readdir('/conformance/'), [...await fs.readdir('/conformance')].sort(), 'readdir is sorted bytewise')
    await t.rejects(fs.access('/conformance/append.txt', fs.constants.X_OK), { code: 'EACCES' }, 'files are not executable')

    // Every function node:fs/promises has exists here; what Granary does not do fails with ENOTSUP, not TypeError.
    const missing = Object.keys(nodeFs).filter((key) => typeof (nodeFs as Record<string, unknown>)[key] === 'function' && typeof (fs as unknown as Record<string, unknown>)[key] !== 'function')
    t.same(missing, [], 'no node:fs/promises function is missing')
    for (const name of ['open', 'symlink', 'link', 'chmod', 'lchmod', 'chown', 'lchown', 'utimes', 'lutimes', 'statfs', 'glob']) {
      await t.rejects((fs as unknown as Record<string, (p: string, q?: string) => Promise<unknown>>)[name]!('/conformance/append.txt', '/conformance/x'), { code: 'ENOTSUP' }, `${name}: ENOTSUP`)
    }
    t.throws(() => fs.watch('/conformance'), { code: 'ENOTSUP', syscall: 'watch' }, 'watch: ENOTSUP at once')
    await t.rejects(fs.copyFile('/conformance/append.txt', '/conformance/clone', fs.constants.COPYFILE_FICLONE_FORCE), { code: 'ENOTSUP' }, 'no reflinks')
    await t.rejects(fs.cp('/conformance', '/elsewhere', { recursive: true, filter: () => true }), { code: 'ENOTSUP' }, 'no cp filter')
    await t.rejects(fs.cp('/conformance', '/conformance/inside', { recursive: true }), { code: 'ERR_FS_CP_EINVAL' }, 'not into itself')
  })

  await t.test('library additions: entries, opendir pages, progress events, asyncDispose', async (t) => {
    await client.mkdir('/lib/many/deeper', { recursive: true })
    for (let i = 0; i < 25; i++) await client.writeFile(`/lib/many/f${String(i).padStart(2, '0')}`, String(i))
    await client.writeFile('/lib/many/deeper/last', 'x')
    const flat: string[] = []
    for await (const entry of client.entries('/lib/many', { pageSize: 4 })) flat.push(entry.path)
    t.equal(flat.length, 26, 'every entry, 4 per page')
    t.same(flat, [...flat].sort(), 'in name order')
    const all: string[] = []
    for await (const entry of client.entries('/lib', { recursive: true, pageSize: 3 })) all.push(entry.path)
    t.same(all.slice(0, 2), ['/lib/many', '/lib/many/deeper'], 'recursive: breadth-first')
    t.equal(all[all.length - 1], '/lib/many/deeper/last')
    let taken = 0
    for await (const _entry of client.entries('/lib/many', { pageSize: 2 })) if (++taken === 3) break
    t.equal(taken, 3, 'breaking out stops the listing')
    const dir = await client.fs.opendir('/lib', { recursive: true, bufferSize: 2 })
    const seen: string[] = []
    for await (const dirent of dir) seen.push(`${dirent.parentPath}/${dirent.name}`)
    t.equal(seen.length, 28, 'many, deeper, 25 files and deeper/last')
    t.ok(seen.includes('/lib/many/deeper/last'), 'parentPath names the folder')
    await t.rejects(dir.read(), { code: 'ERR_DIR_CLOSED' }, 'the iterator closed the Dir')

    const events: Array<{ chunkIndex: number, committedBytes: number, committedChunks: number }> = []
    const size = 4 * chunkSizeBytes + 5
    const stat = await client.writeFile('/lib/progress.bin', data.subarray(0, size), { chunkSizeBytes, onProgress: (p) => { events.push(p) } })
    t.equal(events.length, stat.chunkCount, 'one progress event per committed chunk')
    t.same(events.map((e) => e.committedChunks), [1, 2, 3, 4, 5])
    t.equal(events[events.length - 1]?.committedBytes, size, 'the last one counts every byte')
    t.same(events.map((e) => e.chunkIndex).sort(), [0, 1, 2, 3, 4])
    t.ok(events.every((e, i) => i === 0 || e.committedBytes > (events[i - 1]?.committedBytes ?? 0)), 'committedBytes only grows')
    const stream = client.fs.createWriteStream('/lib/progress2.bin', { chunkSizeBytes })
    let streamed = 0
    stream.on('progress', (p: { committedBytes: number }) => { streamed = p.committedBytes })
    await writeAll(stream, data.subarray(0, 2 * chunkSizeBytes))
    t.equal(streamed, 2 * chunkSizeBytes, "client.fs write streams emit 'progress' too")

    const other = cluster.client()
    await other[Symbol.asyncDispose]()
    await t.rejects(other.stat('/lib'), { code: 'GRN_ABORTED' }, 'Symbol.asyncDispose closes the client')
  })
})
