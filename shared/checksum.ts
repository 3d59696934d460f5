// CRC32 (node:zlib, hardware-assisted) per 64 KiB block on every replica, and over a whole chunk for the
// end-to-end check between the client, the chunkservers and the master. Incremental: crc32(buf, prev).
import { crc32 } from 'node:zlib'
import { blockSizeBytes } from './limits.js'

export { crc32 }

// Accumulates per-block CRCs and the whole-chunk CRC over buffers of any size, without copying them.
export class BlockChecksummer {
  readonly blockCrcs: number[] = []
  #blockCrc = 0
  #blockFillBytes = 0
  #chunkCrc = 0
  #lengthBytes = 0

  update (buf: Buffer): void {
    this.#chunkCrc = crc32(buf, this.#chunkCrc)
    this.#lengthBytes += buf.length
    let offset = 0
    while (offset < buf.length) {
      const take = Math.min(blockSizeBytes - this.#blockFillBytes, buf.length - offset)
      const piece = offset === 0 && take === buf.length ? buf : buf.subarray(offset, offset + take)
      this.#blockCrc = crc32(piece, this.#blockCrc)
      this.#blockFillBytes += take
      offset += take
      if (this.#blockFillBytes === blockSizeBytes) {
        this.blockCrcs.push(this.#blockCrc)
        this.#blockCrc = 0
        this.#blockFillBytes = 0
      }
    }
  }

  // Closes the last partial block. Call once, after the last update.
  finish (): { blockCrcs: number[], chunkCrc32: number, lengthBytes: number } {
    if (this.#blockFillBytes > 0) {
      this.blockCrcs.push(this.#blockCrc)
      this.#blockCrc = 0
      this.#blockFillBytes = 0
    }
    return { blockCrcs: this.blockCrcs, chunkCrc32: this.#chunkCrc, lengthBytes: this.#lengthBytes }
  }

  get lengthBytes (): number { return this.#lengthBytes }
  get chunkCrc32 (): number { return this.#chunkCrc }
}

export function blockCount (lengthBytes: number): number {
  return Math.floor((lengthBytes + blockSizeBytes - 1) / blockSizeBytes)
}
