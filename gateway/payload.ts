// A request body on its way to the store: decodes the aws-chunked framing (checking each chunk's signature and
// the signed trailer), counts bytes, and computes the MD5 (the ETag) and whichever checksums the client sent
// (Content-MD5, x-amz-checksum-* as a header or a trailer, the payload's SHA-256). All checks run in _flush,
// BEFORE the end of the stream reaches the write stream behind it: a body that fails one never completes a file
// (the writer is destroyed and abandons it). `onVerified` runs there too, so the MD5 can ride on the complete.
// Bytes leave in pieces of bodyPieceBytes (one copy): a socket hands the body over in reads of ≤ 64 KiB, and a
// piece passed on as it came costs a write per piece to the first chunkserver and so a smaller read, a disk
// write and a forward on every hop of its pipeline (measured: +3 CPU-s per GiB across the chunkservers).
import { Transform, type TransformCallback } from 'node:stream'
import { createHash, type Hash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import type { IncomingHttpHeaders } from 'node:http'
import { S3Error } from './errors.js'
import { chunkSignature, trailerSignature, headerValue, type PayloadMode } from './sigv4.js'
import { awsChunkHeaderBytesMax, awsChunkTrailerBytesMax, bodyPieceBytes } from './limits.js'
import { crc32c } from './crc32c.js'

export type ChecksumAlgorithm = 'crc32' | 'crc32c' | 'sha1' | 'sha256'
const checksumAlgorithms: readonly ChecksumAlgorithm[] = ['crc32', 'crc32c', 'sha1', 'sha256']

export interface Verified { md5Hex: string, sizeBytes: number, checksums: Partial<Record<ChecksumAlgorithm, string>> }

export interface PayloadOptions {
  mode: PayloadMode
  headers: IncomingHttpHeaders
  sizeBytesMax: number
  onVerified?: (verified: Verified) => void | Promise<void>
}

interface Running { update: (piece: Buffer) => void, digest: () => string }

function running (algorithm: ChecksumAlgorithm | 'md5'): Running {
  if (algorithm === 'crc32' || algorithm === 'crc32c') {
    let value = 0
    const step = algorithm === 'crc32' ? crc32 : crc32c
    return {
      update: (piece) => { value = step(piece, value) },
      digest: () => { const out = Buffer.alloc(4); out.writeUInt32BE(value >>> 0); return out.toString('base64') }
    }
  }
  const hash: Hash = createHash(algorithm)
  return { update: (piece) => { hash.update(piece) }, digest: () => hash.digest(algorithm === 'md5' ? 'hex' : 'base64') }
}

export class PayloadReader extends Transform {
  readonly #options: PayloadOptions
  readonly #md5 = running('md5')
  readonly #sha256: Hash | null
  readonly #checksums = new Map<ChecksumAlgorithm, Running>()
  readonly #expected = new Map<ChecksumAlgorithm, string>()
  readonly #trailerNames: string[]
  readonly #decodedLength: number | undefined
  readonly #expectedBytes: number | undefined   // the body's decoded length, when announced
  #sizeBytes = 0
  #piece: Buffer | null = null          // being filled, up to bodyPieceBytes
  #pieceBytes = 0
  // aws-chunked state
  #state: 'header' | 'data' | 'dataEnd' | 'trailer' | 'done' = 'header'
  #line = Buffer.alloc(0)
  #chunkRemaining = 0
  #chunkHash: Hash | null = null
  #chunkSignatureSent = ''
  #previousSignature = ''
  #trailerText = ''
  #trailerBytes = 0
  #trailerSignatureSent: string | undefined

  constructor (options: PayloadOptions) {
    super()
    this.#options = options
    const { mode, headers } = options
    this.#sha256 = mode.kind === 'sha256' ? createHash('sha256') : null
    if (mode.kind === 'chunked' && mode.chunkSigning !== null) this.#previousSignature = mode.chunkSigning.seedSignature
    for (const algorithm of checksumAlgorithms) {
      const given = headerValue(headers, `x-amz-checksum-${algorithm}`)
      if (given !== undefined) {
        this.#expected.set(algorithm, given)
        this.#checksums.set(algorithm, running(algorithm))
      }
    }
    const trailer = headerValue(headers, 'x-amz-trailer')
    this.#trailerNames = trailer === undefined ? [] : trailer.split(',').map((name) => name.trim().toLowerCase()).filter((name) => name !== '')
    for (const name of this.#trailerNames) {
      const algorithm = name.replace(/^x-amz-checksum-/, '') as ChecksumAlgorithm
      if (!name.startsWith('x-amz-checksum-') || !checksumAlgorithms.includes(algorithm)) {
        throw new S3Error('InvalidRequest', `the trailer ${name} is not a supported checksum (x-amz-checksum-crc32, -crc32c, -sha1, -sha256)`)
      }
      this.#checksums.set(algorithm, running(algorithm))
    }
    const decoded = headerValue(headers, 'x-amz-decoded-content-length')
    this.#decodedLength = decoded === undefined ? undefined : Number(decoded)
    if (this.#decodedLength !== undefined && (!Number.isSafeInteger(this.#decodedLength) || this.#decodedLength < 0)) {
      throw new S3Error('InvalidArgument', 'x-amz-decoded-content-length must be a non-negative integer')
    }
    if (this.#decodedLength !== undefined && this.#decodedLength > options.sizeBytesMax) throw new S3Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size')
    const contentLength = Number(headerValue(headers, 'content-length') ?? NaN)
    this.#expectedBytes = mode.kind === 'chunked' ? this.#decodedLength : Number.isSafeInteger(contentLength) && contentLength >= 0 ? contentLength : undefined
  }

  get sizeBytes (): number { return this.#sizeBytes }

  override _transform (piece: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      if (this.#options.mode.kind === 'chunked') this.#decode(piece)
      else this.#data(piece)
      callback()
    } catch (err) {
      callback(err as Error)
    }
  }

  override _flush (callback: TransformCallback): void {
    this.#pushPiece()
    this.#finish().then(() => { callback() }, (err: Error) => { callback(err) })
  }

  #data (piece: Buffer): void {
    if (piece.length === 0) return
    this.#sizeBytes += piece.length
    if (this.#sizeBytes > this.#options.sizeBytesMax) throw new S3Error('EntityTooLarge', 'Your proposed upload exceeds the maximum allowed size')
    let at = 0
    while (at < piece.length) {
      if (this.#piece === null) {
        // A piece never larger than what the body has left to send (when it says): a small body costs no 1 MiB.
        const left = this.#expectedBytes === undefined ? 0 : this.#expectedBytes - (this.#sizeBytes - piece.length + at)
        const sizeBytes = left > 0 ? Math.min(bodyPieceBytes, left) : bodyPieceBytes
        if (piece.length - at >= sizeBytes) {   // large enough as it came: no copy
          this.#emit(piece.subarray(at, at + sizeBytes))
          at += sizeBytes
          continue
        }
        this.#piece = Buffer.allocUnsafe(sizeBytes)
        this.#pieceBytes = 0
      }
      const copied = piece.copy(this.#piece, this.#pieceBytes, at)
      this.#pieceBytes += copied
      at += copied
      if (this.#pieceBytes === this.#piece.length) this.#pushPiece()
    }
  }

  // Digests run over whole pieces: fewer calls, and one pass over memory that was just written.
  #pushPiece (): void {
    if (this.#piece === null || this.#pieceBytes === 0) return
    const piece = this.#pieceBytes === this.#piece.length ? this.#piece : this.#piece.subarray(0, this.#pieceBytes)
    this.#piece = null
    this.#pieceBytes = 0
    this.#emit(piece)
  }

  #emit (piece: Buffer): void {
    this.#md5.update(piece)
    this.#sha256?.update(piece)
    for (const sum of this.#checksums.values()) sum.update(piece)
    this.push(piece)
  }

  // aws-chunked: "<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n" ... "0[;chunk-signature=<sig>]\r\n"
  // then trailer lines "name:value\r\n" and an empty line (the trailer forms), or just "\r\n".
  #decode (input: Buffer): void {
    let at = 0
    while (at < input.length) {
      if (this.#state === 'data') {
        const take = Math.min(this.#chunkRemaining, input.length - at)
        const piece = input.subarray(at, at + take)
        this.#chunkHash?.update(piece)
        this.#data(piece)
        this.#chunkRemaining -= take
        at += take
        if (this.#chunkRemaining === 0) { this.#endChunk(); this.#state = 'dataEnd' }
        continue
      }
      if (this.#state === 'done') {
        if (input.subarray(at).toString('latin1').trim() !== '') throw new S3Error('IncompleteBody', 'bytes after the end of the aws-chunked body')
        return
      }
      const newline = input.indexOf(0x0a, at)
      const end = newline === -1 ? input.length : newline + 1
      this.#line = Buffer.concat([this.#line, input.subarray(at, end)])
      at = end
      if (this.#line.length > awsChunkHeaderBytesMax) throw new S3Error('IncompleteBody', 'an aws-chunked header line is too long')
      if (newline === -1) return
      const line = this.#line.toString('latin1').replace(/\r?\n$/, '')
      this.#line = Buffer.alloc(0)
      this.#onLine(line)
    }
  }

  #onLine (line: string): void {
    const mode = this.#options.mode
    if (mode.kind !== 'chunked') return
    if (this.#state === 'dataEnd') {
      if (line !== '') throw new S3Error('IncompleteBody', 'an aws-chunked chunk is longer than its header said')
      this.#state = 'header'
      return
    }
    if (this.#state === 'header') {
      const match = /^([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?$/.exec(line)
      if (match === null) throw new S3Error('IncompleteBody', `malformed aws-chunked chunk header ${JSON.stringify(line.slice(0, 100))}`)
      const size = parseInt(match[1] as string, 16)
      if (mode.signed && match[2] === undefined) throw new S3Error('SignatureDoesNotMatch', 'an aws-chunked chunk has no chunk-signature')
      this.#chunkSignatureSent = match[2] ?? ''
      this.#chunkHash = mode.signed ? createHash('sha256') : null
      if (size === 0) {
        this.#endChunk()
        this.#state = mode.trailer ? 'trailer' : 'dataEnd'
        if (!mode.trailer) this.#state = 'done'
        return
      }
      this.#chunkRemaining = size
      this.#state = 'data'
      return
    }
    if (this.#state === 'trailer') {
      if (line === '') { this.#state = 'done'; return }
      this.#trailerBytes += line.length
      if (this.#trailerBytes > awsChunkTrailerBytesMax) throw new S3Error('IncompleteBody', 'the aws-chunked trailer is too long')
      const colon = line.indexOf(':')
      if (colon <= 0) throw new S3Error('IncompleteBody', 'malformed aws-chunked trailer line')
      const name = line.slice(0, colon).trim().toLowerCase()
      const value = line.slice(colon + 1).trim()
      if (name === 'x-amz-trailer-signature') { this.#trailerSignatureSent = value; return }
      if (!this.#trailerNames.includes(name)) throw new S3Error('InvalidRequest', `the trailer ${name} was not announced in x-amz-trailer`)
      this.#expected.set(name.replace(/^x-amz-checksum-/, '') as ChecksumAlgorithm, value)
      this.#trailerText += `${name}:${value}\n`
    }
  }

  #endChunk (): void {
    const mode = this.#options.mode
    if (mode.kind !== 'chunked' || !mode.signed || mode.chunkSigning === null) return
    const expected = chunkSignature(mode.chunkSigning, this.#previousSignature, (this.#chunkHash as Hash).digest('hex'))
    if (expected !== this.#chunkSignatureSent) throw new S3Error('SignatureDoesNotMatch', 'an aws-chunked chunk signature does not match')
    this.#previousSignature = expected
  }

  async #finish (): Promise<void> {
    const mode = this.#options.mode
    if (mode.kind === 'chunked') {
      if (this.#state !== 'done') throw new S3Error('IncompleteBody', 'the aws-chunked body ended before its last chunk')
      if (mode.signed && mode.trailer && mode.chunkSigning !== null) {
        const expected = trailerSignature(mode.chunkSigning, this.#previousSignature, this.#trailerText)
        if (this.#trailerSignatureSent !== expected) throw new S3Error('SignatureDoesNotMatch', 'the aws-chunked trailer signature does not match')
      }
      if (this.#decodedLength !== undefined && this.#decodedLength !== this.#sizeBytes) {
        throw new S3Error('IncompleteBody', `x-amz-decoded-content-length said ${this.#decodedLength} bytes, the body held ${this.#sizeBytes}`)
      }
    }
    if (this.#sha256 !== null && mode.kind === 'sha256' && this.#sha256.digest('hex') !== mode.sha256Hex) {
      throw new S3Error('XAmzContentSHA256Mismatch', 'The provided x-amz-content-sha256 header does not match what was computed.')
    }
    const md5Hex = this.#md5.digest()
    const contentMd5 = headerValue(this.#options.headers, 'content-md5')
    if (contentMd5 !== undefined && Buffer.from(md5Hex, 'hex').toString('base64') !== contentMd5) {
      throw new S3Error('BadDigest', 'The Content-MD5 you specified did not match what we received.')
    }
    const checksums: Verified['checksums'] = {}
    for (const [algorithm, sum] of this.#checksums) {
      const computed = sum.digest()
      const expected = this.#expected.get(algorithm)
      if (expected === undefined) throw new S3Error('InvalidRequest', `the trailer x-amz-checksum-${algorithm} was announced but not sent`)
      if (computed !== expected) throw new S3Error('BadDigest', `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`)
      checksums[algorithm] = computed
    }
    await this.#options.onVerified?.({ md5Hex, sizeBytes: this.#sizeBytes, checksums })
  }
}

// Content-MD5 is checked up front for form (base64 of 16 bytes), so a malformed one changes nothing.
export function checkContentMd5 (headers: IncomingHttpHeaders): void {
  const given = headerValue(headers, 'content-md5')
  if (given !== undefined && Buffer.from(given, 'base64').length !== 16) throw new S3Error('InvalidDigest', 'The Content-MD5 you specified was invalid.')
}
