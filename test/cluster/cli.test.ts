// Proves the `granary` CLI works as a user runs it (spawned, talking to a real cluster): put/get round-trip
// by sha256 through files and through `-` (stdin/stdout), --json output parses, exit codes mean 0 ok /
// 1 failed / 2 usage / 3 not found, errors print their stable code, and put refuses to overwrite without --force.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { startCluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'


const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

t.test('granary CLI end to end', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const dir = t.testdir({})
  const data = randomBytes(3 * 1024 * 1024 + 17)
  const source = join(dir, 'source.bin')
  writeFileSync(source, data)

  const put = await granary(['put', source, '/cli/one.bin', '--chunk-size', String(1024 * 1024)], env)
  t.equal(put.code, 0, put.stderr)
  const target = join(dir, 'copy.bin')
  const get = await granary(['get', '/cli/one.bin', target], env)
  t.equal(get.code, 0, get.stderr)
  t.equal(sha(readFileSync(target)), sha(data), 'put then get gives the same bytes')

  const piped = await granary(['put', '-', '/cli/piped.bin'], env, data)
  t.equal(piped.code, 0, piped.stderr)
  const cat = await granary(['cat', '/cli/piped.bin'], env)
  t.equal(cat.code, 0)
  t.equal(sha(cat.stdout), sha(data), 'stdin to stdout round trip')
  const getDash = await granary(['get', '/cli/piped.bin', '-'], env)
  t.equal(sha(getDash.stdout), sha(data), 'get - writes to stdout')

  const ls = await granary(['ls', '--json', '/cli'], env)
  t.equal(ls.code, 0, ls.stderr)
  const listed = JSON.parse(ls.stdout.toString()) as Array<{ path: string, sizeBytes: number }> | { entries: Array<{ path: string, sizeBytes: number }> }
  const entries = Array.isArray(listed) ? listed : listed.entries
  t.same(entries.map((e) => e.path).sort(), ['/cli/one.bin', '/cli/piped.bin'])
  t.ok(entries.every((e) => e.sizeBytes === data.length))
  const stat = await granary(['stat', '--json', '/cli/one.bin'], env)
  t.equal((JSON.parse(stat.stdout.toString()) as { sizeBytes: number }).sizeBytes, data.length)

  const again = await granary(['put', source, '/cli/one.bin'], env)
  t.equal(again.code, 1, 'put onto an existing file fails')
  t.match(again.stderr, /GRN_EXISTS/)
  writeFileSync(source, Buffer.from('replaced'))
  const forced = await granary(['put', '--force', source, '/cli/one.bin'], env)
  t.equal(forced.code, 0, forced.stderr)
  t.equal((await granary(['cat', '/cli/one.bin'], env)).stdout.toString(), 'replaced')

  const missing = await granary(['get', '/cli/nope', join(dir, 'nope')], env)
  t.equal(missing.code, 3, 'not found: exit 3')
  t.match(missing.stderr, /GRN_NOT_FOUND/)
  t.notOk(existsSync(join(dir, 'nope')), 'a failed get leaves no file')

  const usage = await granary(['frobnicate'], env)
  t.equal(usage.code, 2, 'unknown command is a usage error')
  const badFlag = await granary(['ls', '--no-such-flag', '/'], env)
  t.equal(badFlag.code, 2, 'unknown flag is a usage error')
  const help = await granary(['--help'], env)
  t.equal(help.code, 0)
  t.match(help.stdout.toString(), /put/)

  t.equal((await granary(['mkdir', '-p', '/cli/x/y'], env)).code, 0)
  t.equal((await granary(['mv', '/cli/x', '/cli/z'], env)).code, 0)
  const du = await granary(['du', '--json', '/cli'], env)
  t.equal((JSON.parse(du.stdout.toString()) as { sizeBytes: number }).sizeBytes, data.length + 'replaced'.length)
  t.equal((await granary(['rm', '/cli/z'], env)).code, 1, 'rm of a non-empty dir without -r fails')
  t.equal((await granary(['rm', '-r', '/cli'], env)).code, 0)
  t.equal((await granary(['stat', '/cli'], env)).code, 3)
  const report = await granary(['report', '--json'], env)
  t.equal(report.code, 0, report.stderr)
  t.equal((JSON.parse(report.stdout.toString()) as { servers: Array<{ alive: boolean }> }).servers.filter((s) => s.alive).length, 3)
})
