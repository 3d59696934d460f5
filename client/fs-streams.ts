// The streams of client.fs: the client's own read and write streams with every error turned into node:fs's
// shape (fs-errors.ts) where it starts, so 'error' listeners, end() callbacks, pipeline() and for-await all
// see the same ENOENT/EEXIST/... error. (Rewriting errors on the way out of a stream is not enough: a Writable
// remembers the first error of a failed write and hands that one to end() callbacks.)
import { Readable, Writable } from 'node:stream'
import type { FileStat } from '../shared/protocol.js'
import type { GranaryWriteStream } from './write.js'

type MapError = (err: unknown) => unknown

// A Readable over `inner` whose failure is map(error). Destroying it destroys `inner` (the loop's early exit).
export function mappedReadable (inner: Readable, map: MapError, highWaterMark?: number): Readable {
  // Destroying the outer stream ends the loop below early, which destroys `inner` with an AbortError that the
  // loop no longer listens for: it must not surface as an uncaught exception.
  inner.on('error', () => {})
  async function * pieces (): AsyncGenerator<Buffer> {
    try {
      for await (const piece of inner) yield piece as Buffer
    } catch (err) {
      throw map(err)
    }
  }
  return Readable.from(pieces(), { objectMode: false, highWaterMark })
}

// A Writable in front of a GranaryWriteStream: writes pass straight through (the same Buffers, in order), the
// file appears when this stream finishes, and destroying it abandons the upload.
export class FsWriteStream extends Writable {
  readonly path: string
  readonly #inner: GranaryWriteStream
  readonly #map: MapError

  constructor (inner: GranaryWriteStream, map: MapError, highWaterMark?: number) {
    super({ highWaterMark, decodeStrings: true })
    this.path = inner.path
    this.#inner = inner
    this.#map = map
    inner.on('error', (err) => { this.destroy(this.#map(err) as Error) })
    inner.on('progress', (progress) => { this.emit('progress', progress) })   // WriteProgress, after each committed chunk
  }

  // The completed file, once 'finish' has been emitted.
  get stat (): FileStat | undefined { return this.#inner.stat }
  get bytesWritten (): number { return this.#inner.bytesWritten }

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#inner.write(chunk, (err) => { callback(err === undefined || err === null ? null : this.#map(err) as Error) })
  }

  override _final (callback: (err?: Error | null) => void): void {
    const onFinish = (): void => { this.#inner.off('error', onError); callback() }
    const onError = (err: Error): void => { this.#inner.off('finish', onFinish); callback(this.#map(err) as Error) }
    this.#inner.once('finish', onFinish)
    this.#inner.once('error', onError)
    this.#inner.end()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.#inner.destroyed && !this.#inner.writableFinished) this.#inner.destroy(err ?? undefined)
    callback(err === null ? null : this.#map(err) as Error)
  }
}
