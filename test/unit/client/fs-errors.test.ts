// Proves the node:fs-shaped errors of client.fs: each Granary code maps to the Node code in the table
// (docs/API.md), with node's negative errno, syscall, path/dest and message shape, and keeps granaryCode,
// retryable and the GranaryError as cause; GRN_ABORTED becomes node's AbortError (ABORT_ERR); errors that
// are not Granary's pass unchanged; and Stats/Dirent views report fixed modes and node's predicates.
import t from 'tap'
import { GranaryError, errorCodes } from '../../../shared/errors.js'
import { toFsError, nodeCodeOf, isFsError, type GranaryFsError } from '../../../client/fs-errors.js'
import { GranaryStats, GranaryDirent } from '../../../client/fs-stats.js'
import type { FileStat } from '../../../shared/protocol.js'
import type { InodeId } from '../../../shared/ids.js'

t.test('the mapping table', async (t) => {
  const expected: Record<string, [string, number | undefined]> = {
    GRN_NOT_FOUND: ['ENOENT', -2], GRN_EXISTS: ['EEXIST', -17], GRN_NOT_DIR: ['ENOTDIR', -20], GRN_IS_DIR: ['EISDIR', -21],
    GRN_NOT_EMPTY: ['ENOTEMPTY', -39], GRN_RENAME_INTO_SELF: ['EINVAL', -22], GRN_INVALID_PATH: ['EINVAL', -22],
    GRN_LEASE_HELD: ['EBUSY', -16], GRN_DEADLINE_EXCEEDED: ['ETIMEDOUT', -110], GRN_CHECKSUM_MISMATCH: ['EIO', -5],
  }
  for (const [granaryCode, [code, errno]] of Object.entries(expected)) {
    const err = toFsError(new GranaryError(granaryCode as 'GRN_NOT_FOUND', ['/a/b']), { syscall: 'open', path: '/a/b' }) as GranaryFsError
    t.match(err, { code, errno, syscall: 'open', path: '/a/b', granaryCode }, granaryCode)
    t.ok(isFsError(err))
    t.equal((err.cause as GranaryError).code, granaryCode, 'the GranaryError is the cause')
  }
  for (const code of errorCodes) {
    const err = toFsError(new GranaryError(code, []), { syscall: 'stat', path: '/x' }) as GranaryFsError
    t.equal(err.code, nodeCodeOf[code] ?? 'EIO', `${code} → ${err.code}`)
    t.equal(err.retryable, new GranaryError(code, []).retryable)
  }
})

t.test('message, dest, abort, and foreign errors', async (t) => {
  const missing = toFsError(new GranaryError('GRN_NOT_FOUND', ['/a']), { syscall: 'rename', path: '/a', dest: '/b' }) as GranaryFsError
  t.match(missing.message, /^ENOENT: no such file or directory, rename '\/a' -> '\/b' \(GRN_NOT_FOUND: /)
  t.equal(missing.dest, '/b')
  const aborted = toFsError(new GranaryError('GRN_ABORTED', ['stop']), { syscall: 'open', path: '/a' }) as GranaryFsError
  t.match(aborted, { name: 'AbortError', code: 'ABORT_ERR', granaryCode: 'GRN_ABORTED' })
  const bug = new TypeError('a bug')
  t.equal(toFsError(bug, { syscall: 'open' }), bug, 'not Granary\'s: unchanged')
  t.equal(toFsError(missing, { syscall: 'stat' }), missing, 'already node-shaped: unchanged')
})

t.test('Stats and Dirent views', async (t) => {
  const base: FileStat = { path: '/f', inodeId: 7 as InodeId, type: 'file', sizeBytes: 1000, mtimeMs: 1_700_000_000_123, replication: 3, chunkSizeBytes: 1 << 20, chunkCount: 1, mode: 0o644 }
  const file = new GranaryStats(base)
  t.match(file, { size: 1000, ino: 7, mode: 0o100644, nlink: 1, blocks: 2, mtimeMs: 1_700_000_000_123 })
  t.ok(file.isFile() && !file.isDirectory() && !file.isSymbolicLink())
  t.equal(file.mtime.getTime(), 1_700_000_000_123)
  t.equal(file.granary.replication, 3, 'the master\'s record is kept')
  const dir = new GranaryStats({ ...base, type: 'dir', sizeBytes: 0, mode: 0o700 })
  t.equal(dir.mode, 0o040700, 'a folder\'s stored bits are kept')
  t.equal(new GranaryStats({ ...base, mode: 0o755 }).mode, 0o100755, 'a file\'s stored bits are kept')
  t.ok(dir.isDirectory() && !dir.isFile())
  const entry = new GranaryDirent('f', '/d', 'file')
  t.match(entry, { name: 'f', parentPath: '/d', path: '/d' })
  t.ok(entry.isFile() && !entry.isDirectory())
})
