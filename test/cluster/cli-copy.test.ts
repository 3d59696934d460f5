// Proves `granary cp` and `granary sync` (issue 16 item 3) as a user runs them against a real cluster. cp moves a
// 200 MiB file local → Granary, Granary → Granary and Granary → local, each copy compared by sha256, and the
// stored checksum equals `checksum --local` of the source. sync run twice sends nothing the second time: the
// report says 0 copied and the files are the same ones (Granary inode ids and local inode numbers unchanged);
// a same-size edit is caught by the CRC32 (size alone would miss it); --dry-run changes nothing; --delete
// removes what the source lacks.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, writeFileSync, mkdirSync, statSync, rmSync, existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startCluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'

const MiB = 1024 * 1024

async function shaOfFile (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const piece of createReadStream(path)) hash.update(piece as Buffer)
  return hash.digest('hex')
}

t.test('cp of a 200 MiB file in each direction, compared by sha256', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const dir = t.testdir({})
  const source = join(dir, 'big.bin')
  writeFileSync(source, randomBytes(200 * MiB))
  const expected = await shaOfFile(source)

  const up = await granary(['cp', source, 'gr:/big/'], env)
  t.equal(up.code, 0, up.stderr)
  const across = await granary(['cp', 'gr:/big/big.bin', 'gr:/big/copy.bin'], env)
  t.equal(across.code, 0, across.stderr)
  const down = await granary(['cp', '--json', 'gr:/big/copy.bin', join(dir, 'back.bin')], env)
  t.equal(down.code, 0, down.stderr)
  t.match(JSON.parse(down.stdout.toString()), [{ source: '/big/copy.bin', target: join(dir, 'back.bin'), type: 'file', sizeBytes: 200 * MiB }])
  t.equal(await shaOfFile(join(dir, 'back.bin')), expected, 'local → Granary → Granary → local: the same bytes')
  const direct = await granary(['cp', 'gr:/big/big.bin', join(dir, 'direct.bin')], env)
  t.equal(direct.code, 0, direct.stderr)
  t.equal(await shaOfFile(join(dir, 'direct.bin')), expected, 'the first upload too')

  const sums = await granary(['checksum', '/big/big.bin', '/big/copy.bin'], env)
  const local = await granary(['checksum', '--local', source], env)
  const [a, b] = sums.stdout.toString().trim().split('\n').map((l) => l.split(/\s+/).slice(0, 2).join(' '))
  t.equal(a, local.stdout.toString().split(/\s+/).slice(0, 2).join(' '), 'stored CRC32 and size equal the local file\'s')
  t.equal(b, a, 'and the Granary → Granary copy has the same')
})

t.test('sync: a second run sends nothing; CRC32 catches a same-size edit; --dry-run and --delete', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const fs = cluster.client()
  const dir = t.testdir({})
  const tree = join(dir, 'tree')
  mkdirSync(join(tree, 'sub', 'empty'), { recursive: true })
  writeFileSync(join(tree, 'a.txt'), 'alpha')
  writeFileSync(join(tree, 'sub', 'b.bin'), randomBytes(3 * MiB + 7))
  writeFileSync(join(tree, 'sub', 'c.txt'), 'gamma')
  const sync = async (...args: string[]): Promise<{ copied: string[], deleted: string[], unchanged: number, bytesCopied: number }> => {
    const run = await granary(['sync', '--json', ...args], env)
    t.equal(run.code, 0, run.stderr)
    return JSON.parse(run.stdout.toString())
  }

  const first = await sync(tree, 'gr:/mirror')
  t.same(first.copied, ['a.txt', 'sub/b.bin', 'sub/c.txt'])
  t.equal(first.bytesCopied, 5 + 3 * MiB + 7 + 5)
  t.equal((await fs.stat('/mirror/sub/empty')).type, 'dir', 'empty folders too')
  const inodes = async (): Promise<number[]> => await Promise.all(['a.txt', 'sub/b.bin', 'sub/c.txt'].map(async (p) => Number((await fs.stat(`/mirror/${p}`)).inodeId)))
  const before = await inodes()
  const second = await sync(tree, 'gr:/mirror')
  t.same(second.copied, [], 'the second sync copies nothing')
  t.equal(second.bytesCopied, 0)
  t.equal(second.unchanged, 3)
  t.same(await inodes(), before, 'and replaced nothing: the same files')
  const human = await granary(['sync', tree, 'gr:/mirror'], env)
  t.equal(human.stdout.toString(), 'sync: copied 0 files (0 B), 3 unchanged, deleted 0\n')

  writeFileSync(join(tree, 'sub', 'c.txt'), 'GAMMA')   // same size, other bytes
  const third = await sync(tree, 'gr:/mirror')
  t.same(third.copied, ['sub/c.txt'], 'a same-size edit is caught by the CRC32')
  t.equal((await fs.readFile('/mirror/sub/c.txt')).toString(), 'GAMMA')

  rmSync(join(tree, 'a.txt'))
  const dry = await sync('--delete', '--dry-run', tree, 'gr:/mirror')
  t.same(dry.deleted, ['a.txt'])
  t.equal((await fs.stat('/mirror/a.txt')).type, 'file', '--dry-run deleted nothing')
  const humanDry = await granary(['sync', '--delete', '--dry-run', tree, 'gr:/mirror'], env)
  t.match(humanDry.stdout.toString(), /^would delete gr:\/mirror\/a\.txt\n/)
  t.same((await sync('--delete', tree, 'gr:/mirror')).deleted, ['a.txt'])
  await t.rejects(fs.stat('/mirror/a.txt'), { code: 'GRN_NOT_FOUND' })

  // Granary → local, twice: the second leaves the local files alone (same inode numbers).
  const back = join(dir, 'back')
  t.same((await sync('gr:/mirror', back)).copied, ['sub/b.bin', 'sub/c.txt'])
  t.ok(existsSync(join(back, 'sub', 'empty')))
  t.equal(await shaOfFile(join(back, 'sub', 'b.bin')), await shaOfFile(join(tree, 'sub', 'b.bin')))
  const ino = statSync(join(back, 'sub', 'b.bin')).ino
  const again = await sync('gr:/mirror', back)
  t.same(again.copied, [], 'Granary → local: the second sync copies nothing')
  t.equal(statSync(join(back, 'sub', 'b.bin')).ino, ino, 'the local file is the same one')
  t.equal(readFileSync(join(back, 'sub', 'c.txt'), 'utf8'), 'GAMMA')

  const missing = await granary(['sync', join(dir, 'nope'), 'gr:/mirror'], env)
  t.equal(missing.code, 3, 'a missing source exits 3')
  const file = await granary(['sync', join(tree, 'sub', 'c.txt'), 'gr:/mirror'], env)
  t.equal(file.code, 1)
  t.match(file.stderr, /GRN_NOT_DIR: .*sync takes folders/)
})
