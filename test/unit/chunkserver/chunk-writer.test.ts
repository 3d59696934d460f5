// Proves the chunk writer's ordering promises (chunkserver/chunk-writer.ts): Buffers pushed before its temp file
// is open are written in order once it is; a small chunk of known length reaches the disk in ONE writev with its
// trailer; a chunk past holdBytesMax, or of unknown length, streams as it arrives; a temp file that cannot be
// opened fails the write through onError and finish(); an abort during the open leaves no temp file; a held chunk's
// temp file is O_DSYNC (its one writev returns durable, no fsync follows), a streamed one is fsynced at the end.
import t, { type Test } from 'tap'
import fs, { constants, existsSync, fstatSync } from 'node:fs'
import fsp, { mkdir, open, readFile, readdir, readlink } from 'node:fs/promises'
import { syncBuiltinESMExports } from 'node:module'
import { join } from 'node:path'
import { ChunkWriter, holdBytesMax } from '../../../chunkserver/chunk-writer.js'

// Counts calls of target[method] while the test runs (`counts` picks which); builtin modules' ESM exports are
// synced both ways, so the writer's named imports (node:fs/promises) see the patch. Every file operation the chunk
// writer makes goes through FileHandle methods, node:fs/promises or node:fs.
function countCalls (t: Test, target: object, method: string, counts: (self: unknown, args: unknown[]) => boolean = () => true): { calls: number } {
  const methods = target as Record<string, (...args: unknown[]) => unknown>
  const original = methods[method] as (...args: unknown[]) => unknown
  const counter = { calls: 0 }
  methods[method] = function (this: unknown, ...args: unknown[]) {
    if (counts(this, args)) counter.calls++
    return original.apply(this, args)
  }
  syncBuiltinESMExports()
  t.teardown(() => { methods[method] = original; syncBuiltinESMExports() })
  return counter
}

// FileHandle's prototype, from a probe handle.
async function fileHandleProto (dir: string): Promise<object> {
  const probe = await open(join(dir, 'probe'), 'w')
  await probe.close()
  return Object.getPrototypeOf(probe) as object
}

// fsyncs of files, not of folders (the folder fsync after a rename is folder-sync.ts's): by a FileHandle's fd, or
// by a descriptor passed first.
const isFile = (fd: number): boolean => !fstatSync(fd).isDirectory()
const handleIsFile = (self: unknown): boolean => isFile((self as { fd: number }).fd)
const fdIsFile = (_self: unknown, args: unknown[]): boolean => isFile(args[0] as number)
// A path argument inside `folder`.
const pathIn = (folder: string) => (_self: unknown, args: unknown[]): boolean => String(args[0]).startsWith(folder)

// The open flags of this process's descriptor for `path` (Linux /proc), once the writer's open has run; -1 if it
// never shows within attemptsMax turns of the event loop.
async function openFlagsOf (path: string, attemptsMax = 10_000): Promise<number> {
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    for (const fd of await readdir('/proc/self/fd')) {
      const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
      if (target !== path) continue
      const flags = /^flags:\s+([0-7]+)$/m.exec(await readFile(`/proc/self/fdinfo/${fd}`, 'utf8'))
      if (flags !== null) return parseInt(flags[1] as string, 8)
    }
    await new Promise((resolve) => setImmediate(resolve))
  }
  return -1
}

async function folders (t: Test): Promise<{ dir: string, tmp: string, final: string }> {
  const dir = t.testdir()
  await mkdir(join(dir, 'tmp'))
  return { dir, tmp: join(dir, 'tmp'), final: join(dir, 'chunks', 'ab') }
}

t.test('a small chunk of known length: pushed before the open ends, written once with its trailer, renamed', async (t) => {
  const { dir, tmp, final } = await folders(t)
  const handleWrites = countCalls(t, await fileHandleProto(dir), 'writev')
  const fdWrites = countCalls(t, fs, 'writev')
  const data = [Buffer.alloc(1000, 1), Buffer.alloc(3096, 2)]
  const writer = ChunkWriter.start(join(tmp, 'c.tmp'), 1 << 20, 4096)
  for (const buf of data) writer.push(buf)      // the open has not run yet: nothing is lost or reordered
  const trailer = Buffer.from('TRAILER')
  await writer.finish(trailer, 4096, join(final, 'c.chunk'))
  t.equal(handleWrites.calls + fdWrites.calls, 1, 'data and trailer went out in one writev')
  t.same(await readFile(join(final, 'c.chunk')), Buffer.concat([...data, trailer]))
  t.same(await readdir(tmp), [], 'the temp name is gone')
})

t.test('a chunk past holdBytesMax, or of unknown length, streams as it arrives', async (t) => {
  const { dir, tmp, final } = await folders(t)
  const counter = countCalls(t, await fileHandleProto(dir), 'writev')
  const big = Buffer.alloc(holdBytesMax + 1, 3)
  const writer = ChunkWriter.start(join(tmp, 'big.tmp'), 1 << 20, big.length)
  writer.push(big)
  await writer.finish(Buffer.from('T'), big.length, join(final, 'big.chunk'))
  t.equal(counter.calls, 2, 'the data, then the trailer')
  t.equal((await readFile(join(final, 'big.chunk'))).length, big.length + 1)
  counter.calls = 0
  const unknown = ChunkWriter.start(join(tmp, 'u.tmp'), 1 << 20)
  unknown.push(Buffer.alloc(10, 4))
  await unknown.finish(Buffer.from('T'), 10, join(final, 'u.chunk'))
  t.equal(counter.calls, 2, 'a length nobody gave is not held')
  t.same(await readFile(join(final, 'u.chunk')), Buffer.concat([Buffer.alloc(10, 4), Buffer.from('T')]))
})

t.test('a temp file that cannot be opened fails the write: onError, then finish rejects', async (t) => {
  const dir = t.testdir()
  for (const lengthBytes of [4, null]) {
    const writer = ChunkWriter.start(join(dir, 'missing-folder', 'c.tmp'), 1 << 20, lengthBytes)
    const errors: Error[] = []
    writer.onError = (err) => { errors.push(err) }
    writer.push(Buffer.from('abcd'))
    await t.rejects(writer.finish(Buffer.from('T'), 4, join(dir, 'final', 'c.chunk')), { code: 'ENOENT' })
    t.equal(errors.length, 1, `onError once (length ${String(lengthBytes)})`)
    await writer.abort()   // safe after a failure
  }
  t.same(await readdir(dir), [], 'nothing was created')
})

t.test('an abort while the open is still running closes and removes the temp file', async (t) => {
  const { tmp } = await folders(t)
  const writer = ChunkWriter.start(join(tmp, 'a.tmp'), 1 << 20, 4)
  writer.push(Buffer.from('abcd'))
  await writer.abort()
  t.same(await readdir(tmp), [], 'no temp file left')
})

t.test('a held chunk is made durable by its one O_DSYNC writev; a streamed chunk by an fsync at the end', { skip: process.platform !== 'linux' && 'reads open flags from /proc' }, async (t) => {
  const { dir, tmp, final } = await folders(t)
  const proto = await fileHandleProto(dir)
  const counters = [countCalls(t, proto, 'sync', handleIsFile), countCalls(t, proto, 'datasync', handleIsFile),
    ...['fsync', 'fdatasync', 'fsyncSync', 'fdatasyncSync'].map((name) => countCalls(t, fs, name, fdIsFile))]
  const syncs = { get calls () { return counters.reduce((sum, counter) => sum + counter.calls, 0) } }
  const heldPath = join(tmp, 'held.tmp')
  const held = ChunkWriter.start(heldPath, 1 << 20, 4096)
  const heldFlags = await openFlagsOf(heldPath)
  t.not(heldFlags, -1, 'the held chunk\'s temp file was found open')
  t.equal(heldFlags & constants.O_DSYNC, constants.O_DSYNC, 'opened O_DSYNC')
  held.push(Buffer.alloc(4096, 5))
  await held.finish(Buffer.from('T'), 4096, join(final, 'held.chunk'))
  t.equal(syncs.calls, 0, 'no fsync after the synchronized writev')
  const streamedPath = join(tmp, 'streamed.tmp')
  const streamed = ChunkWriter.start(streamedPath, 1 << 20)
  const streamedFlags = await openFlagsOf(streamedPath)
  t.not(streamedFlags, -1, 'the streamed chunk\'s temp file was found open')
  t.equal(streamedFlags & constants.O_DSYNC, 0, 'a streamed chunk\'s writes are not each synchronized')
  streamed.push(Buffer.alloc(10, 6))
  await streamed.finish(Buffer.from('T'), 10, join(final, 'streamed.chunk'))
  t.equal(syncs.calls, 1, 'one fsync before its rename')
  t.same(await readFile(join(final, 'held.chunk')), Buffer.concat([Buffer.alloc(4096, 5), Buffer.from('T')]))
})

// The event-loop side of a held chunk: its open, close and rename are synchronous calls, so the only thread-pool
// trips between its last byte and its folder fsync are the one writev; a streamed chunk opens, closes and renames
// on the thread pool.
t.test('a held chunk opens, closes and renames on the event loop; a streamed chunk on the thread pool', async (t) => {
  const { tmp, final } = await folders(t)
  const poolOpens = countCalls(t, fsp, 'open', pathIn(tmp))
  const poolRenames = countCalls(t, fsp, 'rename', pathIn(tmp))
  const loopOpens = countCalls(t, fs, 'openSync', pathIn(tmp))
  const loopCloses = countCalls(t, fs, 'closeSync', fdIsFile)
  const loopRenames = countCalls(t, fs, 'renameSync', pathIn(tmp))
  const poolWrites = countCalls(t, fs, 'writev')
  const heldPath = join(tmp, 'held.tmp')
  const held = ChunkWriter.start(heldPath, 1 << 20, 4096)
  t.ok(existsSync(heldPath), 'the temp file exists as soon as start() returns: opened synchronously')
  held.push(Buffer.alloc(4096, 7))
  await held.finish(Buffer.from('T'), 4096, join(final, 'held.chunk'))
  t.same([loopOpens.calls, loopCloses.calls, loopRenames.calls, poolWrites.calls], [1, 1, 1, 1], 'open, close and rename on the loop, one writev on the pool')
  t.same([poolOpens.calls, poolRenames.calls], [0, 0], 'no open or rename on the thread pool')
  const streamed = ChunkWriter.start(join(tmp, 'streamed.tmp'), 1 << 20)
  streamed.push(Buffer.alloc(10, 8))
  await streamed.finish(Buffer.from('T'), 10, join(final, 'streamed.chunk'))
  t.same([poolOpens.calls, poolRenames.calls, loopOpens.calls, loopCloses.calls, loopRenames.calls], [1, 1, 1, 1, 1], 'the streamed chunk opened and renamed on the thread pool, and closed its FileHandle there too')
  t.same(await readFile(join(final, 'held.chunk')), Buffer.concat([Buffer.alloc(4096, 7), Buffer.from('T')]))
  t.same(await readFile(join(final, 'streamed.chunk')), Buffer.concat([Buffer.alloc(10, 8), Buffer.from('T')]))
})
