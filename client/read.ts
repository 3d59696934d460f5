// Reading a file: open once (metadata cached) → for each chunk overlapping the range, a ranged GET from a
// replica, streamed through with backpressure. The master is not on the data path.
// On a cut connection, a non-200, GRN_CHECKSUM_MISMATCH or a short body the read goes on from the exact byte
// reached, on the next replica. A chunk read whole is checked against the CRC32 the master committed.
// Gray failures: a replica that has not answered (headers) within the hedge delay is raced by the next one, the
// first to answer serves and the other request is aborted; a replica that stops sending mid-body for
// replicaStallMs while another replica is left in the round is dropped and the read goes on from the exact
// byte on the next. So a frozen chunkserver costs a read a hedge delay or a stall bound, not a 5 s timeout.
// The Readable streams bytes as they arrive; with verifyChunks it holds each whole chunk until its CRC32
// matched (memory: one chunk), so a mismatch can still be served from another replica (readFile does this).
import { Readable } from 'node:stream'
import { setMaxListeners } from 'node:events'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import type { OpenReply, ChunkLocation, ChunkserverAddress } from '../shared/protocol.js'
import { crc32 } from '../shared/checksum.js'
import { assert } from '../shared/assert.js'
import { Deadline, backoffDelayMs, deadlineExceeded, abortedError, type RetryPolicy } from './retry.js'
import type { Transport } from './transport.js'
import { publish, describeError } from './diagnostics.js'
import { setTimeout as sleep } from 'node:timers/promises'
import type { ChunkBody } from './transport.js'
import { LinkedAbort } from './linked-abort.js'
import { chunkHedgeDelayMs, chunkHedgeWaitMsMax, replicaStallMs } from '../shared/limits.js'

export interface ReadOptions {
  start?: number                // first byte, default 0
  end?: number                  // last byte, INCLUSIVE (like fs.createReadStream), default: end of file
  highWaterMark?: number
  deadlineMs?: number           // budget of the open, and of retrying one chunk after its first failure
  signal?: AbortSignal
  verifyChunks?: boolean        // hold each whole chunk until its CRC32 matched (memory: one chunk)
}

export interface ReadContext {
  transport: Transport
  policy: RetryPolicy
  deadlineMs: number
  requestTimeoutMs: number
  // fresh: skip the cache (after replicas failed: locations or tokens may be stale)
  open: (path: string, options: { fresh: boolean, deadlineMs: number, signal: AbortSignal }) => Promise<OpenReply>
}

interface LocatedChunk { location: ChunkLocation, fileOffsetBytes: number }

// Where a chunk read stands; shared by the attempts on successive replicas.
interface ChunkProgress {
  positionBytes: number         // next chunk-relative byte wanted
  crc32: number                 // over [fromBytes, positionBytes)
  held: Buffer[]                // verifyChunks: bytes read but not yet given out
}

export function createReadStream (context: ReadContext, path: string, options: ReadOptions = {}): Readable {
  const start = options.start ?? 0
  const end = options.end ?? Number.MAX_SAFE_INTEGER
  if (!Number.isSafeInteger(start) || start < 0) throw new GranaryError('GRN_INVALID_ARGUMENT', [`start must be a non-negative integer, got ${String(options.start)}`])
  if (!Number.isSafeInteger(end) || end < start) throw new GranaryError('GRN_INVALID_ARGUMENT', [`end must be an integer ≥ start (${start}), got ${String(options.end)}`])
  if (options.signal?.aborted === true) throw abortedError(options.signal)
  const controller = new AbortController()
  const signal = options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal])
  const generator = readRange(context, path, start, end + 1, { ...options, signal })
  const stream = Readable.from(generator, { objectMode: false, highWaterMark: options.highWaterMark })
  // A destroyed stream must not leave a request hanging until its timeout.
  const onAbort = (): void => { stream.destroy(abortedError(options.signal as AbortSignal)) }
  options.signal?.addEventListener('abort', onAbort, { once: true })
  stream.once('close', () => {
    options.signal?.removeEventListener('abort', onAbort)
    // Ended: nothing is left to abort (and an error object per read, stack and all, was measurable at
    // thousands of small reads a second).
    if (!stream.readableEnded) controller.abort(new GranaryError('GRN_ABORTED', [`read of ${path} closed`]))
  })
  return stream
}

// readFile's read: the bytes createReadStream with verifyChunks would yield, gathered into one Buffer straight from
// the chunk reads, without a Readable, its async iterator and an AbortController per read (~20-30 µs of the
// ~170 µs of client CPU a 4 KiB readFile cost). At most bytesMax bytes, else GRN_LIMIT_EXCEEDED.
export async function readAll (context: ReadContext, path: string, options: { deadlineMs?: number, signal?: AbortSignal }, bytesMax: number): Promise<Buffer> {
  if (options.signal?.aborted === true) throw abortedError(options.signal)
  const pieces: Buffer[] = []
  let totalBytes = 0
  for await (const piece of readRange(context, path, 0, Number.MAX_SAFE_INTEGER, { ...options, signal: options.signal ?? neverAborted, verifyChunks: true })) {
    totalBytes += piece.length
    if (totalBytes > bytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`readFile of ${path}`, bytesMax])   // for-await's return() ends the reads
    pieces.push(piece)
  }
  return Buffer.concat(pieces, totalBytes)
}

// The signal of a read whose caller gave none. Each request links to it with one listener and releases it when
// done (LinkedAbort), so it holds at most one listener per request in flight: no listener limit applies.
const neverAborted = new AbortController().signal
setMaxListeners(0, neverAborted)

// Yields the bytes [startBytes, endBytes) of the file (clipped to its size), chunk by chunk.
async function * readRange (context: ReadContext, path: string, startBytes: number, endBytes: number,
  options: ReadOptions & { signal: AbortSignal }): AsyncGenerator<Buffer> {
  const deadlineMs = options.deadlineMs ?? context.deadlineMs
  const opened = await context.open(path, { fresh: false, deadlineMs, signal: options.signal })
  for (const chunk of locateChunks(opened, path)) {
    const chunkEnd = chunk.fileOffsetBytes + chunk.location.lengthBytes
    if (chunkEnd <= startBytes) continue
    if (chunk.fileOffsetBytes >= endBytes) break
    const fromBytes = Math.max(startBytes, chunk.fileOffsetBytes) - chunk.fileOffsetBytes
    const toBytes = Math.min(endBytes, chunkEnd) - chunk.fileOffsetBytes
    yield * readChunk(context, path, chunk.location, fromBytes, toBytes, { deadlineMs, signal: options.signal, verify: options.verifyChunks === true })
  }
}

// The chunks in file order with their offsets, checked to tile the file exactly.
export function locateChunks (opened: OpenReply, path: string): LocatedChunk[] {
  const sorted = [...opened.chunks].sort((a, b) => a.chunkIndex - b.chunkIndex)
  const located: LocatedChunk[] = []
  let offsetBytes = 0
  for (const [index, location] of sorted.entries()) {
    if (location.chunkIndex !== index) throw new GranaryError('GRN_INTEGRITY', [path, `chunk ${index} is missing from the metadata`])
    located.push({ location, fileOffsetBytes: offsetBytes })
    offsetBytes += location.lengthBytes
  }
  if (offsetBytes !== opened.stat.sizeBytes) {
    throw new GranaryError('GRN_INTEGRITY', [path, `chunks hold ${offsetBytes} bytes, the file has ${opened.stat.sizeBytes}`])
  }
  return located
}

interface ChunkReadOptions { deadlineMs: number, signal: AbortSignal, verify: boolean }

// Reads [fromBytes, toBytes) of one chunk: replicas in order, each taking over at the byte the last one
// reached. After a round where every replica failed, back off, re-open the file (fresh locations and
// tokens) and go round again, within one budget that starts at the first failure.
async function * readChunk (context: ReadContext, path: string, first: ChunkLocation, fromBytes: number, toBytes: number,
  options: ChunkReadOptions): AsyncGenerator<Buffer> {
  const whole = fromBytes === 0 && toBytes === first.lengthBytes
  const progress: ChunkProgress = { positionBytes: fromBytes, crc32: 0, held: [] }
  let location = hungLast(context, first)
  let deadline: Deadline | undefined
  for (let round = 1; ; round++) {
    let last: GranaryError | undefined
    let next = 0
    while (next < location.replicas.length) {
      let replica = location.replicas[next] as ChunkserverAddress
      try {
        const opened = await openHedged(context, location, next, progress, toBytes, options, (index, err) => {
          last = err
          publish('replicaError', () => ({ chunkHandle: location.chunkHandle, url: location.replicas[index]?.url, offsetBytes: progress.positionBytes, ...describeError(err) }))
        })
        replica = location.replicas[opened.index] as ChunkserverAddress
        next = opened.index + 1
        try {
          yield * streamFromReplica(location, replica, opened.body, progress, toBytes, options, next < location.replicas.length)
        } finally {
          opened.link.release()
        }
        if (whole) checkChunkCrc(location, replica, progress, options.verify)
        yield * progress.held
        return
      } catch (err) {
        if (options.signal.aborted) throw abortedError(options.signal)
        if (!isGranaryError(err) || (!err.retryable && !replicaSpecific.has(err.code))) throw err
        if (isStreamedCorruption(err, options.verify)) throw err
        if ((err as { [allFailed]?: true })[allFailed] === true) break   // every replica from `next` on failed to open
        last = err
        publish('replicaError', () => ({ chunkHandle: location.chunkHandle, url: replica.url, offsetBytes: progress.positionBytes, ...describeError(err) }))
      }
    }
    last ??= new GranaryError('GRN_UNAVAILABLE', [`chunk ${location.chunkHandle}`, 'no replica is live'])
    deadline ??= new Deadline(options.deadlineMs)
    const delayMs = backoffDelayMs(round, context.policy)
    if (round >= context.policy.attemptsMax || deadline.remainingMs() <= delayMs + context.policy.retryDelayMsMin) {
      throw deadlineExceeded(`read chunk ${first.chunkIndex} of ${path}`, deadline, round, last)
    }
    await sleep(delayMs, undefined, { signal: options.signal }).catch(() => { throw abortedError(options.signal) })
    location = hungLast(context, await refreshLocation(context, path, location, deadline, options.signal))
  }
}

// The replicas with those this client raced as hung lately moved to the end (in their order): a hung server
// costs one read one hedge delay, not every chunk of every read after it.
function hungLast (context: ReadContext, location: ChunkLocation): ChunkLocation {
  const hung = location.replicas.filter((replica) => context.transport.isHung(replica.url))
  if (hung.length === 0 || hung.length === location.replicas.length) return location
  return { ...location, replicas: [...location.replicas.filter((replica) => !hung.includes(replica)), ...hung] }
}

// Errors that say one replica cannot serve this chunk (its token, its copy), not that the chunk is bad:
// another replica, or fresh metadata, may well do.
const replicaSpecific = new Set(['GRN_TOKEN_EXPIRED', 'GRN_TOKEN_INVALID', 'GRN_STALE_VERSION', 'GRN_CHUNK_NOT_FOUND', 'GRN_STALE_TERM'])

// In streaming mode the bytes of a chunk that failed its CRC32 are already out: no replica can take them back.
const streamedCorruption = Symbol('streamedCorruption')
function isStreamedCorruption (err: GranaryError, verify: boolean): boolean {
  return !verify && (err as GranaryError & { [streamedCorruption]?: true })[streamedCorruption] === true
}

const allFailed = Symbol('allFailed')

// Asks replicas[from] for the bytes from progress.positionBytes; when it has not answered within the hedge
// delay (or failed), the next replica too, and so on. The first body wins; the other requests are aborted.
// onError hears each replica that failed. When all failed, throws the last error marked allFailed.
async function openHedged (context: ReadContext, location: ChunkLocation, from: number, progress: ChunkProgress, toBytes: number,
  options: ChunkReadOptions, onError: (index: number, err: GranaryError) => void): Promise<{ body: ChunkBody, index: number, link: LinkedAbort }> {
  const replicas = location.replicas
  const aborts = new Map<number, LinkedAbort>()   // requests still out; the winner's link goes to the caller, who releases it
  let launched = from
  let failed = 0
  let settled = false
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise((resolve, reject) => {
      const launch = (): void => {
        clearTimeout(timer)
        if (settled || launched >= replicas.length) return
        const index = launched++
        const abort = new LinkedAbort(options.signal)
        aborts.set(index, abort)
        context.transport.getChunk({
          url: (replicas[index] as ChunkserverAddress).url, chunkHandle: location.chunkHandle, version: location.version, token: location.token,
          offsetBytes: progress.positionBytes, lengthBytes: toBytes - progress.positionBytes, timeoutMs: context.requestTimeoutMs,
          signal: abort.signal,
        }).then((body) => {
          if (settled) { body.destroy(); abort.release(); return }
          settled = true
          clearTimeout(timer)
          aborts.delete(index)
          resolve({ body, index, link: abort })
        }, (err: unknown) => {
          abort.release()
          if (settled) return
          if (options.signal.aborted || !isGranaryError(err) || (!err.retryable && !replicaSpecific.has(err.code))) { settled = true; clearTimeout(timer); reject(err); return }
          failed++
          onError(index, err)
          if (failed === launched - from) {
            if (launched < replicas.length) { launch(); return }
            settled = true
            reject(Object.assign(err, { [allFailed]: true }))
          }
        })
        if (launched < replicas.length) armHedge((replicas[index] as ChunkserverAddress).url, performance.now())
      }
      // Races the next replica once this one has not answered within chunkHedgeDelayMs and its server has sent
      // this client nothing since it was asked (hung), or within chunkHedgeWaitMsMax while it sends others their
      // bytes (this request waits in the client's own pool queue: racing it would only add connections). The
      // decision waits one turn for I/O already arrived, so a client that was itself stalled blames no server.
      const armHedge = (url: string, askedAtMs: number): void => {
        const generation = launched   // a launch since (this replica failed at once) re-arms for the next one
        const decide = (): void => {
          if (settled || launched !== generation) return
          const waitedMs = performance.now() - askedAtMs
          const busy = (context.transport.lastHeardMs(url) ?? -Infinity) > askedAtMs   // it sent this client something since
          if (busy && waitedMs < chunkHedgeWaitMsMax) {
            timer = setTimeout(() => { setImmediate(decide) }, Math.min(chunkHedgeDelayMs, chunkHedgeWaitMsMax - waitedMs))
            return
          }
          if (!busy) context.transport.markHung(url)
          publish('failover', () => ({ what: `read chunk ${location.chunkHandle}`, from: url, to: (replicas[launched] as ChunkserverAddress).url, code: 'GRN_HEDGE',
            message: `no answer within ${Math.round(waitedMs)} ms${busy ? ', its server busy with other reads' : ' and nothing from its server since'}: racing the next replica` }))
          launch()
        }
        timer = setTimeout(() => { setImmediate(decide) }, chunkHedgeDelayMs)
      }
      launch()
    })
  } finally {
    for (const abort of aborts.values()) abort.abort(new GranaryError('GRN_ABORTED', [`chunk ${location.chunkHandle}: another replica answered first`]))
  }
}

// Streams an opened body into progress. With another replica left (canMoveOn), a body that sends nothing for
// replicaStallMs while it is being waited on (not while the reader is paused) is dropped as GRN_TIMEOUT.
async function * streamFromReplica (location: ChunkLocation, replica: ChunkserverAddress, body: ChunkBody, progress: ChunkProgress,
  toBytes: number, options: ChunkReadOptions, canMoveOn: boolean): AsyncGenerator<Buffer> {
  const iterator = body.pieces[Symbol.asyncIterator]()
  let ended = false
  try {
    // Read to the body's end, not just to its last byte: a body destroyed before its end is an aborted request
    // to undici (an error object, and a socket that may not be reused), once per chunk read.
    while (true) {
      let result: IteratorResult<Buffer>
      try {
        result = canMoveOn ? await withStallBound(iterator.next(), replica, location) : await iterator.next()
      } catch (err) {
        if (progress.positionBytes >= toBytes) break   // every byte is here: a failure after them costs nothing
        throw err
      }
      if (result.done === true) { ended = true; break }
      const received = result.value
      const roomBytes = toBytes - progress.positionBytes
      const piece = received.length <= roomBytes ? received : received.subarray(0, roomBytes)
      if (piece.length === 0) continue
      progress.positionBytes += piece.length
      progress.crc32 = crc32(piece, progress.crc32)
      if (options.verify) progress.held.push(piece)
      else yield piece
    }
  } finally {
    if (!ended) body.destroy()
  }
  if (progress.positionBytes < toBytes) {
    throw new GranaryError('GRN_UNAVAILABLE', [replica.url, `the body of chunk ${location.chunkHandle} ended at byte ${progress.positionBytes} of ${toBytes}`])
  }
}

async function withStallBound<R> (next: Promise<R>, replica: ChunkserverAddress, location: ChunkLocation): Promise<R> {
  let timer: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new GranaryError('GRN_TIMEOUT', [`${replica.url} (chunk ${location.chunkHandle}: no bytes)`, replicaStallMs])) }, replicaStallMs)
  })
  next.catch(() => {})   // a piece that fails after the stall bound fired is not an unhandled rejection
  try {
    return await Promise.race([next, stalled])
  } finally {
    clearTimeout(timer)
  }
}

function checkChunkCrc (location: ChunkLocation, replica: ChunkserverAddress, progress: ChunkProgress, verify: boolean): void {
  if (progress.crc32 === location.crc32) return
  const err = new GranaryError('GRN_INTEGRITY', [`chunk ${location.chunkHandle}`,
    `CRC32 ${progress.crc32} read (last from ${replica.url}), ${location.crc32} committed`], { failedUrl: replica.url })
  if (verify) {
    // Nothing was given out: start the chunk again on the next replica.
    progress.positionBytes = 0
    progress.crc32 = 0
    progress.held = []
  } else {
    (err as GranaryError & { [streamedCorruption]?: true })[streamedCorruption] = true
  }
  throw err
}

// Fresh metadata for the same chunk. The chunk must be the one we were reading (same handle, version, length
// and CRC): a file replaced mid-read is an error, not a silent switch to other bytes.
async function refreshLocation (context: ReadContext, path: string, current: ChunkLocation, deadline: Deadline, signal: AbortSignal): Promise<ChunkLocation> {
  const opened = await context.open(path, { fresh: true, deadlineMs: Math.max(1, deadline.remainingMs()), signal })
  const fresh = opened.chunks.find((chunk) => chunk.chunkIndex === current.chunkIndex)
  if (fresh === undefined || fresh.chunkHandle !== current.chunkHandle || fresh.lengthBytes !== current.lengthBytes || fresh.crc32 !== current.crc32) {
    throw new GranaryError('GRN_CHUNK_MISMATCH', [current.chunkHandle, `${path} changed while it was being read`])
  }
  assert(fresh.chunkIndex === current.chunkIndex, 'refreshed the same chunk index')
  return fresh
}
