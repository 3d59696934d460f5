// Reusable Buffers for a producer that feeds a GranaryWriteStream: take() lends one, and the stream's
// onBufferReleased gives it back once no chunk upload can send or resend it any more (its chunk committed, or
// its upload settled after a failure). Reading a local file into the same few Buffers instead of fresh ones
// saves what a new 4 MiB Buffer per read costs: its mmap and munmap, a page fault per 4 KiB at first touch,
// and the GC work its external memory triggers.
// take() never waits: when every kept Buffer is lent out it allocates a fresh one (kept for reuse while the
// pool has made fewer than keptMax, else left to the GC), so a consumer that holds more than the pool never
// deadlocks its producer, and the pool never keeps more than keptMax × pieceBytes. A Buffer not given back (a
// failed write drops what it had queued) goes to the GC and still counts toward keptMax.
import type { FileHandle } from 'node:fs/promises'
import { assert } from '../shared/assert.js'

export class BufferPool {
  readonly pieceBytes: number
  readonly keptMax: number
  readonly #free: Buffer[] = []
  readonly #lent = new WeakSet<ArrayBufferLike>()    // kept Buffers out on loan, by their memory
  readonly #kept = new WeakSet<ArrayBufferLike>()    // every Buffer this pool made to keep
  #keptCount = 0
  #reused = 0

  constructor (pieceBytes: number, keptMax: number) {
    assert(Number.isSafeInteger(pieceBytes) && pieceBytes > 0, 'a pool piece has a positive size')
    assert(Number.isSafeInteger(keptMax) && keptMax >= 0, 'a pool keeps a bounded number of pieces')
    this.pieceBytes = pieceBytes
    this.keptMax = keptMax
  }

  // Buffers handed out again after their return (a test's proof that reuse happened).
  get reusedCount (): number { return this.#reused }
  get freeCount (): number { return this.#free.length }

  // A Buffer of pieceBytes, its own memory (never a slice of node's shared pool), contents undefined.
  take (): Buffer {
    const reused = this.#free.pop()
    if (reused !== undefined) {
      this.#reused++
      this.#lent.add(reused.buffer)
      return reused
    }
    const fresh = Buffer.allocUnsafeSlow(this.pieceBytes)
    if (this.#keptCount < this.keptMax) {
      this.#keptCount++
      this.#kept.add(fresh.buffer)
      this.#lent.add(fresh.buffer)
    }
    return fresh
  }

  // Gives back a Buffer from take(), or any view of one (a short last read is written as a subarray). Views of
  // Buffers the pool did not keep are ignored. Giving back twice is a bug that would let two writers share
  // memory: it throws.
  give (view: Buffer): void {
    const memory = view.buffer
    if (!this.#kept.has(memory)) return
    assert(this.#lent.has(memory), 'a pooled Buffer is given back once per loan')
    this.#lent.delete(memory)
    this.#free.push(Buffer.from(memory, 0, this.pieceBytes))
  }
}

// A local file in the pool's Buffers, read at the current offset (so a FIFO works too): one read(2) of up to
// pieceBytes each. Give the Buffers back through the write stream's onBufferReleased (which hands back the same
// object it was given): the stream keeps each (no copy) until every chunk holding its bytes is committed,
// since a failed pipeline resends from them. A short read (the last piece, or a pipe) goes as a view of its
// Buffer, which give() takes back too. A piece read but never taken by the stream (the write failed) is left
// to the GC.
export async function * readPooledPieces (file: FileHandle, pool: BufferPool): AsyncGenerator<Buffer> {
  for (;;) {
    const piece = pool.take()
    const { bytesRead } = await file.read(piece, 0, pool.pieceBytes, null)
    if (bytesRead === 0) { pool.give(piece); return }
    yield bytesRead === pool.pieceBytes ? piece : piece.subarray(0, bytesRead)
  }
}
