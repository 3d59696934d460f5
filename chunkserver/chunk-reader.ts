// Ranged reads of a stored chunk. Reads go in steps of readBufferBytes aligned to 64 KiB blocks, and every
// block is checked against its stored CRC before any byte of it leaves this server. The first step is read
// and checked before the reply starts, so a bad block there becomes a clean GRN_CHECKSUM_MISMATCH; a bad block
// later cuts the body short (the client sees fewer bytes than content-length and tries another replica).
import fs from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { crc32 } from '../shared/checksum.js'
import { GranaryError } from '../shared/errors.js'
import { assert } from '../shared/assert.js'
import { blockSizeBytes, readBufferBytes } from '../shared/limits.js'
import type { ChunkHandle } from '../shared/ids.js'
import type { Logger } from '../shared/log.js'
import type { ChunkStore } from './store.js'
import { blockCountOf, crcBytes, decodeFooter, decodeTable, fileBytesOf, footerBytes } from './chunk-format.js'

export interface ByteRange { offsetBytes: number, lengthBytes: number | null }   // null length = to the end

export interface ChunkRead {
  chunkLengthBytes: number     // the stored chunk's full length
  offsetBytes: number          // clamped
  lengthBytes: number          // clamped: bytes the body will hold
  body: Readable | null        // null when lengthBytes is 0
  bytes?: Buffer               // a small chunk's range, read and checked whole (body streams the same bytes)
}

// A chunk file this small (data, CRC table and footer) is read in one pread and answered as one Buffer: a 4 KiB
// file's GET was open, fstat, trailer read, data read, close and an async-generator stream (measured ~200-400 µs
// of chunkserver CPU per 4 KiB get); now open, one read, close. A bigger file streams in readBufferBytes steps.
export const wholeReadBytesMax = 256 * 1024
// A chunk of at most one block is read on the event loop (openSync, readSync, closeSync), not on the thread pool:
// from the page cache that is a few µs of copying, against ~25 µs of CPU and a wait for a CPU per thread-pool round
// trip (a 4 KiB read in a request handler measured 33-37 µs of server CPU per request synchronously, 110-120 µs
// through fs.promises). A cold read blocks the loop for one small disk read (~0.1 ms on an SSD), as nginx's default
// blocking reads do; anything bigger stays on the thread pool, and so do the scrubber's reads (cold by design).
export const syncReadChunkBytesMax = blockSizeBytes

// The whole file in one read (one byte more: a file longer than its footer says is caught like a shorter one),
// its trailer checked, and the blocks covering the range checked; returns the range's bytes.
async function readWhole (file: FileHandle, chunkHandle: ChunkHandle, chunkLengthBytes: number, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(fileBytesOf(chunkLengthBytes) + 1)
  const { bytesRead } = await file.read(buf, 0, buf.length, 0)
  return checkWhole(buf, bytesRead, chunkHandle, chunkLengthBytes, offsetBytes, lengthBytes)
}

// The same as readWhole, on the event loop, for a chunk of at most syncReadChunkBytesMax.
function readWholeSync (path: string, chunkHandle: ChunkHandle, version: number, chunkLengthBytes: number, offsetBytes: number, lengthBytes: number): Buffer {
  let fd: number
  try {
    fd = fs.openSync(path, 'r')
  } catch (err) {
    throw openFailure(err, chunkHandle, version)
  }
  const buf = Buffer.allocUnsafe(fileBytesOf(chunkLengthBytes) + 1)
  let bytesRead: number
  try {
    bytesRead = fs.readSync(fd, buf, 0, buf.length, 0)
  } finally {
    fs.closeSync(fd)
  }
  return checkWhole(buf, bytesRead, chunkHandle, chunkLengthBytes, offsetBytes, lengthBytes)
}

function checkWhole (buf: Buffer, bytesRead: number, chunkHandle: ChunkHandle, chunkLengthBytes: number, offsetBytes: number, lengthBytes: number): Buffer {
  const fileBytes = fileBytesOf(chunkLengthBytes)
  const blockCount = blockCountOf(chunkLengthBytes)
  const trailer = buf.subarray(chunkLengthBytes, fileBytes)
  const footer = bytesRead >= chunkLengthBytes + footerBytes ? decodeFooter(trailer.subarray(blockCount * crcBytes), bytesRead) : 'short trailer'
  const table = typeof footer === 'string' || footer.lengthBytes !== chunkLengthBytes ? null : decodeTable(trailer, footer)
  if (table === null) throw new GranaryError('GRN_CHECKSUM_MISMATCH', [chunkHandle, blockCount], { blockIndex: blockCount, trailer: true })
  const endBytes = offsetBytes + lengthBytes
  for (let blockIndex = Math.floor(offsetBytes / blockSizeBytes); blockIndex * blockSizeBytes < endBytes; blockIndex++) {
    const block = buf.subarray(blockIndex * blockSizeBytes, Math.min((blockIndex + 1) * blockSizeBytes, chunkLengthBytes))
    if (crc32(block) !== table[blockIndex]) throw new GranaryError('GRN_CHECKSUM_MISMATCH', [chunkHandle, blockIndex], { blockIndex })
  }
  return buf.subarray(offsetBytes, endBytes)
}

interface OpenChunk { file: FileHandle, table: Uint32Array, chunkHandle: ChunkHandle, version: number, chunkLengthBytes: number }

// `onLoop` false keeps even a one-block chunk on the thread pool: the scrubber's reads are cold by design, and a
// cold read on the loop would stall every request of this server for a disk read.
export async function readChunk (store: ChunkStore, log: Logger, chunkHandle: ChunkHandle, version: number, range: ByteRange, onLoop = true): Promise<ChunkRead> {
  const { path, lengthBytes: chunkLengthBytes } = store.lookup(chunkHandle, version)
  const offsetBytes = Math.min(range.offsetBytes, chunkLengthBytes)
  const lengthBytes = Math.min(range.lengthBytes ?? chunkLengthBytes, chunkLengthBytes - offsetBytes)
  if (lengthBytes === 0) return { chunkLengthBytes, offsetBytes, lengthBytes, body: null }
  if (onLoop && chunkLengthBytes <= syncReadChunkBytesMax) {
    try {
      const bytes = readWholeSync(path, chunkHandle, version, chunkLengthBytes, offsetBytes, lengthBytes)
      return { chunkLengthBytes, offsetBytes, lengthBytes, bytes, get body () { return Readable.from([bytes], { objectMode: false }) } }
    } catch (err) {
      throw noteCorruption(store, log, chunkHandle, version, err)
    }
  }
  const file = await open(path, 'r').catch((err: unknown) => { throw openFailure(err, chunkHandle, version) })
  if (fileBytesOf(chunkLengthBytes) <= wholeReadBytesMax) {
    try {
      const bytes = await readWhole(file, chunkHandle, chunkLengthBytes, offsetBytes, lengthBytes)
      return { chunkLengthBytes, offsetBytes, lengthBytes, bytes, get body () { return Readable.from([bytes], { objectMode: false }) } }
    } catch (err) {
      throw noteCorruption(store, log, chunkHandle, version, err)
    } finally {
      await file.close()
    }
  }
  try {
    const chunk: OpenChunk = { file, table: await readTable(file, chunkLengthBytes, chunkHandle), chunkHandle, version, chunkLengthBytes }
    const first = await readStep(chunk, offsetBytes, offsetBytes + lengthBytes)
    const body = Readable.from(steps(chunk, first, offsetBytes + first.length, offsetBytes + lengthBytes), { objectMode: false, highWaterMark: readBufferBytes })
    // Closed with the stream, not in the generator: a stream destroyed before its first read never runs it.
    body.once('close', () => { file.close().catch(() => {}) })
    return { chunkLengthBytes, offsetBytes, lengthBytes, body }
  } catch (err) {
    await file.close()
    throw noteCorruption(store, log, chunkHandle, version, err)
  }

  async function * steps (chunk: OpenChunk, first: Buffer, fromBytes: number, endBytes: number): AsyncGenerator<Buffer> {
    try {
      yield first
      let positionBytes = fromBytes
      while (positionBytes < endBytes) {
        const buf = await readStep(chunk, positionBytes, endBytes)
        positionBytes += buf.length
        yield buf
      }
    } catch (err) {
      throw noteCorruption(store, log, chunkHandle, version, err)
    }
  }
}

// Reads the whole blocks covering [positionBytes, min(endBytes, next step boundary)), checks each one, and
// returns exactly the requested bytes of them.
async function readStep (chunk: OpenChunk, positionBytes: number, endBytes: number): Promise<Buffer> {
  assert(positionBytes < endBytes, 'a step reads at least one byte')
  const firstBlock = Math.floor(positionBytes / blockSizeBytes)
  const stepStartBytes = firstBlock * blockSizeBytes
  const stepEndBytes = Math.min(stepStartBytes + readBufferBytes, chunk.chunkLengthBytes, roundUpToBlock(endBytes))
  const buf = Buffer.allocUnsafeSlow(stepEndBytes - stepStartBytes)
  let filledBytes = 0
  while (filledBytes < buf.length) {
    const { bytesRead } = await chunk.file.read(buf, filledBytes, buf.length - filledBytes, stepStartBytes + filledBytes)
    if (bytesRead === 0) throw new GranaryError('GRN_CHECKSUM_MISMATCH', [chunk.chunkHandle, firstBlock + Math.floor(filledBytes / blockSizeBytes)])
    filledBytes += bytesRead
  }
  for (let start = 0; start < buf.length; start += blockSizeBytes) {
    const blockIndex = firstBlock + start / blockSizeBytes
    const block = buf.subarray(start, Math.min(start + blockSizeBytes, buf.length))
    if (crc32(block) !== chunk.table[blockIndex]) throw new GranaryError('GRN_CHECKSUM_MISMATCH', [chunk.chunkHandle, blockIndex], { blockIndex })
  }
  return buf.subarray(positionBytes - stepStartBytes, Math.min(endBytes, stepEndBytes) - stepStartBytes)
}

// The CRC table and footer at the end of the file; a damaged trailer fails like a damaged block, with the
// block index set to blockCount (one past the last data block: "the trailer").
async function readTable (file: FileHandle, chunkLengthBytes: number, chunkHandle: ChunkHandle): Promise<Uint32Array> {
  const blockCount = blockCountOf(chunkLengthBytes)
  const trailer = Buffer.allocUnsafe(blockCount * crcBytes + footerBytes)
  const { size } = await file.stat()
  const { bytesRead } = await file.read(trailer, 0, trailer.length, chunkLengthBytes)
  const footer = bytesRead === trailer.length ? decodeFooter(trailer.subarray(blockCount * crcBytes), size) : 'short trailer'
  const table = typeof footer === 'string' || footer.lengthBytes !== chunkLengthBytes ? null : decodeTable(trailer, footer)
  if (table === null) throw new GranaryError('GRN_CHECKSUM_MISMATCH', [chunkHandle, blockCount], { blockIndex: blockCount, trailer: true })
  return table
}

// What a failed open of a chunk file throws: a file deleted between the lookup and the open (a delete command
// raced this read) is the same as not stored.
function openFailure (err: unknown, chunkHandle: ChunkHandle, version: number): unknown {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' ? new GranaryError('GRN_CHUNK_NOT_FOUND', [chunkHandle, version]) : err
}

function noteCorruption (store: ChunkStore, log: Logger, chunkHandle: ChunkHandle, version: number, err: unknown): unknown {
  if ((err as GranaryError | undefined)?.code !== 'GRN_CHECKSUM_MISMATCH') return err
  const blockIndex = ((err as GranaryError).details as { blockIndex?: number } | undefined)?.blockIndex
  log.warn({ chunkHandle, version, blockIndex }, 'block failed its checksum')
  store.noteCorrupt(chunkHandle, version)
  return err
}

function roundUpToBlock (bytes: number): number {
  return Math.ceil(bytes / blockSizeBytes) * blockSizeBytes
}

// 'bytes=a-b' (inclusive), 'bytes=a-' or 'bytes=-n' (the last n bytes) → a range; anything else is refused.
export function parseRangeHeader (header: string, chunkLengthBytes: number): ByteRange {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (match === null || (match[1] === '' && match[2] === '')) throw new GranaryError('GRN_INVALID_ARGUMENT', [`unsupported Range header ${JSON.stringify(header)}`])
  const [, first = '', last = ''] = match
  if (first === '') {
    const suffixBytes = Math.min(Number(last), chunkLengthBytes)
    return { offsetBytes: chunkLengthBytes - suffixBytes, lengthBytes: suffixBytes }
  }
  const offsetBytes = Number(first)
  if (last === '') return { offsetBytes, lengthBytes: null }
  const lastBytes = Number(last)
  if (lastBytes < offsetBytes) throw new GranaryError('GRN_INVALID_ARGUMENT', [`Range ${JSON.stringify(header)} ends before it starts`])
  return { offsetBytes, lengthBytes: lastBytes - offsetBytes + 1 }
}
