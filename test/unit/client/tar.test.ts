// Proves the tar helpers on local folders: tar entry names that are absolute or hold '..' are refused;
// packLocalDirectory → unpackLocalDirectory round-trips a tree byte for byte with modes and mtimes (to the
// second, tar's unit); symlinks are refused when packing; a crafted tar with '../' or absolute names, or one
// aimed through a symlink planted in the target, is refused without writing anything outside the target;
// existing files are refused unless overwrite; setuid, setgid and sticky bits only with preservePermissions.
import t from 'tap'
import { mkdirSync, writeFileSync, readFileSync, statSync, symlinkSync, readdirSync, existsSync, chmodSync, utimesSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import tarStream from 'tar-stream'
import { tarEntryNames } from '../../../client/tar.js'
import { packLocalDirectory, unpackLocalDirectory } from '../../../client/tar-local.js'

async function craftTar (entries: Array<{ name: string, body?: string, type?: 'file' | 'directory' | 'symlink', linkname?: string, mode?: number }>): Promise<Buffer> {
  const pack = tarStream.pack()
  for (const entry of entries) {
    if (entry.type === 'symlink') pack.entry({ name: entry.name, type: 'symlink', linkname: entry.linkname ?? '/' })
    else if (entry.type === 'directory') pack.entry({ name: entry.name, type: 'directory', ...(entry.mode === undefined ? {} : { mode: entry.mode }) })
    else pack.entry({ name: entry.name, ...(entry.mode === undefined ? {} : { mode: entry.mode }) }, entry.body ?? '')
  }
  pack.finalize()
  const pieces: Buffer[] = []
  for await (const piece of pack as AsyncIterable<Buffer>) pieces.push(piece)
  return Buffer.concat(pieces)
}

async function codeOf (promise: Promise<unknown>): Promise<string | undefined> {
  try { await promise; return undefined } catch (err) { return (err as { code?: string }).code }
}

// Every path under root with its type, bytes, mode and mtime (seconds).
function snapshot (root: string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const stack = ['']
  for (let dir = stack.pop(); dir !== undefined; dir = stack.pop()) {
    for (const name of readdirSync(join(root, dir)).sort()) {
      const relative = dir === '' ? name : `${dir}/${name}`
      const stat = statSync(join(root, relative))
      const shared = { mode: (stat.mode & 0o7777).toString(8), mtimeS: Math.floor(stat.mtimeMs / 1000) }
      if (stat.isDirectory()) { out[relative + '/'] = shared; stack.push(relative) } else out[relative] = { ...shared, bytes: readFileSync(join(root, relative)).toString('hex') }
    }
  }
  return out
}

t.test('tarEntryNames', async (t) => {
  t.same(tarEntryNames('a/b/c.txt'), ['a', 'b', 'c.txt'])
  t.same(tarEntryNames('./a//b/'), ['a', 'b'])
  t.same(tarEntryNames('./'), [])
  for (const bad of ['../evil', 'a/../../evil', 'a/..', '/etc/passwd', '//x', 'C:\\x', 'nul\u0000byte']) {
    t.throws(() => tarEntryNames(bad), { code: 'GRN_INVALID_PATH' }, JSON.stringify(bad))
  }
})

t.test('a local tree round-trips with bytes, modes and mtimes', async (t) => {
  const dir = t.testdir({ source: { 'a.txt': 'alpha', empty: '', nested: { deeper: { 'b.bin': 'beta' }, 'empty-dir': {} } } })
  const source = join(dir, 'source')
  writeFileSync(join(source, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 7))   // streamed, not buffered
  chmodSync(join(source, 'a.txt'), 0o600)
  chmodSync(join(source, 'nested/deeper/b.bin'), 0o755)
  chmodSync(join(source, 'nested/empty-dir'), 0o700)
  // Whole seconds for every entry (tar keeps seconds): a time the test did not set is the clock's, and a
  // tree made across a second boundary then compared by seconds failed once under CI load.
  for (const [relative, seconds] of [['empty', 1_700_000_001], ['big.bin', 1_700_000_002], ['nested/deeper/b.bin', 1_700_000_003], ['nested/deeper', 1_700_000_004],
    ['nested/empty-dir', 1_700_000_005], ['a.txt', 1_600_000_000], ['nested', 1_500_000_000]] as const) utimesSync(join(source, relative), seconds, seconds)
  const target = join(dir, 'target')
  const result = await unpackLocalDirectory(target, packLocalDirectory(source))
  t.same(result, { fileCount: 4, dirCount: 3, sizeBytes: 5 + 4 + 3 * 1024 * 1024 + 5 })
  t.same(snapshot(target), snapshot(source), 'same names, bytes, modes and mtimes')
  t.equal(await codeOf(unpackLocalDirectory(target, packLocalDirectory(source))), 'GRN_EXISTS', 'existing files are refused')
  writeFileSync(join(source, 'a.txt'), 'changed')
  await unpackLocalDirectory(target, packLocalDirectory(source), { overwrite: true })
  t.equal(readFileSync(join(target, 'a.txt'), 'utf8'), 'changed', 'overwrite replaces')
  t.same(readdirSync(target).filter((n) => n.endsWith('.tmp')), [], 'no temp files left')
})

t.test('symlinks are refused when packing', async (t) => {
  const dir = t.testdir({ source: { 'a.txt': 'alpha' } })
  symlinkSync('/etc', join(dir, 'source', 'link'))
  t.equal(await codeOf(unpackLocalDirectory(join(dir, 'target'), packLocalDirectory(join(dir, 'source')))), 'GRN_INVALID_ARGUMENT')
})

t.test('a malicious tar writes nothing outside the target', async (t) => {
  const dir = t.testdir({ outside: { 'keep.txt': 'keep' } })
  const target = join(dir, 'target')
  const crafted = [
    [{ name: 'ok.txt', body: 'fine' }, { name: '../outside/evil.txt', body: 'evil' }],
    [{ name: '/tmp/absolute-evil.txt', body: 'evil' }],
    [{ name: 'a/b/../../../outside/evil.txt', body: 'evil' }],
    [{ name: 'link', type: 'symlink' as const, linkname: '../outside' }, { name: 'link/evil.txt', body: 'evil' }],
  ]
  for (const entries of crafted) {
    const code = await codeOf(unpackLocalDirectory(target, Readable.from([await craftTar(entries)])))
    t.ok(code === 'GRN_INVALID_PATH' || code === 'GRN_INVALID_ARGUMENT', `${entries.map((e) => e.name).join(', ')}: refused with ${code}`)
  }
  t.same(readdirSync(join(dir, 'outside')), ['keep.txt'], 'nothing was written outside')
  t.notOk(existsSync('/tmp/absolute-evil.txt'))
  t.equal(readFileSync(join(target, 'ok.txt'), 'utf8'), 'fine', 'entries before the bad one are inside the target')

  // A symlink planted inside the target is never followed.
  symlinkSync(join(dir, 'outside'), join(target, 'planted'))
  const code = await codeOf(unpackLocalDirectory(target, Readable.from([await craftTar([{ name: 'planted/evil.txt', body: 'evil' }])])))
  t.equal(code, 'GRN_NOT_DIR', 'a write through a planted symlink is refused')
  mkdirSync(join(target, 'real'))
  symlinkSync(join(dir, 'outside', 'keep.txt'), join(target, 'real', 'file.txt'))
  t.equal(await codeOf(unpackLocalDirectory(target, Readable.from([await craftTar([{ name: 'real/file.txt', body: 'evil' }])]))), 'GRN_EXISTS',
    'a symlink in place of a file is not written through')
  t.same(readdirSync(join(dir, 'outside')), ['keep.txt'])
  t.equal(readFileSync(join(dir, 'outside', 'keep.txt'), 'utf8'), 'keep', 'the outside file is untouched')
})

t.test('a truncated tar fails', async (t) => {
  const tar = await craftTar([{ name: 'a.txt', body: 'x'.repeat(5000) }])
  const dir = t.testdir({})
  t.equal(await codeOf(unpackLocalDirectory(join(dir, 't'), Readable.from([tar.subarray(0, 1500)]))), 'GRN_INVALID_ARGUMENT', 'refused')
  t.notOk(existsSync(join(dir, 't', 'a.txt')) && readFileSync(join(dir, 't', 'a.txt')).length === 5000, 'no whole-looking file')
  t.equal(await codeOf(unpackLocalDirectory(join(dir, 'u'), Readable.from([Buffer.from('this is not a tar'.repeat(64))]))), 'GRN_INVALID_ARGUMENT', 'garbage refused')
})

t.test('setuid, setgid and sticky bits are stripped unless preservePermissions', async (t) => {
  const dir = t.testdir()
  const entries = [{ name: 'shared', type: 'directory' as const, mode: 0o1777 }, { name: 'shared/tool', body: '#!/bin/sh\n', mode: 0o6755 }]
  const stripped = join(dir, 'stripped')
  await unpackLocalDirectory(stripped, Readable.from([await craftTar(entries)]))
  t.equal(statSync(join(stripped, 'shared', 'tool')).mode & 0o7777, 0o755, 'setuid and setgid gone, rwx kept')
  t.equal(statSync(join(stripped, 'shared')).mode & 0o7777, 0o777, 'sticky bit gone')
  const kept = join(dir, 'kept')
  await unpackLocalDirectory(kept, Readable.from([await craftTar(entries)]), { preservePermissions: true })
  t.equal(statSync(join(kept, 'shared', 'tool')).mode & 0o7777, 0o6755, 'kept when asked')
  t.equal(statSync(join(kept, 'shared')).mode & 0o7777, 0o1777)
})
