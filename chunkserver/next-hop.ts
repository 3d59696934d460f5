// The forwarding side of a pipelined write: one PUT to the next chunkserver, fed the very Buffers this server
// received. node:http, not undici: PERF-NOTES measured undici as the forwarding side at +0.3–0.4 CPU-s/GiB per hop.
// The outcome is a promise that never rejects: { ok: true, reply } or { ok: false, error } where the error is
// GRN_REPLICA_FAILED naming the server that failed (the next hop, or whoever it says failed further down).
import { request as httpRequest, type Agent, type ClientRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https'
import { GranaryError, isErrorCode, type ErrorBody } from '../shared/errors.js'
import { dataIdleTimeoutMs, jsonBodyBytesMax } from '../shared/limits.js'
import { pipelineHeader, tokenHeader, type WriteChunkReply } from '../shared/protocol.js'
import type { ChunkHandle } from '../shared/ids.js'

export const serverIdHeader = 'x-granary-server-id'   // every chunkserver reply names its server

export type HopOutcome = { ok: true, reply: WriteChunkReply } | { ok: false, error: GranaryError }

export interface HopTarget {
  url: string                     // the next chunkserver
  rest: string[]                  // the pipeline after it
  chunkHandle: ChunkHandle
  version: number
  token: string
  contentLength: number | null    // forwarded as is; chunked when unknown
}

export class NextHop {
  readonly url: string
  readonly outcome: Promise<HopOutcome>
  onDrain: (() => void) | null = null
  #request: ClientRequest
  #settled = false
  #settle!: (outcome: HopOutcome) => void

  // An https:// next hop goes through node:https with `tlsAgent` (the --ca-file CA; node's default agent, and so
  // the system CAs, when none is given); an http:// one through `agent`.
  constructor (target: HopTarget, agent: Agent, tlsAgent?: HttpsAgent) {
    this.url = target.url
    this.outcome = new Promise((resolve) => { this.#settle = resolve })
    const next = new URL(`/chunks/${target.chunkHandle}?version=${target.version}`, target.url)
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      [tokenHeader]: target.token
    }
    if (target.rest.length > 0) headers[pipelineHeader] = target.rest.join(',')
    if (target.contentLength !== null) headers['content-length'] = target.contentLength
    this.#request = next.protocol === 'https:'
      ? httpsRequest(next, { method: 'PUT', ...(tlsAgent === undefined ? {} : { agent: tlsAgent }), headers, timeout: dataIdleTimeoutMs })
      : httpRequest(next, { method: 'PUT', agent, headers, timeout: dataIdleTimeoutMs })
    this.#request.on('response', (res) => this.#onResponse(res))
    this.#request.on('error', (err: NodeJS.ErrnoException) => this.#fail(undefined, err.code ?? err.message))
    this.#request.on('timeout', () => this.#request.destroy(Object.assign(new Error('idle timeout'), { code: 'ETIMEDOUT' })))
    this.#request.on('drain', () => this.onDrain?.())
  }

  get failed (): boolean { return this.#settled }
  get queuedBytes (): number { return this.#request.writableLength }

  write (buf: Buffer): void {
    if (!this.#settled) this.#request.write(buf)
  }

  end (): void {
    if (!this.#settled) this.#request.end()
  }

  // Cuts the forward stream (our own upstream failed): the next hop sees an aborted request and cleans up.
  abort (): void {
    this.#fail(undefined, 'aborted by upstream')
    this.#request.destroy()
  }

  #onResponse (res: IncomingMessage): void {
    const serverIdValue = res.headers[serverIdHeader]
    const serverId = typeof serverIdValue === 'string' ? serverIdValue : undefined
    const chunks: Buffer[] = []
    let bytes = 0
    res.on('data', (buf: Buffer) => {
      bytes += buf.length
      if (bytes > jsonBodyBytesMax) { res.destroy(); this.#fail(serverId, 'reply body over its limit'); return }
      chunks.push(buf)
    })
    res.on('error', (err: NodeJS.ErrnoException) => this.#fail(serverId, err.code ?? err.message))
    res.on('end', () => {
      let body: unknown
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { body = undefined }
      if (res.statusCode === 200 && isWriteChunkReply(body)) {
        if (!this.#settled) { this.#settled = true; this.#settle({ ok: true, reply: body }) }
        return
      }
      this.#failFromBody(serverId, res.statusCode ?? 0, body as Partial<ErrorBody> | undefined)
    })
  }

  // A GRN_REPLICA_FAILED from further down already names the failed server; pass it up unchanged.
  #failFromBody (serverId: string | undefined, statusCode: number, body: Partial<ErrorBody> | undefined): void {
    if (body?.code === 'GRN_REPLICA_FAILED' && typeof body.details === 'object' && body.details !== null) {
      const message = typeof body.message === 'string' ? body.message : undefined
      this.#settleFailure(new GranaryError('GRN_REPLICA_FAILED', ['', ''], body.details, message))
      return
    }
    const code = typeof body?.code === 'string' && isErrorCode(body.code) ? body.code : undefined
    this.#fail(serverId, `HTTP ${statusCode}${code === undefined ? '' : ` ${code}`}`, { statusCode, code })
  }

  #fail (serverId: string | undefined, reason: string, extra: Record<string, unknown> = {}): void {
    const details: Record<string, unknown> = { failedUrl: this.url, ...extra, reason }
    if (serverId !== undefined) details.serverId = serverId
    this.#settleFailure(new GranaryError('GRN_REPLICA_FAILED', [this.url, reason], details))
  }

  #settleFailure (error: GranaryError): void {
    if (this.#settled) return
    this.#settled = true
    this.#settle({ ok: false, error })
    // Stop sending; the response (if any) has been read, so the socket is not reused mid-body.
    if (!this.#request.writableEnded) this.#request.destroy()
  }
}

function isWriteChunkReply (body: unknown): body is WriteChunkReply {
  return typeof body === 'object' && body !== null && Array.isArray((body as WriteChunkReply).replicas)
}
