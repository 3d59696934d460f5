// Proves the CLI behaves like the tools people know (issue 16 item 3), spawned as a user runs it against a real
// cluster: exit statuses (0 ok, 2 usage, 3 not found, 4 unreachable) the same for server commands; --version;
// --json errors as one JSON object on stderr; -q; ls -R, ls -lh and du -h (human sizes, help stays --help);
// remote globs (*, ?, [..], **) on ls, rm, get, du and cp, with a pattern matching nothing exiting 3; gr:/ and
// granary://host:port/ naming the Granary side; cp with several sources, -r and -n; and completion scripts
// generated from the command table (bash run for real; zsh and fish checked when installed).
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { createServer, type Socket } from 'node:net'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, mkdirSync, existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { startCluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'
import { cliPath } from '../../shared/process.js'

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')
const lines = (b: Buffer): string[] => b.toString().split('\n').filter((l) => l.length > 0)

t.test('exit statuses, --version, --json errors and server usage errors', async (t) => {
  const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version
  const v = await granary(['--version'], {})
  t.equal(v.code, 0)
  t.match(v.stdout.toString(), new RegExp(`^granary ${version.replace(/\./g, '\\.')} \\(node v`))
  const usage = await granary(['ls', '--bogus', '--json'], {})
  t.equal(usage.code, 2)
  t.match(JSON.parse(usage.stderr), { code: 'GRN_INVALID_ARGUMENT', exitCode: 2, message: /unknown option '--bogus'/ }, 'a usage error as JSON')
  const dead = await granary(['ls', '/', '--json', '--master', 'http://127.0.0.1:1', '--deadline-ms', '300'], {})
  t.equal(dead.code, 4, 'cluster unreachable: exit 4')
  t.match(JSON.parse(dead.stderr), { code: 'GRN_DEADLINE_EXCEEDED', exitCode: 4, retryable: false, statusCode: 504 })
  for (const server of ['master', 'shadow', 'chunkserver', 'up', 'chaos']) {
    const run = await granary([server, '--no-such-flag'], {})
    t.equal(run.code, 2, `${server}: an unknown flag is a usage error`)
    t.match(run.stderr, new RegExp(`^granary: GRN_INVALID_ARGUMENT: .*no-such-flag.*see 'granary ${server} --help'`), server)
    t.notMatch(run.stderr, /ERR_PARSE_ARGS/)
  }
  const badValue = await granary(['master', '--port', 'abc'], {})
  t.equal(badValue.code, 2, 'a bad flag value too')
})

// Ctrl-C: a master that accepts and never answers holds `granary ls` in its request; once the request has
// reached it (the condition waited on), SIGINT aborts the command, which exits 130 with GRN_ABORTED.
t.test('Ctrl-C exits 130', async (t) => {
  const sockets: Socket[] = []
  let connected: () => void = () => {}
  const reached = new Promise<void>((resolve) => { connected = resolve })
  const server = createServer((socket) => { sockets.push(socket); connected() })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  const { port } = server.address() as { port: number }
  const child = spawn(process.execPath, [cliPath, 'ls', '/', '--deadline-ms', '60000'], { env: { ...process.env, GRANARY_MASTER: `http://127.0.0.1:${port}` }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => { child.on('close', resolve) })
  await reached
  child.kill('SIGINT')
  t.equal(await exited, 130)
  t.match(stderr, /GRN_ABORTED/)
})

t.test('ls -R/-lh, du -h, globs, gr:/ and granary:// names, cp several/-r/-n, -q', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const fs = cluster.client()
  const dir = t.testdir({})
  const big = randomBytes(3 * 1024 * 1024 + 5)
  for (const [path, data] of [['/g/a1.txt', 'a1'], ['/g/a2.txt', 'a2'], ['/g/b1.log', 'b1'], ['/g/sub/a3.txt', 'a3'], ['/g/sub/deep/c.txt', 'c'], ['/g/big.bin', big]] as const) {
    await fs.mkdir(path.slice(0, path.lastIndexOf('/')), { recursive: true })
    await fs.writeFile(path, data)
  }

  const recursive = await granary(['ls', '-R', '/g'], env)
  t.equal(recursive.code, 0, recursive.stderr)
  t.same(lines(recursive.stdout), ['a1.txt', 'a2.txt', 'b1.log', 'big.bin', 'sub/', 'sub/a3.txt', 'sub/deep/', 'sub/deep/c.txt'], 'ls -R: breadth-first, relative names')
  const human = await granary(['ls', '-lh', '/g'], env)
  t.equal(human.code, 0, 'ls -lh lists (it printed help before)')
  t.match(human.stdout.toString(), /file\s+3\.0 MiB\s+.*big\.bin/)
  t.match((await granary(['du', '-h', '/g'], env)).stdout.toString(), /^3\.0 MiB\s+\/g\n$/)
  t.match((await granary(['ls', '--help'], env)).stdout.toString(), /-R, --recursive/)

  // Globs, expanded by listing.
  t.same(lines((await granary(['ls', '/g/a?.txt'], env)).stdout), ['/g/a1.txt', '/g/a2.txt'], '?')
  t.same(lines((await granary(['ls', 'gr:/g/*.log'], env)).stdout), ['/g/b1.log'], '* with a gr: prefix')
  t.same(lines((await granary(['ls', '/g/[!a]*'], env)).stdout), ['/g/b1.log', '/g/big.bin', '/g/sub/'], '[!..] (folders end with /)')
  t.same(lines((await granary(['ls', '/g/**/*.txt'], env)).stdout), ['/g/a1.txt', '/g/a2.txt', '/g/sub/a3.txt', '/g/sub/deep/c.txt'], '** spans zero or more folders')
  t.same((JSON.parse((await granary(['ls', '--json', '/g/*/a*'], env)).stdout.toString()) as Array<{ path: string }>).map((e) => e.path), ['/g/sub/a3.txt'])
  t.same((JSON.parse((await granary(['du', '--json', '/g/a*'], env)).stdout.toString()) as Array<{ path: string, sizeBytes: number }>).map((u) => [u.path, u.sizeBytes]), [['/g/a1.txt', 2], ['/g/a2.txt', 2]])
  for (const args of [['ls', '/g/*.pdf'], ['rm', '/g/zz*'], ['get', '/g/*.pdf', dir], ['du', '/g/**/*.pdf'], ['cp', 'gr:/g/*.pdf', dir]]) {
    const none = await granary(args, env)
    t.equal(none.code, 3, `${args.join(' ')}: a glob matching nothing exits 3`)
    t.match(none.stderr, /GRN_NOT_FOUND: .*matches nothing/)
  }
  const fetched = join(dir, 'fetched')
  mkdirSync(fetched)
  t.equal((await granary(['get', '/g/a*.txt', fetched], env)).code, 0)
  t.same(readdirSync(fetched).sort(), ['a1.txt', 'a2.txt'], 'get of a glob: every match into the folder')
  t.equal(readFileSync(join(fetched, 'a2.txt'), 'utf8'), 'a2')

  // cp: several sources into a folder, from a granary:// URL, -n, -r, and Granary → Granary.
  const url = `granary://${new URL(cluster.masters[0] as string).host}`
  const several = await granary(['cp', `${url}/g/a1.txt`, 'gr:/g/b1.log', join(dir, 'several')], { GRANARY_MASTER: 'http://127.0.0.1:1' })
  t.equal(several.code, 0, `the URL names the cluster (GRANARY_MASTER points nowhere): ${several.stderr}`)
  t.same(readdirSync(join(dir, 'several')).sort(), ['a1.txt', 'b1.log'], 'several sources: TARGET is a folder, made')
  const clobber = await granary(['cp', '-n', 'gr:/g/a2.txt', join(dir, 'several', 'a1.txt')], env)
  t.equal(clobber.code, 1)
  t.match(clobber.stderr, /GRN_EXISTS/)
  t.equal(readFileSync(join(dir, 'several', 'a1.txt'), 'utf8'), 'a1', '-n left the file alone')
  t.equal((await granary(['cp', 'gr:/g/a2.txt', join(dir, 'several', 'a1.txt')], env)).code, 0)
  t.equal(readFileSync(join(dir, 'several', 'a1.txt'), 'utf8'), 'a2', 'without -n an existing file is replaced, like cp(1)')
  const folder = await granary(['cp', 'gr:/g/sub', dir], env)
  t.equal(folder.code, 1)
  t.match(folder.stderr, /GRN_IS_DIR.*cp -r/)
  t.equal((await granary(['cp', '-r', 'gr:/g/sub', dir], env)).code, 0)
  t.equal(readFileSync(join(dir, 'sub', 'deep', 'c.txt'), 'utf8'), 'c', 'cp -r Granary → local')
  t.equal((await granary(['cp', '-r', join(dir, 'sub'), 'gr:/up/'], env)).code, 0)
  t.equal((await fs.readFile('/up/sub/deep/c.txt')).toString(), 'c', 'cp -r local → Granary, into an existing-or-/ folder under its name')
  t.equal((await granary(['cp', '-r', 'gr:/up/sub', 'gr:/copy'], env)).code, 0)
  t.same(await fs.readdir('/copy'), ['a3.txt', 'deep'], 'cp -r Granary → Granary: a missing TARGET becomes the copy')
  t.equal((await granary(['cp', '-r', 'gr:/copy', 'gr:/copy/inside'], env)).code, 1, 'not into itself')
  t.equal((await granary(['cp', 'gr:/g/big.bin', 'gr:/g/big2.bin'], env)).code, 0)
  t.equal(sha(await fs.readFile('/g/big2.bin')), sha(big))
  t.equal((await granary(['cp', join(dir, 'x'), join(dir, 'y')], env)).code, 2, 'local → local is a usage error')

  // rm of a glob; -q keeps rm's trash notes off stdout.
  const quiet = await granary(['rm', '-q', '/g/a*.txt'], env)
  t.equal(quiet.code, 0, quiet.stderr)
  t.equal(quiet.stdout.length, 0, '-q: no notes')
  t.same(await fs.readdir('/g'), ['b1.log', 'big.bin', 'big2.bin', 'sub'])
  const loud = await granary(['rm', '/g/b?.log'], env)
  t.match(loud.stdout.toString(), /^moved \/g\/b1\.log to \/\.trash\//, 'without -q rm says where it went')
})

t.test('completion scripts come from the command table', async (t) => {
  const bash = await granary(['completion', 'bash'], {})
  t.equal(bash.code, 0)
  const script = join(t.testdir({}), 'granary.bash')
  writeFileSync(script, bash.stdout)
  const complete = (words: string[]): string[] => {
    const line = `source ${JSON.stringify(script)}; COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')}); COMP_CWORD=${words.length - 1}; _granary; printf '%s\\n' "\${COMPREPLY[@]}"`
    const run = spawnSync('bash', ['-c', line], { encoding: 'utf8' })
    t.equal(run.status, 0, run.stderr)
    return run.stdout.split('\n').filter((l) => l.length > 0)
  }
  t.ok(complete(['granary', 's']).includes('sync'), 'commands complete')
  t.ok(complete(['granary', 's']).includes('stat'))
  t.same(complete(['granary', 'ls', '--rec']), ['--recursive'], "a command's own options")
  t.ok(complete(['granary', 'cp', '--']).includes('--no-clobber'))
  t.ok(complete(['granary', 'cp', '--']).includes('--quiet'), 'and the common ones')
  t.same(complete(['granary', 'completion', 'f']), ['fish'])
  for (const shell of ['zsh', 'fish'] as const) {
    const text = await granary(['completion', shell], {})
    t.equal(text.code, 0)
    t.match(text.stdout.toString(), /sync/)
    t.match(text.stdout.toString(), /no-clobber/)
    const installed = spawnSync('sh', ['-c', `command -v ${shell}`]).status === 0
    if (!installed) { t.comment(`${shell} is not installed: syntax not checked`); continue }
    const file = join(t.testdir({}), `granary.${shell}`)
    writeFileSync(file, text.stdout)
    const check = spawnSync(shell, ['-n', file], { encoding: 'utf8' })
    t.equal(check.status, 0, `${shell} -n: ${check.stderr}`)
  }
  t.ok(existsSync(cliPath))
})
