// Writing a file: a Writable over the write protocol (shared/protocol.ts).
//   create → for each chunk: allocate → stream the bytes to pipeline[0] (PUT; the header names the rest of the
//   pipeline) → check one ack per pipeline server against our own length and CRC32 → commit → … → complete.
// Bytes stream to the pipeline as they arrive, up to chunksInFlightMax chunks at once (the commit of chunk i
// overlaps the streaming of chunk i+1). Each in-flight chunk keeps its Buffers until committed so a failed
// pipeline can be retried on a new one without the failed server; memory stays ≈ chunkSizeBytes × chunksInFlightMax.
import { Writable } from 'node:stream'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import type { FileStat, FileAttrs, CreateReply, AllocateReply, BindArgs, Reservation } from '../shared/protocol.js'
import * as limits from '../shared/limits.js'
import { checkChunkSize } from '../shared/config.js'
import { parentPath } from '../shared/paths.js'
import { assert } from '../shared/assert.js'
import { ChunkBuffer } from './chunk-buffer.js'
import { writeChunk, type ChunkWriterContext } from './write-chunk.js'
import { abortedError, type RetryPolicy } from './retry.js'
import type { MasterLink } from './master-link.js'
import type { Transport } from './transport.js'
import { publish, describeError } from './diagnostics.js'

export interface WriteOptions {
  replication?: number
  chunkSizeBytes?: number
  overwrite?: boolean           // replace an existing file atomically when the write completes
  mtimeMs?: number              // the completed file's modification time (epoch ms); default: when it completes
  parents?: boolean             // create missing parent directories, like HDFS create (default true)
  mode?: number                 // permission bits kept with the file (0..0o7777); default 0o644
  attrs?: FileAttrs             // the file's attributes (a JSON object ≤ fileAttrsBytesMax), set at create; see setAttrs
  // The bytes the stream will be given, when known (an HTTP body's Content-Length, a local file's size). Up to one
  // chunk, the write may then use a file the master reserved ahead: one master call instead of two (the client's
  // reserveFiles). A hint only: a stream that gets more or fewer bytes is written all the same.
  sizeBytes?: number
  deadlineMs?: number           // budget of each control call, and of retrying one failed chunk
  signal?: AbortSignal
  highWaterMark?: number
  onProgress?: (progress: WriteProgress) => void   // also emitted as the stream's 'progress' event
  // Called with each Buffer given to write() (the same object) once the stream will never read it again: every
  // chunk holding a part of it is committed, or its upload failed and was torn down. The caller may then refill
  // it (a pool of reusable Buffers: client/buffer-pool.ts). Until then the stream keeps the caller's Buffer, not
  // a copy, to resend it to a new pipeline. Buffers still queued in the stream when it is destroyed are never
  // reported.
  onBufferReleased?: (buffer: Buffer) => void
}

// After each chunk is durable on every replica of its pipeline and committed at the master: how far the upload
// has got. committedBytes only grows; the file itself appears when the stream finishes.
export interface WriteProgress {
  path: string
  chunkIndex: number           // the chunk just committed (chunks may commit out of order, up to chunksInFlightMax apart)
  committedChunks: number
  committedBytes: number       // bytes in committed chunks: stored, replicated, acknowledged
  bytesWritten: number         // bytes taken from the caller so far (committed or still in flight)
}

export interface WriteContext {
  link: MasterLink
  transport: Transport
  policy: RetryPolicy
  deadlineMs: number
  requestTimeoutMs: number
  replication: number
  chunkSizeBytes: number
  invalidate: (path: string) => void   // drop cached metadata of a path this client changed
}

const renewDelayMsMin = 100        // never renew the lease more often than this
const renewRetryDelayMs = 1_000    // after a failed renewal (master restarting), try again this soon
const abandonDeadlineMsMax = 2_000 // best-effort cleanup must not hold up an error
const preallocationFreshMsMax = 5_000   // create's chunk-0 allocation is used only this soon after create

export class GranaryWriteStream extends Writable {
  readonly path: string
  readonly #context: WriteContext
  readonly #options: WriteOptions
  readonly #controller = new AbortController()
  readonly #inFlight = new Map<number, Promise<void>>()   // chunkIndex → settles (never rejects) when done
  #file: CreateReply | undefined
  #current: ChunkBuffer | undefined
  #chunkCount = 0
  #sizeBytes = 0
  #failure: Error | undefined
  #completed = false
  #createdAtMs: number | undefined
  #completing = false         // a complete (its own call, or with the last commit) is on its way to the master
  #finishing = false          // _final has run: the chunk count and size are final
  #renewTimer: NodeJS.Timeout | undefined
  #stat: FileStat | undefined
  #allocationGate: Promise<void> = Promise.resolve()        // settles when the newest chunk was first allocated
  #committedChunks = 0
  #committedBytes = 0
  #finalAttrs: FileAttrs | undefined                         // setAttrs: sent with the complete, replacing create's

  readonly #reservation: Reservation | undefined   // a reserved file (client/reservations.ts): its complete names it (bind)

  // reservation: a reserved file to write instead of creating one (writeFile of bytes that fit one chunk; the
  // options' replication and chunk size are the reservation's).
  constructor (context: WriteContext, path: string, options: WriteOptions = {}, reservation?: Reservation) {
    // Checked before super(): a Writable schedules _construct as soon as it exists.
    super(checkWriteOptions(options))
    this.path = path
    this.#context = context
    this.#options = options
    this.#reservation = reservation
  }

  // The completed file, once 'finish' has been emitted.
  get stat (): FileStat | undefined { return this.#stat }
  get bytesWritten (): number { return this.#sizeBytes }

  // Attributes to store with the file when it completes, replacing any given at create (a digest known only
  // once every byte went by, say). Call before end(): the complete may ride on the last chunk's commit.
  setAttrs (attrs: FileAttrs): void {
    if (this.#finishing) throw new GranaryError('GRN_INVALID_ARGUMENT', [`setAttrs on ${this.path} after end()`])
    checkAttrs(attrs)
    this.#finalAttrs = attrs
  }

  override _construct (callback: (err?: Error | null) => void): void {
    this.#context.invalidate(this.path)
    const created = this.#reservation === undefined ? this.#create() : Promise.resolve(this.#reservation)
    created.then((reply) => {
      checkChunkSize(reply.chunkSizeBytes)
      this.#file = reply
      this.#createdAtMs = Date.now()
      this.#onLease(reply.leaseExpiresAtMs)
      callback()
    }, (err: Error) => { callback(err) })
  }

  // The master creates only in an existing directory; a missing parent is made here (mkdir -p) and the
  // create tried once more, so the common case costs no extra round trip.
  async #create (): Promise<CreateReply> {
    const request = {
      path: this.path,
      replication: this.#options.replication ?? this.#context.replication,
      chunkSizeBytes: this.#options.chunkSizeBytes ?? this.#context.chunkSizeBytes,
      overwrite: this.#options.overwrite ?? false,
      mode: this.#options.mode,
      ...(this.#options.attrs === undefined ? {} : { attrs: this.#options.attrs }),
      allocateFirstChunk: true   // chunk 0 placed in the same round trip (a small file costs two master calls)
    }
    try {
      return await this.#context.link.create(request, this.#callOptions())
    } catch (err) {
      const parent = parentPath(this.path)
      if (this.#options.parents === false || !isGranaryError(err) || err.code !== 'GRN_NOT_FOUND' || parent === '/') throw err
      await this.#context.link.mkdir(parent, true, this.#callOptions())
      return await this.#context.link.create(request, this.#callOptions())
    }
  }

  override _write (buffer: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#append(buffer).then(() => { callback() }, (err: Error) => { callback(err) })
  }

  override _final (callback: (err?: Error | null) => void): void {
    this.#finish().then(() => { callback() }, (err: Error) => { callback(err) })
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    this.#stopRenewing()
    const error = err !== null && err.name === 'AbortError' && !isGranaryError(err) ? new GranaryError('GRN_ABORTED', [err.message]) : err
    if (this.#completed || this.#file === undefined) { callback(error); return }
    this.#controller.abort(error ?? new GranaryError('GRN_ABORTED', [`write of ${this.path} destroyed`]))
    this.#current?.release()
    this.#abandon().finally(() => { callback(error) })
  }

  // Splits the caller's buffer at chunk boundaries (subarray: no copy) and starts a chunk upload on the first
  // byte of each chunk, waiting for a free slot when chunksInFlightMax chunks are already in flight.
  // With onBufferReleased, the buffer is reported once every chunk given a part of it has settled and this
  // append is over (its own hold, dropped in finally: a chunk may settle while the rest waits for a slot).
  async #append (buffer: Buffer): Promise<void> {
    const file = this.#file
    assert(file !== undefined, 'writes come after create')
    const onReleased = this.#options.onBufferReleased
    const hold = onReleased === undefined ? undefined : new BufferHold(buffer, (released) => {
      try { onReleased(released) } catch (err) { this.#fail(err as Error) }   // a throwing callback fails the upload, as onProgress does
    })
    try {
      await this.#appendPieces(file, buffer, hold)
    } finally {
      hold?.drop()
    }
  }

  async #appendPieces (file: CreateReply, buffer: Buffer, hold: BufferHold | undefined): Promise<void> {
    let offsetBytes = 0
    while (offsetBytes < buffer.length) {
      this.#throwIfStopped()
      if (this.#current === undefined) {
        await this.#waitForSlot()
        this.#throwIfStopped()
        this.#current = this.#startChunk(file)
      }
      const current = this.#current
      const takeBytes = Math.min(current.roomBytes, buffer.length - offsetBytes)
      const piece = offsetBytes === 0 && takeBytes === buffer.length ? buffer : buffer.subarray(offsetBytes, offsetBytes + takeBytes)
      current.append(piece, hold?.take())
      offsetBytes += takeBytes
      this.#sizeBytes += takeBytes
      if (current.roomBytes === 0) {
        current.end()
        this.#current = undefined
      }
    }
  }

  #throwIfStopped (): void {
    if (this.#failure !== undefined) throw this.#failure
    if (this.destroyed) throw new GranaryError('GRN_ABORTED', [`write of ${this.path} destroyed`])
  }

  async #waitForSlot (): Promise<void> {
    // Each pass waits for one in-flight chunk to settle and remove itself, so this loop ends.
    while (this.#inFlight.size >= limits.chunksInFlightMax) await Promise.race(this.#inFlight.values())
  }

  #startChunk (file: CreateReply): ChunkBuffer {
    if (this.#chunkCount >= limits.chunkCountPerFileMax) {
      throw new GranaryError('GRN_LIMIT_EXCEEDED', [`chunk count of ${this.path}`, limits.chunkCountPerFileMax])
    }
    const chunk = new ChunkBuffer(this.#chunkCount++, file.chunkSizeBytes)
    const previousAllocated = this.#allocationGate
    let allocated: () => void = () => {}
    this.#allocationGate = new Promise<void>((resolve) => { allocated = resolve })
    const settled = writeChunk({ ...this.#chunkContext(file), previousAllocated, allocated }, chunk)
      .then((leaseExpiresAtMs) => {
        const lengthBytes = chunk.lengthBytes
        chunk.settle()
        this.#onLease(leaseExpiresAtMs)
        this.#progress(chunk.chunkIndex, lengthBytes)
      }, (err: Error) => { chunk.settle(); this.#fail(err) })
      .finally(() => { this.#inFlight.delete(chunk.chunkIndex) })
    this.#inFlight.set(chunk.chunkIndex, settled)
    return chunk
  }

  #progress (chunkIndex: number, lengthBytes: number): void {
    this.#committedChunks++
    this.#committedBytes += lengthBytes
    const progress: WriteProgress = { path: this.path, chunkIndex, committedChunks: this.#committedChunks, committedBytes: this.#committedBytes, bytesWritten: this.#sizeBytes }
    try {
      this.emit('progress', progress)
      this.#options.onProgress?.(progress)
    } catch (err) {
      this.#fail(err as Error)   // a listener that throws fails the upload, as a throwing 'data' handler would
    }
  }

  async #finish (): Promise<void> {
    const file = this.#file
    assert(file !== undefined, 'finish comes after create')
    this.#finishing = true
    if (this.#current !== undefined) {
      this.#current.end()
      this.#current = undefined
    }
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight.values())
    if (this.#failure !== undefined) throw this.#failure
    if (this.#stat === undefined) {   // else the last chunk's commit completed the file
      this.#completing = true
      this.#stat = await this.#context.link.complete({
        inodeId: file.inodeId, leaseId: file.leaseId, sizeBytes: this.#sizeBytes, chunkCount: this.#chunkCount, mtimeMs: this.#options.mtimeMs,
        ...(this.#finalAttrs === undefined ? {} : { attrs: this.#finalAttrs }),
        ...this.#bind(),
      }, this.#callOptions())
    }
    this.#completed = true
    this.#stopRenewing()
    this.#context.invalidate(this.path)
  }

  #fail (err: Error): void {
    if (this.#failure !== undefined) return
    this.#failure = err
    this.destroy(err)
  }

  async #abandon (): Promise<void> {
    const file = this.#file
    assert(file !== undefined, 'abandon comes after create')
    const deadlineMs = Math.min(this.#options.deadlineMs ?? this.#context.deadlineMs, abandonDeadlineMsMax)
    try {
      await this.#context.link.abandon({ inodeId: file.inodeId, leaseId: file.leaseId }, { deadlineMs })
    } catch (err) {
      publish('abandonError', () => ({ path: this.path, ...describeError(err) }))
    }
  }

  // ---- the writer lease: every allocate/commit renews it; a timer renews it when the writer is slow ------
  #onLease (leaseExpiresAtMs: number): void {
    if (this.#completed || this.destroyed) return
    this.#stopRenewing()
    const delayMs = Math.max(renewDelayMsMin, Math.floor((leaseExpiresAtMs - Date.now()) / 2))
    this.#renewTimer = setTimeout(() => { this.#renew() }, Math.min(delayMs, 2 ** 31 - 1))
    this.#renewTimer.unref()
  }

  #renew (): void {
    const file = this.#file
    if (file === undefined || this.#completed || this.destroyed) return
    this.#context.link.renew({ inodeId: file.inodeId, leaseId: file.leaseId }, this.#callOptions()).then(
      (reply) => { this.#onLease(reply.leaseExpiresAtMs) },
      (err: unknown) => {
        // A renewal that crossed the complete on the wire finds the lease gone because the file is done: the
        // complete's own reply decides (it fails with GRN_LEASE_EXPIRED itself if the lease really ran out).
        if (this.#completing || this.#completed) return
        if (isGranaryError(err) && (err.code === 'GRN_LEASE_EXPIRED' || err.code === 'GRN_ABORTED')) { this.#fail(err); return }
        this.#onLease(Date.now() + 2 * renewRetryDelayMs)   // the master may be restarting: try again soon
      })
  }

  #stopRenewing (): void {
    if (this.#renewTimer !== undefined) clearTimeout(this.#renewTimer)
    this.#renewTimer = undefined
  }

  #callOptions (): { deadlineMs: number, signal: AbortSignal } {
    return { deadlineMs: this.#options.deadlineMs ?? this.#context.deadlineMs, signal: this.#controller.signal }
  }

  #chunkContext (file: CreateReply): Omit<ChunkWriterContext, 'previousAllocated' | 'allocated'> {
    return {
      link: this.#context.link,
      transport: this.#context.transport,
      policy: this.#context.policy,
      path: this.path,
      inodeId: file.inodeId,
      leaseId: file.leaseId,
      deadlineMs: this.#options.deadlineMs ?? this.#context.deadlineMs,
      requestTimeoutMs: this.#context.requestTimeoutMs,
      signal: this.#controller.signal,
      onAllocate: (reply: AllocateReply) => { this.#onLease(reply.leaseExpiresAtMs) },
      preallocated: () => this.#freshFirstChunk(file),
      completion: (chunkIndex: number) => this.#completion(chunkIndex),
      onCompleted: (stat: FileStat) => { this.#stat = stat },
    }
  }

  // create's allocation of chunk 0 serves only while fresh: a writer whose first byte comes late (a slow source,
  // a failover since) allocates anew rather than stream under an old token or term.
  #freshFirstChunk (file: CreateReply): AllocateReply | undefined {
    const first = file.firstChunk
    if (first === undefined || this.#createdAtMs === undefined) return undefined
    const nowMs = Date.now()
    if (nowMs - this.#createdAtMs > preallocationFreshMsMax || first.tokenExpiresAtMs - nowMs < preallocationFreshMsMax) return undefined
    return first
  }

  // The last chunk completes the file with its commit when the stream has ended, this is the last chunk, and
  // every other chunk is committed (in flight: only this one), so the sizes the master checks are final.
  #completion (chunkIndex: number): { sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: FileAttrs, bind?: BindArgs } | undefined {
    if (!this.#finishing || this.#failure !== undefined || chunkIndex !== this.#chunkCount - 1) return undefined
    if (this.#inFlight.size !== 1 || !this.#inFlight.has(chunkIndex)) return undefined
    this.#completing = true
    return {
      sizeBytes: this.#sizeBytes, chunkCount: this.#chunkCount, ...(this.#options.mtimeMs === undefined ? {} : { mtimeMs: this.#options.mtimeMs }),
      ...(this.#finalAttrs === undefined ? {} : { attrs: this.#finalAttrs }),
      ...this.#bind()
    }
  }

  // A reserved file is named at its complete, with what create would have been given (the folders it needs
  // made there unless parents is false).
  #bind (): { bind?: BindArgs } {
    if (this.#reservation === undefined) return {}
    const options = this.#options
    return {
      bind: {
        path: this.path, overwrite: options.overwrite ?? false, parents: options.parents ?? true,
        ...(options.mode === undefined ? {} : { mode: options.mode }), ...(options.attrs === undefined ? {} : { attrs: options.attrs })
      }
    }
  }
}

// Counts who still holds a caller's Buffer: the append that took it, and each chunk given a part of it.
class BufferHold {
  readonly #buffer: Buffer
  readonly #onReleased: (buffer: Buffer) => void
  #count = 1
  readonly #dropOne = (): void => { this.drop() }

  constructor (buffer: Buffer, onReleased: (buffer: Buffer) => void) {
    this.#buffer = buffer
    this.#onReleased = onReleased
  }

  take (): () => void {
    assert(this.#count > 0, 'a released Buffer is not held again')
    this.#count++
    return this.#dropOne
  }

  drop (): void {
    assert(this.#count > 0, 'a Buffer hold is dropped once per holder')
    if (--this.#count === 0) this.#onReleased(this.#buffer)
  }
}

function checkWriteOptions (options: WriteOptions): { highWaterMark: number, signal?: AbortSignal } {
  const { replication, chunkSizeBytes, deadlineMs } = options
  if (replication !== undefined && (!Number.isSafeInteger(replication) || replication < limits.replicationMin || replication > limits.replicationMax)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`replication must be an integer ${limits.replicationMin}..${limits.replicationMax}, got ${String(replication)}`])
  }
  if (chunkSizeBytes !== undefined) checkChunkSize(chunkSizeBytes)
  if (deadlineMs !== undefined && (!Number.isSafeInteger(deadlineMs) || deadlineMs < 1)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`deadlineMs must be a positive integer, got ${String(deadlineMs)}`])
  }
  if (options.mtimeMs !== undefined && (!Number.isSafeInteger(options.mtimeMs) || options.mtimeMs < 0)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`mtimeMs must be a non-negative integer (epoch ms), got ${String(options.mtimeMs)}`])
  }
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function') throw new GranaryError('GRN_INVALID_ARGUMENT', ['onProgress must be a function'])
  if (options.onBufferReleased !== undefined && typeof options.onBufferReleased !== 'function') throw new GranaryError('GRN_INVALID_ARGUMENT', ['onBufferReleased must be a function'])
  if (options.attrs !== undefined) checkAttrs(options.attrs)
  if (options.sizeBytes !== undefined && (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes < 0)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`sizeBytes must be a non-negative integer, got ${String(options.sizeBytes)}`])
  }
  if (options.signal?.aborted === true) throw abortedError(options.signal)
  return { highWaterMark: options.highWaterMark ?? limits.forwardQueueBytesMax, signal: options.signal }
}

// The master checks too; checking here fails a write before any byte moves.
function checkAttrs (attrs: FileAttrs): void {
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) throw new GranaryError('GRN_INVALID_ARGUMENT', ['attrs must be a plain object'])
  const bytes = Buffer.byteLength(JSON.stringify(attrs))
  if (bytes > limits.fileAttrsBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['attrs (as JSON, bytes)', limits.fileAttrsBytesMax])
}
