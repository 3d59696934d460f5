// The bytes of one chunk being written, kept (as the caller's own Buffers: references, never copies) until
// the master has committed the chunk, so a failed pipeline can be sent the chunk again from its first byte.
// Uploads read it through a ChunkReader: a Readable that replays what is buffered and then follows new bytes
// as they arrive, so a chunk streams to its pipeline while the application is still writing it.
// A piece may come with a callback that hands its memory back to the producer (WriteOptions.onBufferReleased):
// called by settle() only, once the chunk's upload is over (committed, or failed and its request torn down),
// so no attempt can still send or resend those bytes. release() alone (a destroyed stream dropping its
// memory early) never calls them.
import { Readable } from 'node:stream'
import { crc32 } from '../shared/checksum.js'
import { assert } from '../shared/assert.js'
import * as limits from '../shared/limits.js'

export class ChunkBuffer {
  readonly chunkIndex: number
  readonly capacityBytes: number
  #buffers: Buffer[] = []
  #onSettled: Array<() => void> = []
  #settled = false
  #lengthBytes = 0
  #crc32 = 0
  #ended = false
  #released = false
  readonly #readers = new Set<ChunkReader>()

  constructor (chunkIndex: number, capacityBytes: number) {
    assert(chunkIndex >= 0 && chunkIndex < limits.chunkCountPerFileMax, 'chunk index within the per-file limit')
    assert(capacityBytes >= limits.chunkSizeBytesMin && capacityBytes <= limits.chunkSizeBytesMax, 'chunk capacity within limits')
    this.chunkIndex = chunkIndex
    this.capacityBytes = capacityBytes
  }

  get lengthBytes (): number { return this.#lengthBytes }
  get crc32 (): number { return this.#crc32 }
  get ended (): boolean { return this.#ended }
  get roomBytes (): number { return this.capacityBytes - this.#lengthBytes }
  get bufferCount (): number { return this.#buffers.length }

  bufferAt (index: number): Buffer {
    const buffer = this.#buffers[index]
    assert(buffer !== undefined, 'buffer index within the chunk')
    return buffer
  }

  append (buffer: Buffer, onSettled?: () => void): void {
    assert(!this.#ended, 'no bytes after a chunk ended')
    assert(!this.#released, 'no bytes after a chunk was released')
    assert(buffer.length > 0 && buffer.length <= this.roomBytes, 'a piece fits in the chunk')
    this.#buffers.push(buffer)
    if (onSettled !== undefined) this.#onSettled.push(onSettled)
    this.#lengthBytes += buffer.length
    this.#crc32 = crc32(buffer, this.#crc32)
    for (const reader of this.#readers) reader.wake()
  }

  end (): void {
    assert(this.#lengthBytes > 0, 'a chunk holds at least one byte')   // empty chunks are never allocated
    this.#ended = true
    for (const reader of this.#readers) reader.wake()
  }

  // A new upload attempt: a stream of this chunk from its first byte.
  openReader (): ChunkReader {
    assert(!this.#released, 'a released chunk cannot be resent')
    const reader = new ChunkReader(this)
    this.#readers.add(reader)
    reader.once('close', () => { this.#readers.delete(reader) })
    return reader
  }

  // The write is over: drop the buffers so their memory can go, and stop every reader.
  release (): void {
    this.#released = true
    this.#buffers = []
    for (const reader of this.#readers) reader.destroy()
  }

  // The chunk's upload has settled (committed, or failed with its last request torn down): release, then tell
  // each piece's producer, once, that its bytes are no longer needed.
  settle (): void {
    this.release()
    if (this.#settled) return
    this.#settled = true
    const callbacks = this.#onSettled
    this.#onSettled = []
    for (const callback of callbacks) callback()
  }
}

// Pushes the chunk's buffers in order, obeying the consumer's backpressure, then waits for more (wake) until
// the chunk has ended.
export class ChunkReader extends Readable {
  readonly #chunk: ChunkBuffer
  #nextIndex = 0
  #wantsData = false
  #endPushed = false

  constructor (chunk: ChunkBuffer) {
    super({ highWaterMark: limits.forwardQueueBytesMax })
    this.#chunk = chunk
  }

  override _read (): void {
    this.#wantsData = true
    this.#pump()
  }

  wake (): void {
    if (!this.destroyed) this.#pump()
  }

  #pump (): void {
    while (this.#wantsData && this.#nextIndex < this.#chunk.bufferCount) {
      this.#wantsData = this.push(this.#chunk.bufferAt(this.#nextIndex++))
    }
    if (this.#wantsData && this.#nextIndex === this.#chunk.bufferCount && this.#chunk.ended && !this.#endPushed) {
      this.#endPushed = true
      this.push(null)
    }
  }
}
