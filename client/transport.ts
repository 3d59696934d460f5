// The one undici Agent of a client: every request to masters and chunkservers goes through it, with its
// timeouts passed explicitly. Socket-level failures become GranaryErrors here, so everything above branches
// on err.code and the retry logic reads `retryable` (GRN_UNAVAILABLE, GRN_TIMEOUT) from the error table.
import { signClient, type Credentials } from '../shared/auth.js'
import { Agent } from './undici-agent.js'
import { certificateError, isCertificateFailure } from '../shared/tls.js'
import type { Readable } from 'node:stream'
import { GranaryError, errorFromBody, isGranaryError, type ErrorBody } from '../shared/errors.js'
import { tokenHeader, pipelineHeader, chunkLengthHeader, positionHeader, parsePosition, type Position, type WriteChunkReply } from '../shared/protocol.js'
import type { ChunkHandle } from '../shared/ids.js'
import * as limits from '../shared/limits.js'
import { assert } from '../shared/assert.js'
import { Batcher, batchKindOf } from './batch.js'
import { LinkedAbort } from './linked-abort.js'

export interface TransportOptions {
  credentials?: Credentials | null   // signs every metadata request (shared/auth.ts); null: unsigned
  requestTimeoutMs: number        // connect, headers and body-idle timeout unless a call passes a shorter one
  keepAliveTimeoutMs: number      // idle pooled sockets close after this, so a finished test run can exit
  connectionsPerOrigin?: number
  ca?: Buffer                     // trusted for https:// masters and chunkservers (default: the system's CAs)
  batching?: boolean              // metadata calls that queue up for one server travel together (client/batch.ts); default on
}

export type QueryValues = Record<string, string | number | boolean | undefined>

export interface JsonRequest {
  method: 'GET' | 'POST'
  origin: string
  path: string
  query?: QueryValues
  body?: unknown
  timeoutMs?: number
  signal?: AbortSignal
  headers?: Record<string, string>   // extra request headers (e.g. protocol.staleOkHeader)
  reply?: { position: Position | null }   // filled in as soon as the reply's headers arrive, error replies too
}

export interface PutChunkRequest {
  url: string                     // pipeline[0]
  chunkHandle: ChunkHandle
  version: number
  token: string
  downstreamUrls: string[]        // the rest of the pipeline, in order
  body: Readable
  lengthBytes?: number            // known when the whole chunk is already buffered (a resend)
  timeoutMs: number               // the reply must come this long after the last byte (undici headersTimeout)
  signal?: AbortSignal
}

export interface GetChunkRequest {
  url: string
  chunkHandle: ChunkHandle
  version: number
  token: string
  offsetBytes: number
  lengthBytes: number
  timeoutMs: number               // for the headers, and between body pieces (not while the reader is paused)
  signal?: AbortSignal
}

export interface ChunkBody {
  pieces: AsyncIterable<Buffer>   // socket errors come out of it as GranaryErrors
  chunkLengthBytes: number | null // the stored chunk's full length, when the server sent it
  destroy (): void
}

export class Transport {
  readonly #agent: Agent
  readonly #requestTimeoutMs: number
  readonly #credentials: Credentials | null
  readonly #batcher: Batcher | null
  #closed = false

  constructor (options: TransportOptions) {
    this.#credentials = options.credentials ?? null
    assert(options.requestTimeoutMs > 0, 'requestTimeoutMs is positive')
    assert(options.keepAliveTimeoutMs > 0, 'keepAliveTimeoutMs is positive')
    this.#requestTimeoutMs = options.requestTimeoutMs
    this.#agent = new Agent({
      connect: { timeout: options.requestTimeoutMs, ...(options.ca === undefined ? {} : { ca: options.ca }) },
      connections: options.connectionsPerOrigin ?? limits.connectionsPerOriginMax,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      keepAliveMaxTimeout: Math.max(options.keepAliveTimeoutMs, 1),
      headersTimeout: options.requestTimeoutMs,
      bodyTimeout: options.requestTimeoutMs,
      pipelining: 1,
    })
    this.#batcher = options.batching === false ? null : new Batcher(async (request) => await this.#exchange(request), options.requestTimeoutMs)
  }

  get requestTimeoutMs (): number { return this.#requestTimeoutMs }

  // One JSON exchange. A 2xx reply's body is returned parsed; anything else throws the GranaryError the
  // server described (errorFromBody), or GRN_UNAVAILABLE/GRN_TIMEOUT for socket failures.
  async json<T> (request: JsonRequest): Promise<T> {
    const kind = this.#batcher === null ? null : batchKindOf(request)
    if (kind !== null && this.#batcher !== null) return await this.#batcher.call<T>(request, kind)
    return await this.#exchange<T>(request)
  }

  // rawBody: a body already in JSON (a batch's).
  async #exchange<T> (request: JsonRequest & { rawBody?: string }): Promise<T> {
    this.#checkOpen()
    const target = `${request.origin}${request.path}`
    const timeoutMs = clampTimeout(request.timeoutMs ?? this.#requestTimeoutMs)
    // The Agent's connect timeout is fixed; a call whose budget is shorter enforces its own with a timer, so
    // a host that swallows SYNs cannot push an operation past its deadline.
    // Linked to the caller's signal with one listener, released below (AbortSignal.any cost ~18 µs per call).
    const watchdog = timeoutMs < this.#requestTimeoutMs ? new LinkedAbort(request.signal) : undefined
    const timer = watchdog === undefined ? undefined : setTimeout(() => { watchdog.abort(new GranaryError('GRN_TIMEOUT', [target, timeoutMs])) }, timeoutMs)
    const signal = watchdog === undefined ? request.signal : watchdog.signal
    try {
      const body = request.rawBody ?? (request.body === undefined ? null : JSON.stringify(request.body))
      const path = request.path + queryString(request.query)
      const signature = this.#credentials === null ? {} : signClient(this.#credentials, request.method, path, body)
      const res = await this.#agent.request({
        origin: request.origin,
        path,
        method: request.method,
        headers: body !== null ? { ...request.headers, ...signature, 'content-type': 'application/json' } : { ...request.headers, ...signature },
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal,
      })
      if (request.reply !== undefined) request.reply.position = parsePosition(res.headers[positionHeader])
      const text = await readText(res.body, res.headers['content-length'], target)
      const parsed = parseJson(text)
      if (res.statusCode >= 200 && res.statusCode < 300) {
        if (parsed === undefined) throw new GranaryError('GRN_INTERNAL', [`${target} answered ${res.statusCode} without a JSON body`])
        return parsed as T
      }
      throw errorFromBody(parsed as Partial<ErrorBody> | undefined, res.statusCode)
    } catch (err) {
      throw toGranaryError(err, target, timeoutMs, signal)
    } finally {
      if (timer !== undefined) clearTimeout(timer)
      watchdog?.release()
    }
  }

  // Streams one chunk to the head of its pipeline and returns the pipeline's acks.
  async putChunk (request: PutChunkRequest): Promise<WriteChunkReply> {
    this.#checkOpen()
    const path = `/chunks/${request.chunkHandle}${queryString({ version: request.version })}`
    const target = `${request.url}${path}`
    const timeoutMs = clampTimeout(request.timeoutMs)
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      [tokenHeader]: request.token,
      [pipelineHeader]: request.downstreamUrls.join(','),
    }
    if (request.lengthBytes !== undefined) headers['content-length'] = String(request.lengthBytes)
    try {
      const res = await this.#agent.request({
        origin: request.url, path, method: 'PUT', headers, body: request.body,
        headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: request.signal,
      })
      const parsed = parseJson(await readText(res.body, res.headers['content-length'], target))
      if (res.statusCode === 200 && parsed !== undefined) return parsed as WriteChunkReply
      throw errorFromBody(parsed as Partial<ErrorBody> | undefined, res.statusCode)
    } catch (err) {
      request.body.destroy()
      throw toGranaryError(err, target, timeoutMs, request.signal)
    }
  }

  // When a chunkserver last sent this client anything (a reply's headers, a piece of a body), by URL: a read
  // that waits on a server still sending to others waits in line; one that has heard nothing since it asked
  // waits on a hung server (client/read.ts, the chunk hedge).
  readonly #heardAtMs = new Map<string, number>()

  // Chunkservers a read raced as hung, until when they are asked last (client/read.ts orders replicas so).
  readonly #hungUntilMs = new Map<string, number>()

  lastHeardMs (url: string): number | undefined { return this.#heardAtMs.get(url) }

  markHung (url: string): void {
    setBounded(this.#hungUntilMs, url, performance.now() + limits.chunkServerHungMs)
  }

  isHung (url: string): boolean {
    const untilMs = this.#hungUntilMs.get(url)
    if (untilMs === undefined) return false
    if (untilMs > performance.now()) return true
    this.#hungUntilMs.delete(url)
    return false
  }

  #heard (url: string): void {
    setBounded(this.#heardAtMs, url, performance.now())
    if (this.#hungUntilMs.size > 0) this.#hungUntilMs.delete(url)   // it answers again
  }

  // Opens a ranged read of one chunk. A non-200 reply throws its GranaryError; a 200 gives the body to stream.
  async getChunk (request: GetChunkRequest): Promise<ChunkBody> {
    this.#checkOpen()
    const query = { version: request.version, offset: request.offsetBytes, length: request.lengthBytes }
    const path = `/chunks/${request.chunkHandle}${queryString(query)}`
    const target = `${request.url}${path}`
    const timeoutMs = clampTimeout(request.timeoutMs)
    try {
      const res = await this.#agent.request({
        origin: request.url, path, method: 'GET', headers: { [tokenHeader]: request.token },
        headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: request.signal,
      })
      this.#heard(request.url)
      if (res.statusCode !== 200) {
        const parsed = parseJson(await readText(res.body, res.headers['content-length'], target))
        throw errorFromBody(parsed as Partial<ErrorBody> | undefined, res.statusCode)
      }
      const lengthHeader = res.headers[chunkLengthHeader]
      const chunkLengthBytes = typeof lengthHeader === 'string' && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null
      const body = res.body
      return {
        pieces: mapErrors(body, target, timeoutMs, request.signal, () => { this.#heard(request.url) }),
        chunkLengthBytes,
        destroy: () => { body.destroy() },
      }
    } catch (err) {
      throw toGranaryError(err, target, timeoutMs, request.signal)
    }
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    // destroy, not close: a closing client has nothing left worth waiting for, and open streams get an error.
    await this.#agent.destroy()
  }

  #checkOpen (): void {
    if (this.#closed) throw new GranaryError('GRN_ABORTED', ['the client is closed'])
  }
}

const timeoutCodes = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const unreachableCodes = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN',
  'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH',
])
const closedCodes = new Set(['UND_ERR_DESTROYED', 'UND_ERR_CLOSED', 'UND_ERR_ABORTED', 'ABORT_ERR'])

// Socket and undici errors → GranaryError. An abort carries the reason the caller gave (a GranaryError of
// ours, e.g. a deadline) when there is one. Errors that are not about the network (bugs) pass unchanged.
export function toGranaryError (err: unknown, target: string, timeoutMs: number, signal?: AbortSignal): unknown {
  if (isGranaryError(err)) return err
  if (signal?.aborted === true) {
    return isGranaryError(signal.reason) ? signal.reason : new GranaryError('GRN_ABORTED', [describe(signal.reason)])
  }
  const code = errorCode(err)
  if (isCertificateFailure(code)) return certificateError(target, code as string, describe(err))
  if (code !== undefined && timeoutCodes.has(code)) return new GranaryError('GRN_TIMEOUT', [target, timeoutMs], { cause: code })
  if (code !== undefined && unreachableCodes.has(code)) return new GranaryError('GRN_UNAVAILABLE', [target, describe(err)], { cause: code })
  if ((code !== undefined && closedCodes.has(code)) || (err as Error)?.name === 'AbortError') {
    return new GranaryError('GRN_ABORTED', [describe(err)], { cause: code })
  }
  const isSystemError = typeof (err as { syscall?: unknown } | null)?.syscall === 'string'
  if (code !== undefined && (code.startsWith('UND_ERR') || code === 'ERR_STREAM_PREMATURE_CLOSE' || isSystemError)) {
    return new GranaryError('GRN_UNAVAILABLE', [target, describe(err)], { cause: code })
  }
  return err
}

function errorCode (err: unknown): string | undefined {
  const e = err as { code?: unknown, errors?: unknown[] } | null
  if (typeof e?.code === 'string') return e.code
  // Happy-eyeballs connects fail with an AggregateError of per-address errors.
  const first = Array.isArray(e?.errors) ? e.errors[0] as { code?: unknown } | undefined : undefined
  return typeof first?.code === 'string' ? first.code : undefined
}

function describe (err: unknown): string {
  if (err instanceof Error) return err.message.length > 0 ? err.message : err.name
  return String(err)
}

// A per-chunkserver memory holds at most chunkServersHeardMax servers; past it it starts over.
function setBounded (map: Map<string, number>, url: string, value: number): void {
  if (map.size >= limits.chunkServersHeardMax && !map.has(url)) map.clear()
  map.set(url, value)
}

async function * mapErrors (body: AsyncIterable<Buffer>, target: string, timeoutMs: number, signal?: AbortSignal, onPiece?: () => void): AsyncIterable<Buffer> {
  try {
    for await (const piece of body) {
      onPiece?.()
      yield piece
    }
  } catch (err) {
    throw toGranaryError(err, target, timeoutMs, signal)
  }
}

async function readText (body: AsyncIterable<Buffer> & { destroy (): unknown }, contentLength: string | string[] | undefined, target: string): Promise<string> {
  const declared = typeof contentLength === 'string' ? Number(contentLength) : 0
  if (declared > limits.jsonReplyBytesMax) {
    body.destroy()
    throw new GranaryError('GRN_LIMIT_EXCEEDED', [`reply from ${target}`, limits.jsonReplyBytesMax])
  }
  const pieces: Buffer[] = []
  let totalBytes = 0
  for await (const piece of body) {
    totalBytes += piece.length
    if (totalBytes > limits.jsonReplyBytesMax) {
      body.destroy()
      throw new GranaryError('GRN_LIMIT_EXCEEDED', [`reply from ${target}`, limits.jsonReplyBytesMax])
    }
    pieces.push(piece)
  }
  return Buffer.concat(pieces, totalBytes).toString('utf8')
}

function parseJson (text: string): unknown {
  if (text.length === 0) return undefined
  try { return JSON.parse(text) } catch { return undefined }
}

export function queryString (query: QueryValues | undefined): string {
  if (query === undefined) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined) params.set(key, String(value))
  }
  const text = params.toString()
  return text.length === 0 ? '' : `?${text}`
}

// undici treats 0 as "no timeout"; a budget that ran out must still time out, at once.
function clampTimeout (timeoutMs: number): number {
  return Math.max(1, Math.floor(timeoutMs))
}
