// Proves folders move whole through a real cluster with the spawned `granary` CLI: `put -r` then `get -r` of a
// tree of 1,000 files (nested folders, empty files and folders, multi-chunk files) gives back the same names
// and bytes, with file mtimes kept (to the second) and modes kept (0755 and 0600 files, a 0700 folder, the
// rest 0644/0755, read back through stat too); `get -r DIR -` writes a tar that
// `put -r - DIR` reads back identically; a malicious tar on stdin is refused with GRN_INVALID_PATH and writes
// nothing outside its target; symlinks are refused; existing files need --force.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync, readFileSync, readdirSync, statSync, symlinkSync, utimesSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import tarStream from 'tar-stream'
import { startCluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'
import type { GranaryClient } from '../../client/index.js'


const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

// 10 folders × 10 subfolders × 10 files = 1,000 files: every 7th empty, a few over a chunk, plus empty folders.
function makeTree (root: string): void {
  let n = 0
  for (let a = 0; a < 10; a++) {
    for (let b = 0; b < 10; b++) {
      const dir = join(root, `d${a}`, `s${b}`)
      mkdirSync(dir, { recursive: true })
      for (let c = 0; c < 10; c++, n++) {
        const size = n % 7 === 0 ? 0 : n % 250 === 1 ? 1024 * 1024 + 4097 * n : 100 + (n * 37) % 5000
        const file = join(dir, `f${c}.bin`)
        writeFileSync(file, randomBytes(size))
        utimesSync(file, 1_600_000_000 + n, 1_600_000_000 + n)
      }
    }
  }
  mkdirSync(join(root, 'empty-a', 'empty-b'), { recursive: true })
}

// Every path under a local root: type, sha256, mode, and file mtime in seconds.
function localTree (root: string, withMtimes = true): Record<string, string> {
  const out: Record<string, string> = {}
  const stack = ['']
  for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
    for (const name of readdirSync(join(root, dir))) {
      const relative = dir === '' ? name : `${dir}/${name}`
      const stat = statSync(join(root, relative))
      const mode = (stat.mode & 0o777).toString(8)
      if (stat.isDirectory()) { out[`${relative}/`] = mode; stack.push(relative); continue }
      out[relative] = `${mode} ${sha(readFileSync(join(root, relative)))}${withMtimes ? ` ${Math.floor(stat.mtimeMs / 1000)}` : ''}`
    }
  }
  return out
}

// The same description of a tar: names, modes, sha256 and file mtimes (folder mtimes are Granary's own).
async function tarTree (tar: AsyncIterable<Buffer | Uint8Array>): Promise<Record<string, string>> {
  const extract = tarStream.extract()
  const out: Record<string, string> = {}
  const feed = (async () => { for await (const piece of tar) extract.write(Buffer.from(piece)); extract.end(null) })()
  for await (const entry of extract) {
    const pieces: Buffer[] = []
    for await (const piece of entry as AsyncIterable<Buffer>) pieces.push(piece)
    const { name, mode = 0, mtime } = entry.header
    if (name.endsWith('/')) out[name] = mode.toString(8)
    else out[name] = `${mode.toString(8)} ${sha(Buffer.concat(pieces))} ${Math.floor((mtime?.getTime() ?? 0) / 1000)}`
  }
  await feed
  return out
}

const remoteTree = async (client: GranaryClient, root: string): Promise<Record<string, string>> => await tarTree(client.packDirectory(root))

async function craftTar (entries: Array<{ name: string, body: string }>): Promise<Buffer> {
  const pack = tarStream.pack()
  for (const entry of entries) pack.entry({ name: entry.name }, entry.body)
  pack.finalize()
  const pieces: Buffer[] = []
  for await (const piece of pack as AsyncIterable<Buffer>) pieces.push(piece)
  return Buffer.concat(pieces)
}

t.test('folders as tar streams through the CLI', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, replication: 2, chunkSizeBytes: 1024 * 1024, test: t })
  const client = cluster.client({ deadlineMs: 30_000 })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const dir = t.testdir({})
  const source = join(dir, 'source')
  makeTree(source)
  chmodSync(join(source, 'd0', 's0', 'f1.bin'), 0o600)
  chmodSync(join(source, 'd0', 's0', 'f3.bin'), 0o755)
  chmodSync(join(source, 'd0', 's1'), 0o700)
  const expected = localTree(source)
  t.equal(Object.keys(expected).filter((k) => !k.endsWith('/')).length, 1000, '1,000 files in the source tree')

  await t.test('put -r then get -r: same names, bytes, mtimes and modes', async (t) => {
    const put = await granary(['put', '-r', '--json', source, '/trees/a'], env)
    t.equal(put.code, 0, put.stderr)
    t.match(JSON.parse(put.stdout.toString()), { target: '/trees/a', fileCount: 1000, dirCount: 112 })
    const copy = join(dir, 'copy')
    const get = await granary(['get', '-r', '/trees/a', copy], env)
    t.equal(get.code, 0, get.stderr)
    const back = localTree(copy)
    const want = expected
    t.match(want, { 'd0/s0/f1.bin': /^600 /, 'd0/s0/f3.bin': /^755 /, 'd0/s1/': '700' }, 'the source has the odd modes')
    t.same(back, want, 'byte-identical, same modes and file mtimes')
    t.equal((await client.stat('/trees/a/d0/s0/f1.bin')).mode, 0o600, 'the master stores a file\'s mode')
    t.equal((await client.stat('/trees/a/d0/s1')).mode, 0o700, 'and a folder\'s')
    t.equal((await client.fs.stat('/trees/a/d0/s0/f3.bin')).mode, 0o100755, 'fs.stat reports the type and stored bits')
    const again = await granary(['get', '-r', '/trees/a', copy], env)
    t.equal(again.code, 1, 'existing local files are refused')
    t.match(again.stderr, /GRN_EXISTS/)
    writeFileSync(join(copy, 'd0', 's0', 'f2.bin'), 'changed')
    t.equal((await granary(['get', '-r', '--force', '/trees/a/d0/s0', join(copy, 'd0', 's0')], env)).code, 0, '--force replaces them')
    t.same(localTree(copy), want, 'the changed file is back')
    t.equal((await granary(['put', '-r', source, '/trees/a'], env)).code, 1, 'existing Granary files are refused')
  })

  await t.test('get -r DIR - writes a tar that put -r - DIR reads back', async (t) => {
    const tar = await granary(['get', '-r', '/trees/a/d1', '-'], env)
    t.equal(tar.code, 0, tar.stderr)
    const written = await tarTree(Readable.from([tar.stdout]))
    t.equal(Object.keys(written).length, 110, 'a tar of 100 files and 10 folders')
    t.same(written, Object.fromEntries(Object.entries(expected).filter(([k]) => k.startsWith('d1/') && k !== 'd1/').map(([k, v]) => [k.slice(3), v])),
      'holding the source files with their mtimes')
    const put = await granary(['put', '-r', '-', '/trees/b'], env, tar.stdout)
    t.equal(put.code, 0, put.stderr)
    t.same(await remoteTree(client, '/trees/b'), written, 'put -r - stored the same tree')
  })

  await t.test('a malicious tar is refused and writes nothing outside its target', async (t) => {
    await client.fs.mkdir('/victim', { recursive: true })
    await client.fs.writeFile('/victim/keep.txt', 'keep')
    const before = await client.fs.readdir('/', { recursive: true })
    for (const name of ['../victim/evil.txt', '/victim/evil.txt', 'x/../../victim/evil.txt']) {
      const tar = await craftTar([{ name: 'ok.txt', body: 'fine' }, { name, body: 'evil' }])
      const put = await granary(['put', '-r', '-', '/trees/evil'], env, tar)
      t.equal(put.code, 1, `${name}: refused`)
      t.match(put.stderr, /GRN_INVALID_PATH/)
    }
    const after = await client.fs.readdir('/', { recursive: true })
    t.same(after.filter((p) => !p.startsWith('trees/evil')), before, 'nothing appeared outside /trees/evil')
    t.same(await client.fs.readdir('/trees/evil'), ['ok.txt'], 'only the entry before the bad one, inside the target')
    t.equal(await client.fs.readFile('/victim/keep.txt', 'utf8'), 'keep')
  })

  await t.test('symlinks in a local tree are refused', async (t) => {
    const linked = join(dir, 'linked')
    mkdirSync(linked)
    writeFileSync(join(linked, 'a.txt'), 'a')
    symlinkSync('/etc', join(linked, 'etc'))
    const put = await granary(['put', '-r', linked, '/trees/linked'], env)
    t.equal(put.code, 1)
    t.match(put.stderr, /GRN_INVALID_ARGUMENT.*symlink/)
  })

  await t.test('the library: packDirectory and unpackDirectory', async (t) => {
    const result = await client.unpackDirectory('/trees/c', client.packDirectory('/trees/a/d3'))
    t.same(result, { fileCount: 100, dirCount: 10, sizeBytes: result.sizeBytes })
    t.same(await remoteTree(client, '/trees/c'), await remoteTree(client, '/trees/a/d3'))
    await t.rejects(async () => { for await (const _ of client.packDirectory('/trees/a/d3/s0/f1.bin')) { /* not a folder */ } }, { code: 'GRN_NOT_DIR' })
  })
})
