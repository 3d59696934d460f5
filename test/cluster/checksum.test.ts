// Proves whole-file checksums (issue 16 item 2) as a user meets them: a file of several chunks put with the CLI
// gets a CRC32 combined from its chunks at complete (no second pass over the bytes); `granary checksum` prints
// it, `granary checksum --local` computes the same from the local file, the library's stat returns it, and it
// equals zlib's CRC32 of the bytes. A different file gets a different one; errors keep their codes.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { startCluster } from '../../testing/cluster.js'
import { granary } from '../helpers/cli.js'

t.test('granary checksum: the stored copy and the local file agree, across chunks', async (t) => {
  const cluster = await startCluster({ chunkservers: 3, test: t })
  const env = { GRANARY_MASTER: cluster.masters.join(',') }
  const dir = t.testdir({})
  const data = randomBytes(5 * 1024 * 1024 + 123)   // six chunks of 1 MiB, the last one short
  const source = join(dir, 'source.bin')
  writeFileSync(source, data)
  const expected = (crc32(data) >>> 0).toString(16).padStart(8, '0')

  const put = await granary(['put', source, '/sums/a.bin', '--chunk-size', String(1024 * 1024)], env)
  t.equal(put.code, 0, put.stderr)
  const remote = await granary(['checksum', '/sums/a.bin'], env)
  t.equal(remote.code, 0, remote.stderr)
  const local = await granary(['checksum', '--local', source], env)
  t.equal(local.code, 0, local.stderr)
  const [remoteCrc, remoteSize] = remote.stdout.toString().trim().split(/\s+/)
  const [localCrc, localSize] = local.stdout.toString().trim().split(/\s+/)
  t.equal(remoteCrc, expected, 'the stored checksum is the CRC32 of the bytes')
  t.equal(localCrc, remoteCrc, '--local computes the same for the local file')
  t.equal(remoteSize, String(data.length))
  t.equal(localSize, remoteSize)

  const fs = cluster.client()
  const stat = await fs.stat('/sums/a.bin')
  t.equal(stat.chunkCount, 6)
  t.equal(stat.crc32, crc32(data) >>> 0, 'the library returns it with stat')
  t.match((await granary(['stat', '/sums/a.bin'], env)).stdout.toString(), new RegExp(`crc32\\s+${expected}`), 'stat shows it')

  const other = Buffer.from(data)
  other[data.length - 1] = (other[data.length - 1] as number) ^ 1
  await fs.writeFile('/sums/b.bin', other, { chunkSizeBytes: 1024 * 1024 })
  const json = await granary(['checksum', '--json', '/sums/a.bin', '/sums/b.bin'], env)
  const rows = JSON.parse(json.stdout.toString()) as Array<{ path: string, crc32: number, sizeBytes: number }>
  t.equal(rows.length, 2)
  t.not(rows[0]?.crc32, rows[1]?.crc32, 'one flipped bit, another checksum')
  t.equal(rows[1]?.crc32, crc32(other) >>> 0)

  const empty = await fs.writeFile('/sums/empty', Buffer.alloc(0))
  t.equal(empty.crc32, 0, 'an empty file: CRC32 0')
  const missing = await granary(['checksum', '/sums/nope'], env)
  t.not(missing.code, 0)
  t.match(missing.stderr, /GRN_NOT_FOUND/)
  const folder = await granary(['checksum', '/sums'], env)
  t.match(folder.stderr, /GRN_IS_DIR/)
  const noLocal = await granary(['checksum', '--local', join(dir, 'nope')], env)
  t.match(noLocal.stderr, /GRN_NOT_FOUND/)
})
