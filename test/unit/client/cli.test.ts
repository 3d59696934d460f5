// Proves the CLI: argv parsing refuses unknown commands, unknown flags, wrong argument counts and relative
// paths as usage errors (exit 2, one `granary: CODE: sentence` line); and, run in-process against the fake
// cluster, put/get/cat/ls/stat/mkdir/mv/rm/du/report do their job with exit 0, --json prints parseable data,
// refused or failed operations exit 1, and a failed get leaves no file behind. The built bin (dist) exits
// quietly on EPIPE.
import t, { type Test } from 'tap'
import { Readable, Writable } from 'node:stream'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, readdirSync, mkdirSync } from 'node:fs'
import fsp from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import { join } from 'node:path'
import { parseCommandLine, parseSize, generalHelp } from '../../../client/cli/args.js'
import { main, type CliIo } from '../../../client/cli/main.js'
import { connect } from '../../../client/index.js'
import { startFakeCluster } from './fake-cluster.js'
import { pattern, sha256, clientOptions } from './helpers.js'

const codeOfSync = (fn: () => unknown): string | undefined => { try { fn(); return undefined } catch (err) { return (err as { code?: string }).code } }

t.test('parsing: commands, flags, counts and paths', async (t) => {
  t.equal(codeOfSync(() => parseCommandLine([])), 'GRN_INVALID_ARGUMENT', 'no command')
  t.equal(codeOfSync(() => parseCommandLine(['frobnicate'])), 'GRN_INVALID_ARGUMENT', 'unknown command')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '--no-such-flag'])), 'GRN_INVALID_ARGUMENT', 'unknown flag')
  t.equal(codeOfSync(() => parseCommandLine(['put', 'only-one'])), 'GRN_INVALID_ARGUMENT', 'missing argument')
  t.equal(codeOfSync(() => parseCommandLine(['stat', '/a', '/b'])), 'GRN_INVALID_ARGUMENT', 'too many arguments')
  t.equal(codeOfSync(() => parseCommandLine(['ls', 'relative'])), 'GRN_INVALID_ARGUMENT', 'remote paths are absolute')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '/a/../b'])), 'GRN_INVALID_PATH')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '--master'])), 'GRN_INVALID_ARGUMENT', 'a string flag needs a value')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '--json=yes'])), 'GRN_INVALID_ARGUMENT', 'a boolean flag takes none')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '--master', 'ftp://x'])), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOfSync(() => parseCommandLine(['put', 'a', '/b', '--replication', '9'])), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOfSync(() => parseCommandLine(['put', 'a', '/b', '--chunk-size', '1000'])), 'GRN_INVALID_ARGUMENT', 'not a multiple of 64 KiB')
  t.equal(codeOfSync(() => parseCommandLine(['ls', '--deadline-ms', '0'])), 'GRN_INVALID_ARGUMENT')
  t.equal(codeOfSync(() => parseCommandLine(['--json', 'ls'])), 'GRN_INVALID_ARGUMENT', 'the command comes first')

  const put = parseCommandLine(['put', '--force', '-', '/x/y', '--chunk-size', '1M', '-m', 'http://127.0.0.1:9100,http://127.0.0.1:9101'])
  t.match(put, { kind: 'client', positionals: ['-', '/x/y'], values: { force: true, 'chunk-size': '1M' }, client: { masters: ['http://127.0.0.1:9100', 'http://127.0.0.1:9101'], json: false } })
  t.match(parseCommandLine(['ls', '-l', '--json', '/'], { GRANARY_MASTER: 'http://127.0.0.1:9200' }), { values: { long: true }, client: { masters: ['http://127.0.0.1:9200'], json: true } })
  t.match(parseCommandLine(['ls']), { client: { masters: ['http://127.0.0.1:9000'] } }, 'the default master')
  t.match(parseCommandLine(['ls', '--master', 'http://127.0.0.1:1'], { GRANARY_MASTER: 'http://127.0.0.1:2' }), { client: { masters: ['http://127.0.0.1:1'] } }, '--master beats the env')
  t.match(parseCommandLine(['master', '--port', '9001', '--data-dir', 'x']), { kind: 'server', argv: ['--port', '9001', '--data-dir', 'x'] }, 'server flags pass through')
  t.match(parseCommandLine(['master', '--help']), { kind: 'help', text: /--heartbeat-interval-ms/ })
  t.match(parseCommandLine(['--help']), { kind: 'help', text: /put .*copy a local file/ })
  t.match(parseCommandLine(['help', 'rm']), { kind: 'help', text: /--recursive/ })
  t.match(parseCommandLine(['get', '-h']), { kind: 'help', text: /Examples:\n {2}granary get/ })
  t.match(parseCommandLine(['get', '-fh']), { kind: 'help', text: /granary get/ }, 'help inside a short-flag group')
  t.match(parseCommandLine(['ls', '-lh', '/']), { kind: 'client', values: { long: true, human: true } }, 'ls -h: human sizes, not help')
  t.match(parseCommandLine(['du', '-h']), { kind: 'client', values: { human: true } })
  t.match(parseCommandLine(['ls', '--help']), { kind: 'help', text: /--recursive/ }, '--help stays help')
  t.match(parseCommandLine(['--version']), { kind: 'version' })
  t.match(parseCommandLine(['ls', 'gr:/a/']), { positionals: ['/a/'] }, 'gr: prefix stripped, the trailing / kept')
  t.match(parseCommandLine(['ls', 'granary://127.0.0.1:9300/a'], { GRANARY_MASTER: 'http://127.0.0.1:9000' }), { positionals: ['/a'], client: { masters: ['http://127.0.0.1:9300'] } }, 'a granary:// URL names the master')
  t.match(parseCommandLine(['ls', 'granary://127.0.0.1:9000/a'], { GRANARY_MASTER: 'http://127.0.0.1:9000,http://127.0.0.1:9001' }), { client: { masters: ['http://127.0.0.1:9000', 'http://127.0.0.1:9001'] } }, 'a URL in the list keeps the list')
  t.equal(codeOfSync(() => parseCommandLine(['cp', 'granary://127.0.0.1:1/a', 'granary://127.0.0.1:2/b'])), 'GRN_INVALID_ARGUMENT', 'two clusters in one command')
  t.equal(codeOfSync(() => parseCommandLine(['cp', 'a', 'b'])), 'GRN_INVALID_ARGUMENT', 'cp needs a Granary side')
  t.equal(codeOfSync(() => parseCommandLine(['cp', 'gr:x', 'b'])), 'GRN_INVALID_ARGUMENT', 'gr: paths are absolute')
  t.equal(codeOfSync(() => parseCommandLine(['cp', 'gr:/a/../b', 'b'])), 'GRN_INVALID_PATH')
  t.match(parseCommandLine(['cp', '-rn', 'a', 'gr:/b/']), { kind: 'client', positionals: ['a', 'gr:/b/'], values: { recursive: true, 'no-clobber': true } })
  t.equal(codeOfSync(() => parseCommandLine(['completion', 'tcsh'])), 'GRN_INVALID_ARGUMENT')
  t.match(parseCommandLine(['completion', 'fish']), { kind: 'local' })
  t.equal(parseSize('64M'), 64 * 1024 * 1024)
  t.equal(parseSize('1048576'), 1024 * 1024)
  t.equal(parseSize('128KiB'), 128 * 1024)
  t.equal(codeOfSync(() => parseSize('12 parsecs')), 'GRN_INVALID_ARGUMENT')
  t.match(generalHelp(), /Exit status \(server commands too\): 0 ok, 1 the operation failed, 2 usage error .*3 not found .*4 cluster unreachable.*130 interrupted/s)
})

interface Run { code: number, stdout: Buffer, stderr: string }

async function run (argv: string[], env: NodeJS.ProcessEnv, stdin: Readable = Readable.from([])): Promise<Run> {
  const out: Buffer[] = []
  let err = ''
  const stdout = new Writable({ write (piece: Buffer, _e, cb) { out.push(Buffer.from(piece)); cb() } })
  const stderr = new Writable({ write (piece: Buffer, _e, cb) { err += piece.toString(); cb() } })
  const io: CliIo = { stdin, stdout, stderr, env }
  const code = await main(argv, io)
  return { code, stdout: Buffer.concat(out), stderr: err }
}

async function setup (t: Test) {
  const cluster = await startFakeCluster(3)
  t.teardown(cluster.stop)
  const dir = t.testdir({})
  return { cluster, dir, env: { GRANARY_MASTER: cluster.master.url } }
}

t.test('put, get, cat, ls, stat round-trip files and print JSON', async (t) => {
  const { dir, env } = await setup(t)
  const data = pattern(200_000, 21)
  const source = join(dir, 'source.bin')
  writeFileSync(source, data)

  const put = await run(['put', source, '/in/deep/', '--chunk-size', '64K', '--json'], env)
  t.equal(put.code, 0, put.stderr)
  t.match(JSON.parse(put.stdout.toString()), { path: '/in/deep/source.bin', sizeBytes: data.length, chunkCount: 4, replication: 3 }, 'into the dir, under the local name')
  t.equal(put.stderr, '', 'nothing on stderr when it is not a terminal')

  const again = await run(['put', source, '/in/deep/source.bin'], env)
  t.equal(again.code, 1)
  t.match(again.stderr, /^granary: GRN_EXISTS: \/in\/deep\/source\.bin already exists \(use --force to replace it\)\n$/)
  const piped = await run(['put', '--force', '-', '/in/deep/source.bin'], env, Readable.from([Buffer.from('from stdin')]))
  t.equal(piped.code, 0, piped.stderr)
  t.equal(piped.stdout.length, 0, 'no output without --json')
  const cat = await run(['cat', '/in/deep/source.bin', '/in/deep/source.bin'], env)
  t.equal(cat.stdout.toString(), 'from stdinfrom stdin', 'cat concatenates')
  await run(['put', source, '/in/big.bin'], env)

  const target = join(dir, 'copy.bin')
  const get = await run(['get', '/in/big.bin', target, '--json'], env)
  t.equal(get.code, 0, get.stderr)
  t.equal(sha256(readFileSync(target)), sha256(data))
  t.match(JSON.parse(get.stdout.toString()), { path: '/in/big.bin', target, sizeBytes: data.length })
  t.equal((await run(['get', '/in/big.bin', target], env)).code, 1, 'an existing local file is refused')
  t.equal((await run(['get', '--force', '/in/big.bin', target], env)).code, 0)
  mkdirSync(join(dir, 'sub'))
  t.equal((await run(['get', '/in/big.bin', join(dir, 'sub')], env)).code, 0)
  t.ok(readFileSync(join(dir, 'sub', 'big.bin')).equals(data), 'a local folder gets the remote name')
  t.equal(sha256((await run(['get', '/in/big.bin', '-'], env)).stdout), sha256(data), 'get - writes stdout')

  const ls = await run(['ls', '/in'], env)
  t.equal(ls.stdout.toString(), 'big.bin\ndeep/\n')
  const long = await run(['ls', '-l', '/in'], env)
  t.match(long.stdout.toString(), /^file\s+200000\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+r3\s+big\.bin\ndir\s+-\s+.*deep\/\n$/)
  const json = JSON.parse((await run(['ls', '--json', '/in'], env)).stdout.toString()) as Array<{ path: string }>
  t.same(json.map((e) => e.path), ['/in/big.bin', '/in/deep'])
  t.same(JSON.parse((await run(['ls', '--json', '/in/big.bin'], env)).stdout.toString()).map((e: { path: string }) => e.path), ['/in/big.bin'], 'ls of a file lists the file')
  t.match(JSON.parse((await run(['stat', '--json', '/in/big.bin'], env)).stdout.toString()), { type: 'file', sizeBytes: data.length })
  t.match((await run(['stat', '/in/big.bin'], env)).stdout.toString(), /size\s+200000 bytes \(195 KiB\)/)
})

// Issue 14 item 10. A get renamed its temp file without fsyncing it, so a power cut could leave an empty
// target. Proves the order by spying on node:fs/promises (open, rename, FileHandle.sync; the ES module
// bindings re-synced with syncBuiltinESMExports): the temp file is fsynced before the rename, and the
// folder after it.
t.test('get fsyncs its temp file before the rename and the folder after it', async (t) => {
  const { dir, env } = await setup(t)
  t.equal((await run(['put', '-', '/f.bin'], env, Readable.from([pattern(100_000, 5)]))).code, 0)
  const probe = await fsp.open(join(dir, 'probe'), 'w')
  const fileHandle = Object.getPrototypeOf(probe) as { sync: () => Promise<void> }
  await probe.close()
  const original = { open: fsp.open, rename: fsp.rename, sync: fileHandle.sync }
  const pathOf = new WeakMap<object, string>()
  const events: string[] = []
  fsp.open = (async (path: Parameters<typeof fsp.open>[0], ...rest: unknown[]) => {
    const handle = await (original.open as (...a: unknown[]) => Promise<fsp.FileHandle>)(path, ...rest)
    pathOf.set(handle, String(path))
    return handle
  }) as typeof fsp.open
  fsp.rename = (async (source: Parameters<typeof fsp.rename>[0], target: Parameters<typeof fsp.rename>[1]) => {
    events.push(`rename ${String(source)} ${String(target)}`)
    await original.rename(source, target)
  }) as typeof fsp.rename
  fileHandle.sync = async function (this: object) {
    events.push(`sync ${pathOf.get(this) ?? '?'}`)
    await original.sync.call(this)
  }
  syncBuiltinESMExports()
  t.teardown(() => {
    fsp.open = original.open
    fsp.rename = original.rename
    fileHandle.sync = original.sync
    syncBuiltinESMExports()
  })

  const target = join(dir, 'copy.bin')
  const get = await run(['get', '/f.bin', target], env)
  t.equal(get.code, 0, get.stderr)
  t.ok(readFileSync(target).equals(pattern(100_000, 5)), 'the bytes arrived')
  const ours = events.filter((e) => e.includes(dir))
  const temp = /^sync (\S+\.granary-\d+-[0-9a-f]+\.tmp)$/.exec(ours[0] ?? '')?.[1]
  t.ok(temp !== undefined, 'the temp file is fsynced first')
  t.same(ours, [`sync ${temp}`, `rename ${temp} ${target}`, `sync ${dir}`], 'file fsync, rename, folder fsync, in that order')
})

t.test('mkdir, mv, rm, du, report; failures exit 1 with one line', async (t) => {
  const { env } = await setup(t)
  t.equal((await run(['mkdir', '-p', '/a/b', '/c'], env)).code, 0)
  const noParent = await run(['mkdir', '/x/y'], env)
  t.equal(noParent.code, 3, 'not found: exit 3')
  t.match(noParent.stderr, /^granary: GRN_NOT_FOUND: /)
  t.equal((await run(['mv', '/a/b', '/c'], env)).code, 0, 'mv into an existing directory')
  t.equal((await run(['mv', '/c/b', '/d'], env)).code, 0, 'mv to a new name')
  t.same(JSON.parse((await run(['ls', '--json', '/'], env)).stdout.toString()).map((e: { path: string }) => e.path), ['/a', '/c', '/d'])
  t.equal((await run(['put', '-', '/d/f.txt'], env, Readable.from([Buffer.from('12345')]))).code, 0)
  t.match(JSON.parse((await run(['du', '--json', '/d'], env)).stdout.toString()), { path: '/d', fileCount: 1, dirCount: 1, sizeBytes: 5 })
  t.match((await run(['du', '/d'], env)).stdout.toString(), /SIZE\s+BYTES\s+FILES\s+DIRS\s+PATH\n\s*5 B\s+5\s+1\s+1\s+\/d\n/)
  const rmDir = await run(['rm', '/d'], env)
  t.equal(rmDir.code, 1)
  t.match(rmDir.stderr, /GRN_NOT_EMPTY/)
  t.equal((await run(['rm', '-r', '/d'], env)).code, 0)
  t.equal((await run(['rm', '-f', '/d'], env)).code, 0, '-f: a missing path is fine')
  t.equal((await run(['stat', '/d'], env)).code, 3)
  const report = await run(['report'], env)
  t.match(report.stdout.toString(), /SERVER\s+URL\s+STATE[\s\S]*cs-000000000001\s+http:\/\/127\.0\.0\.1:\d+\s+alive[\s\S]*chunkservers\s+3 alive of 3/)
  t.equal(JSON.parse((await run(['report', '--json'], env)).stdout.toString()).servers.length, 3)

  const usage = await run(['ls', '--bogus'], env)
  t.equal(usage.code, 2)
  t.equal(usage.stderr, "granary: GRN_INVALID_ARGUMENT: unknown option '--bogus' for ls (see 'granary ls --help')\n")
  const help = await run(['--help'], env)
  t.equal(help.code, 0)
  t.match(help.stdout.toString(), /Commands:/)
  const unreachable = await run(['ls', '/', '--master', 'http://127.0.0.1:1', '--deadline-ms', '200'], {})
  t.equal(unreachable.code, 4, 'an unreachable cluster: exit 4')
  t.match(unreachable.stderr, /^granary: GRN_DEADLINE_EXCEEDED: stat \/ gave up after \d+ ms and \d+ attempts: GRN_UNAVAILABLE: .*\n$/)
})

t.test('a get that fails midway leaves no file behind', async (t) => {
  const { cluster, dir, env } = await setup(t)
  const fs = connect(clientOptions(cluster.master.url))
  t.teardown(async () => { await fs.close() })
  await fs.writeFile('/f.bin', pattern(200_000, 4))
  await fs.close()
  for (const cs of cluster.chunkservers) { cs.cutAfterBytes = 5000; cs.getFaults = Array(1000).fill('cut') }
  const target = join(dir, 'f.bin')
  const get = await run(['get', '/f.bin', target, '--deadline-ms', '300'], env)
  t.equal(get.code, 4, 'out of budget: exit 4')
  t.match(get.stderr, /^granary: GRN_DEADLINE_EXCEEDED: /)
  t.notOk(existsSync(target), 'no target file')
  t.same(readdirSync(dir), [], 'no temp file either')
  const missing = await run(['get', '/nope', target], env)
  t.equal(missing.code, 3)
  t.match(missing.stderr, /GRN_NOT_FOUND/)
  const missingLocal = await run(['put', join(dir, 'nope'), '/x'], env)
  t.equal(missingLocal.code, 3)
  t.match(missingLocal.stderr, /^granary: GRN_NOT_FOUND: no such file or directory: .*nope\n$/)
})

const bin = join(process.cwd(), 'dist', 'client', 'cli', 'cli.js')
t.test('the built bin: exit codes, and quiet on EPIPE', { skip: existsSync(bin) ? false : `build first (npx tsc -p .): ${bin} is missing` }, async (t) => {
  const { cluster, env } = await setup(t)
  const fs = connect(clientOptions(cluster.master.url))
  await fs.writeFile('/big.bin', pattern(4 * 1024 * 1024, 8))
  await fs.close()
  const spawnCli = (args: string[]): Promise<{ code: number | null, stderr: string }> => new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    // Like `| head -c 1`: take one piece of stdout, then close the pipe.
    child.stdout.once('data', () => { child.stdout.destroy() })
    child.on('close', (code) => { resolve({ code, stderr }) })
  })
  t.equal((await spawnCli(['frobnicate'])).code, 2)
  t.equal((await spawnCli(['--help'])).code, 0)
  const cat = await spawnCli(['cat', '/big.bin'])
  t.equal(cat.code, 0, 'exit 0 when the reader goes away')
  t.equal(cat.stderr, '', 'and nothing on stderr')
})

t.test('the progress bar draws only on a terminal and passes bytes through untouched', async (t) => {
  const { Progress, formatBytes, formatAge, formatTable } = await import('../../../client/cli/format.js')
  const { pipeline } = await import('node:stream/promises')
  let drawn = ''
  const tty = Object.assign(new Writable({ write (piece: Buffer, _e, cb) { drawn += piece.toString(); cb() } }), { isTTY: true, columns: 120 })
  t.equal(Progress.start(new Writable({ write (_p, _e, cb) { cb() } }), 'x', 10), undefined, 'no bar when not a TTY')
  const progress = Progress.start(tty, 'put /a', 300_000)
  t.ok(progress)
  const out: Buffer[] = []
  const data = pattern(300_000, 2)
  await pipeline(Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]), progress!.counter(), new Writable({ write (p: Buffer, _e, cb) { out.push(p); cb() } }))
  progress!.stop()
  t.ok(Buffer.concat(out).equals(data), 'the counter stage changes nothing')
  t.equal(progress!.bytes, 300_000)
  t.match(drawn, /put \/a .*100% \| 293 KiB \/ 293 KiB/)
  const unknown = Progress.start(tty, 'put /b', null)
  unknown!.stop()
  t.match(drawn, /put \/b 0 B \| /, 'stdin (size unknown): bytes and rate, no bar')
  t.equal(formatBytes(1023), '1023 B')
  t.equal(formatBytes(1536), '1.5 KiB')
  t.equal(formatBytes(5 * 1024 ** 4), '5.0 TiB')
  t.equal(formatAge(null), 'never')
  t.equal(formatAge(65_000), '65 s ago')
  t.equal(formatAge(600_000), '10 min ago')
  t.equal(formatTable([['a', '1'], ['bbb', '22']], new Set([1])), 'a     1\nbbb  22\n')
})
