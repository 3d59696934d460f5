// Streams one chunk into a temp file, then makes it durable and renames it into place.
//
// Why it looks like this (shared/PERF-NOTES.md): the data path is CPU-bound, so the Buffers the socket
// delivered are queued as they are (no copies) and written with one FileHandle.writev per batch instead of a
// write per Buffer; an fdatasync is started every syncEveryBytes while streaming so the final fsync only has a
// few MiB left to flush. Only one writev and one fdatasync are in flight at a time.
//
// A small chunk's latency is its chain of thread-pool steps, each a round trip through a worker thread (under
// load, 0.5-2 ms apiece, measured with strace on a 4 KiB pipeline write). So the writer takes Buffers before its
// file is open (a pipeline forwards to the next hop while the open is still running, instead of after it); a
// chunk whose whole length is known and at most holdBytesMax is written once, data and trailer in one writev,
// when it ends; and the close runs beside the rename instead of before it. Such a held chunk's temp file is opened
// O_DSYNC, so that one writev returns only once its data and the size that reaches it are on disk (fdatasync's
// guarantee) and no separate fsync trip follows it. What is made durable, and in which order (the file's data,
// then the rename, then the folder fsync), is unchanged.
//
// A held chunk's open, close and rename run on the event loop (openSync, closeSync, renameSync), not on the thread
// pool: each is a metadata call of a few µs on a hot folder, while a thread-pool round trip costs ~25 µs of CPU
// and, on busy cores, a wait for a CPU on each side (measured: open + read + close of a 4 KiB file in a request
// handler cost 33-37 µs of server CPU per request done synchronously, 110-120 µs through fs.promises). Only the
// steps that wait for the disk, the O_DSYNC writev and the folder fsync, leave the loop. A streamed chunk keeps
// every step on the thread pool.
import fs, { constants } from 'node:fs'
import { open, rename, unlink, mkdir, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { assert } from '../shared/assert.js'
import { folderSync } from './folder-sync.js'

const iovecsPerWriteMax = 1024     // IOV_MAX on Linux: buffers per writev
// A chunk of known length at most this big is held in memory until it ends and written in one writev with its
// trailer (pipeline.ts and the replicator pass the length). Bounded per write; the chunkserver's concurrent
// writes are bounded by its server's connections.
export const holdBytesMax = 256 * 1024
// A held chunk's temp file: created exclusively, every write synchronized (data integrity, as fdatasync).
const heldOpenFlags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_DSYNC

// The temp file a writer writes to: a held chunk's descriptor, opened synchronously, or a streamed chunk's
// FileHandle, opened on the thread pool.
type TempFile = { kind: 'held', fd: number } | { kind: 'streamed', handle: FileHandle }

export class ChunkWriter {
  readonly #opening: Promise<TempFile>
  #file: TempFile | null = null
  readonly #tempPath: string
  readonly #hold: boolean
  readonly #syncEveryBytes: number
  #pending: Buffer[] = []
  #queuedBytes = 0          // pushed but not yet written
  #positionBytes = 0        // written so far (the next write's offset)
  #syncedMarkBytes = 0      // position when the last fdatasync started
  #writing = false
  #pumping: Promise<void> | null = null   // the last pump's write, settled or not (abort waits for it)
  #syncing: Promise<void> | null = null
  #error: Error | null = null
  #closed = false
  #idleWaiters: Array<() => void> = []
  onDrain: (() => void) | null = null    // called after a write when the queue is at or under drainBelowBytes
  onError: ((err: Error) => void) | null = null
  drainBelowBytes = 0

  private constructor (tempPath: string, syncEveryBytes: number, lengthBytes: number | null) {
    this.#tempPath = tempPath
    this.#syncEveryBytes = syncEveryBytes
    this.#hold = lengthBytes !== null && lengthBytes <= holdBytesMax
    this.#opening = this.#hold ? openHeld(tempPath) : open(tempPath, 'wx', 0o644).then((handle) => ({ kind: 'streamed', handle }))
    this.#opening.then((file) => { this.#file = file }, (err: Error) => { this.#fail(err) })
  }

  // Starts opening the temp file and returns at once: push() may be called before the open ends (the Buffers
  // wait for it); an open that fails surfaces through onError and finish(). `lengthBytes` is the chunk's whole
  // length when the caller knows it (a small one is then written in one go: holdBytesMax).
  static start (tempPath: string, syncEveryBytes: number, lengthBytes: number | null = null): ChunkWriter {
    assert(syncEveryBytes > 0, 'sync interval is positive')
    return new ChunkWriter(tempPath, syncEveryBytes, lengthBytes)
  }

  // The same, resolved once the temp file is open (a failed open rejects).
  static async open (tempPath: string, syncEveryBytes: number): Promise<ChunkWriter> {
    const writer = ChunkWriter.start(tempPath, syncEveryBytes)
    await writer.#opening
    return writer
  }

  get queuedBytes (): number { return this.#queuedBytes }
  get writtenBytes (): number { return this.#positionBytes }
  get error (): Error | null { return this.#error }

  // Queues a Buffer the caller will not touch again. Never throws: a disk error surfaces through onError
  // and finish().
  push (buf: Buffer): void {
    if (this.#error !== null || buf.length === 0) return
    assert(!this.#closed, 'push after finish or abort')
    this.#pending.push(buf)
    this.#queuedBytes += buf.length
    if (this.#hold && this.#queuedBytes <= holdBytesMax) return   // written with the trailer by finish()
    if (!this.#writing) this.#pump()
  }

  #pump (): void {
    const buffers = this.#pending.length <= iovecsPerWriteMax ? this.#pending : this.#pending.slice(0, iovecsPerWriteMax)
    this.#pending = this.#pending.length <= iovecsPerWriteMax ? [] : this.#pending.slice(iovecsPerWriteMax)
    let bytes = 0
    for (const buf of buffers) bytes += buf.length
    this.#writing = true
    const written = this.#writeAll(buffers, bytes)
    this.#pumping = written.catch(() => {})
    written.then(() => {
      this.#writing = false
      this.#queuedBytes -= bytes
      this.#startSyncIfDue()
      if (this.#pending.length > 0 && this.#error === null) this.#pump()
      else this.#wakeIdleWaiters()
      if (this.#queuedBytes <= this.drainBelowBytes) this.onDrain?.()
    }, (err: Error) => {
      this.#writing = false
      this.#fail(err)
    })
  }

  // writev may write less than asked (rare for regular files); the rest is written from where it stopped.
  async #writeAll (buffers: Buffer[], bytes: number): Promise<void> {
    const file = this.#file ?? await this.#opening
    let remaining = buffers
    let left = bytes
    while (left > 0) {
      const bytesWritten = file.kind === 'held' ? await writevFd(file.fd, remaining, this.#positionBytes) : (await file.handle.writev(remaining, this.#positionBytes)).bytesWritten
      assert(bytesWritten > 0, 'writev makes progress')
      this.#positionBytes += bytesWritten
      left -= bytesWritten
      if (left > 0) remaining = dropWritten(remaining, bytesWritten)
    }
  }

  #startSyncIfDue (): void {
    const file = this.#file
    // A held chunk's writes return durable (O_DSYNC): nothing to start.
    if (this.#syncing !== null || file?.kind !== 'streamed' || this.#positionBytes - this.#syncedMarkBytes < this.#syncEveryBytes) return
    this.#syncedMarkBytes = this.#positionBytes
    this.#syncing = file.handle.datasync().then(() => { this.#syncing = null }, (err: Error) => {
      this.#syncing = null
      this.#fail(err)
    })
  }

  #fail (err: Error): void {
    if (this.#error !== null) return
    this.#error = err
    this.#pending = []
    this.#wakeIdleWaiters()
    this.onError?.(err)
  }

  #wakeIdleWaiters (): void {
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const wake of waiters) wake()
  }

  async #idle (): Promise<void> {
    while (this.#error === null && (this.#writing || (this.#pending.length > 0 && !this.#hold))) {
      await new Promise<void>((resolve) => this.#idleWaiters.push(resolve))
    }
    if (this.#syncing !== null) await this.#syncing
    if (this.#error !== null) throw this.#error
  }

  // Writes the trailer after the data, fsyncs, closes, renames to finalPath and fsyncs its folder (in a round
  // shared with the other writes finishing into it: folder-sync.ts).
  // Resolves when the chunk is durable under its final name.
  async finish (trailer: Buffer, dataBytes: number, finalPath: string): Promise<void> {
    assert(!this.#closed, 'finish once')
    await this.#idle()
    if (this.#error !== null) throw this.#error   // failed while #idle's promise settled (a held chunk's open fails at once)
    // A held chunk's data goes out now, in the same writev as its trailer.
    const held = this.#hold ? this.#pending : []
    let heldBytes = 0
    for (const buf of held) heldBytes += buf.length
    assert(this.#positionBytes + heldBytes === dataBytes, 'every data byte reached the temp file before the trailer')
    this.#pending = []
    this.#closed = true
    const file = this.#file ?? await this.#opening
    try {
      await this.#writeAll([...held, trailer], heldBytes + trailer.length)
      this.#queuedBytes -= heldBytes
      if (file.kind === 'streamed') await file.handle.sync()   // a held chunk's file is O_DSYNC: every write above returned durable
    } catch (err) {
      await closeTemp(file)
      throw err
    }
    if (file.kind === 'held') {
      fs.closeSync(file.fd)
      await ensureFolder(dirname(finalPath))
      fs.renameSync(this.#tempPath, finalPath)
    } else {
      // Durable under the temp name: closing and renaming need not wait for each other.
      const closing = file.handle.close()
      try {
        await ensureFolder(dirname(finalPath))
        await rename(this.#tempPath, finalPath)
      } finally {
        await closing
      }
    }
    await folderSync.sync(dirname(finalPath))   // shared with every write finishing into this folder (group fsync)
  }

  // Gives up: closes and removes the temp file. Safe to call at any point, more than once.
  async abort (): Promise<void> {
    if (this.#error === null) this.#error = new Error('write aborted')
    this.#pending = []
    await this.#idle().catch(() => {})
    if (!this.#closed) {
      this.#closed = true
      const file = await this.#opening.catch(() => null)   // an open still running is waited for, then closed
      // #idle returns at once once #error is set, so a pump's write may still be on the thread pool: a held
      // chunk's raw descriptor is closed only after it, or its number could be reused under that write.
      await this.#pumping
      if (file !== null) await closeTemp(file)
    }
    await unlink(this.#tempPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
    })
  }
}

// A held chunk's temp file, opened on the event loop (why: the header). A failed open rejects like a failed
// fs.promises open, so it surfaces through onError and finish() the same way.
async function openHeld (tempPath: string): Promise<TempFile> {
  return { kind: 'held', fd: fs.openSync(tempPath, heldOpenFlags, 0o644) }
}

// Closes a temp file whatever its kind; a failed close is ignored (the write has already failed or been given up).
async function closeTemp (file: TempFile): Promise<void> {
  if (file.kind === 'streamed') { await file.handle.close().catch(() => {}); return }
  try { fs.closeSync(file.fd) } catch {}
}

// One writev of a held chunk at `positionBytes` on the thread pool (it waits for the disk: O_DSYNC).
async function writevFd (fd: number, buffers: Buffer[], positionBytes: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    fs.writev(fd, buffers, positionBytes, (err, bytesWritten) => { if (err === null) resolve(bytesWritten); else reject(err) })
  })
}

// The 256 chunk folders are made once per process, not once per chunk (a mkdir per small file showed up in
// profiles). Bounded: one entry per folder of each data dir this process writes to.
const foldersMade = new Set<string>()
async function ensureFolder (folder: string): Promise<void> {
  if (foldersMade.has(folder)) return
  await mkdir(folder, { recursive: true })
  foldersMade.add(folder)
}

function dropWritten (buffers: Buffer[], writtenBytes: number): Buffer[] {
  let skip = writtenBytes
  let index = 0
  while (index < buffers.length && skip >= (buffers[index] as Buffer).length) {
    skip -= (buffers[index] as Buffer).length
    index++
  }
  const rest = buffers.slice(index)
  if (skip > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(skip)
  return rest
}
