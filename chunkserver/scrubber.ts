// The background scrubber: reads every stored chunk end to end through the same verified read path clients
// use (chunk-reader.ts checks each block's CRC and remembers a chunk that fails), so rot in a chunk nobody
// reads is found too. The heartbeat reports what it finds (`corrupt`), and the master replaces the replica.
// Bounded: at most bytesPerSecond read (the disk and CPU belong to clients first), each chunk counted as at least
// one block (scrubChargeBytesMin), one chunk at a time, and a pause of passGapMs between passes so a small store is
// not re-read in a tight loop.
import { setTimeout as sleep } from 'node:timers/promises'
import { blockSizeBytes } from '../shared/limits.js'
import { isGranaryError } from '../shared/errors.js'
import type { Logger } from '../shared/log.js'
import type { StoredChunk } from '../shared/protocol.js'
import { readChunk } from './chunk-reader.js'
import type { ChunkStore } from './store.js'

// What one chunk costs the scrubber's budget at least: opening, reading and checking a file costs about what
// reading a block does, so a store of 4 KiB files is scrubbed at bytesPerSecond / 64 KiB files a second (128 at the
// default 8 MiB/s), not at bytesPerSecond / 4 KiB (2,000 a second, each a file open on every chunkserver).
export const scrubChargeBytesMin = blockSizeBytes

export interface ScrubberOptions { store: ChunkStore, log: Logger, bytesPerSecond: number, passGapMs: number }
export interface ScrubberStats { passes: number, scrubbedBytes: number, corruptFound: number }

export class Scrubber {
  readonly #options: ScrubberOptions
  readonly #stop = new AbortController()
  #loop: Promise<void> | null = null
  #stats: ScrubberStats = { passes: 0, scrubbedBytes: 0, corruptFound: 0 }

  constructor (options: ScrubberOptions) {
    this.#options = options
  }

  get stats (): ScrubberStats { return { ...this.#stats } }

  // bytesPerSecond 0 turns the scrubber off.
  start (): void {
    if (this.#options.bytesPerSecond === 0 || this.#loop !== null) return
    this.#loop = this.#run().catch((err: unknown) => {
      if (!this.#stop.signal.aborted) this.#options.log.error({ err }, 'scrubber stopped')
    })
  }

  async stop (): Promise<void> {
    this.#stop.abort()
    await this.#loop
  }

  async #run (): Promise<void> {
    const { log, passGapMs } = this.#options
    const signal = this.#stop.signal
    while (!signal.aborted) {
      const startedMs = Date.now()
      const before = this.#stats.corruptFound
      // A snapshot of the index: chunks added during the pass wait for the next one.
      for (const chunk of this.#options.store.chunks()) {
        if (signal.aborted) return
        await this.#verify(chunk)
      }
      this.#stats.passes++
      log.info({ durationMs: Date.now() - startedMs, corruptFound: this.#stats.corruptFound - before, scrubbedBytes: this.#stats.scrubbedBytes }, 'scrub pass finished')
      await sleep(passGapMs, undefined, { signal }).catch(() => {})
    }
  }

  // Reads the whole chunk at no more than bytesPerSecond; a checksum failure is already remembered by the
  // store when readChunk throws. A chunk deleted meanwhile is skipped.
  async #verify (chunk: StoredChunk): Promise<void> {
    const { store, log, bytesPerSecond } = this.#options
    const signal = this.#stop.signal
    if (store.corruptChunks().some((c) => c.chunkHandle === chunk.chunkHandle && c.version === chunk.version)) return
    const startedMs = Date.now()
    let readBytes = 0
    try {
      const read = await readChunk(store, log, chunk.chunkHandle, chunk.version, { offsetBytes: 0, lengthBytes: null }, false)   // cold: off the loop
      // An empty chunk has no body: its open and header check are still charged below.
      for await (const piece of read.body ?? []) {
        readBytes += (piece as Buffer).length
        this.#stats.scrubbedBytes += (piece as Buffer).length
        const aheadMs = (readBytes / bytesPerSecond) * 1000 - (Date.now() - startedMs)
        if (aheadMs > 0) await sleep(aheadMs, undefined, { signal }).catch(() => {})
        if (signal.aborted) { read.body?.destroy(); return }
      }
    } catch (err) {
      const code = isGranaryError(err) ? err.code : (err as { code?: string }).code
      if (code === 'GRN_CHECKSUM_MISMATCH') {
        this.#stats.corruptFound++
        log.warn({ chunkHandle: chunk.chunkHandle, version: chunk.version }, 'scrubber found a corrupt replica')
      } else if (code !== 'GRN_CHUNK_NOT_FOUND') {
        log.error({ chunkHandle: chunk.chunkHandle, version: chunk.version, code, err: (err as Error).message }, 'scrub read failed')
      }
    }
    // Every chunk opened is charged at least scrubChargeBytesMin of the budget, read or not, empty or not.
    const aheadMs = (Math.max(readBytes, scrubChargeBytesMin) / bytesPerSecond) * 1000 - (Date.now() - startedMs)
    if (aheadMs > 0 && !signal.aborted) await sleep(aheadMs, undefined, { signal }).catch(() => {})
  }
}
