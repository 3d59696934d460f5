// Metadata calls to one server travel together when they queue up (POST protocol.batchPath; master/batch.ts).
// Per server and kind (reads, mutations) a lane lets batchesInFlightMax exchanges out at once. A call that
// finds a free slot and nobody waiting goes alone at once, so a lone call never waits for company. Calls that
// find the lane busy wait, and when an exchange ends, everything waiting goes in one batch (the next turn of
// the event loop, so callers answered by that exchange can add their next call first). At 16 calls in flight
// that is one HTTP request, one signature and one reply per ~8 calls instead of per call.
//
// Nothing about a call changes but how it travels: its own timeout and abort signal still end it (a call
// settled early is left out of the reply; a batch whose calls have all ended is aborted), a mutation keeps its
// requestId (a batch that failed is retried call by call by master-link, on whichever server, idempotently),
// and each reply carries its own position and error. A server that does not know the batch route (an older
// master) answers 404 once; its calls then go alone.
import { GranaryError, errorFromBody, isGranaryError, type ErrorBody } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import * as protocol from '../shared/protocol.js'
import type { JsonRequest } from './transport.js'

export type BatchKind = 'read' | 'mutation'

export function batchKindOf (request: JsonRequest): BatchKind | null {
  if (request.method === 'GET' && protocol.batchReadRoutes.has(request.path)) return 'read'
  if (request.method === 'POST' && protocol.batchMutationRoutes.has(request.path)) return 'mutation'
  return null
}

// One exchange as the transport makes it: a call alone, or a batch (rawBody is its JSON).
export type Send = <T>(request: JsonRequest & { rawBody?: string }) => Promise<T>

interface Waiting {
  request: JsonRequest
  json: string                   // the op as it goes in the batch
  settled: boolean
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  timer: NodeJS.Timeout
  endsAtMs: number               // performance.now() when its timeout ends it
  unlisten: () => void
  onEnd: () => void              // once in a batch: aborts the batch when every call in it has ended
}

interface Lane { out: number, waiting: Waiting[], flushing: boolean }

export class Batcher {
  readonly #send: Send
  readonly #defaultTimeoutMs: number
  readonly #lanes = new Map<string, Lane>()
  readonly #alone = new Set<string>()   // origins that answered 404 to a batch: an older server

  constructor (send: Send, defaultTimeoutMs: number) {
    this.#send = send
    this.#defaultTimeoutMs = defaultTimeoutMs
  }

  call<T> (request: JsonRequest, kind: BatchKind): Promise<T> {
    if (this.#alone.has(request.origin)) return this.#send<T>(request)
    const key = `${kind} ${request.origin}`
    let lane = this.#lanes.get(key)
    if (lane === undefined) {
      lane = { out: 0, waiting: [], flushing: false }
      this.#lanes.set(key, lane)
    }
    if ((lane.out < limits.batchesInFlightMax && lane.waiting.length === 0 && !lane.flushing) || lane.waiting.length >= limits.batchQueuedOpsMax) {
      return this.#sendAlone<T>(lane, request)
    }
    return this.#wait<T>(lane, request)
  }

  async #sendAlone<T> (lane: Lane, request: JsonRequest): Promise<T> {
    lane.out++
    try {
      return await this.#send<T>(request)
    } finally {
      lane.out--
      this.#scheduleFlush(lane)
    }
  }

  #wait<T> (lane: Lane, request: JsonRequest): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const target = `${request.origin}${request.path}`
      const timeoutMs = Math.max(1, Math.floor(request.timeoutMs ?? this.#defaultTimeoutMs))
      const op: protocol.BatchOp = request.method === 'GET' ? { route: request.path, query: request.query ?? {} } : { route: request.path, body: request.body as Record<string, unknown> }
      const waiting: Waiting = {
        request, json: JSON.stringify(op), settled: false, resolve: resolve as (value: unknown) => void, reject,
        timer: setTimeout(() => { end(new GranaryError('GRN_TIMEOUT', [target, timeoutMs])) }, timeoutMs),
        endsAtMs: performance.now() + timeoutMs, unlisten: () => {}, onEnd: () => {}
      }
      const end = (err: unknown): void => {
        if (!settle(waiting)) return
        const at = lane.waiting.indexOf(waiting)
        if (at !== -1) lane.waiting.splice(at, 1)
        reject(err)
        waiting.onEnd()
      }
      const signal = request.signal
      if (signal !== undefined) {
        if (signal.aborted) { end(abortReason(signal)); return }
        const onAbort = (): void => { end(abortReason(signal)) }
        signal.addEventListener('abort', onAbort, { once: true })
        waiting.unlisten = () => { signal.removeEventListener('abort', onAbort) }
      }
      lane.waiting.push(waiting)
      if (lane.out < limits.batchesInFlightMax) this.#scheduleFlush(lane)
    })
  }

  // On the next turn, so the callers an exchange just answered can queue their next calls into this batch.
  #scheduleFlush (lane: Lane): void {
    if (lane.flushing || lane.waiting.length === 0) return
    lane.flushing = true
    setImmediate(() => {
      lane.flushing = false
      this.#flush(lane)
    })
  }

  #flush (lane: Lane): void {
    while (lane.out < limits.batchesInFlightMax && lane.waiting.length > 0) {
      // Shared among the free slots: two half batches keep both processes busy (the server handles one while
      // this process takes the other's replies), where one whole batch leaves each idle in turn.
      const share = Math.min(limits.batchOpsMax, Math.ceil(lane.waiting.length / (limits.batchesInFlightMax - lane.out)))
      const ops: Waiting[] = []
      let bodyBytes = 16
      while (lane.waiting.length > 0 && ops.length < share) {
        const next = lane.waiting[0] as Waiting
        if (ops.length > 0 && bodyBytes + next.json.length + 1 > limits.batchBodyBytesMax) break
        lane.waiting.shift()
        ops.push(next)
        bodyBytes += next.json.length + 1
      }
      void this.#exchange(lane, ops)
    }
  }

  async #exchange (lane: Lane, ops: Waiting[]): Promise<void> {
    lane.out++
    const first = ops[0] as Waiting
    const abort = new AbortController()
    for (const op of ops) op.onEnd = () => { if (ops.every((each) => each.settled)) abort.abort(new GranaryError('GRN_ABORTED', ['every call in the batch has ended'])) }
    try {
      if (ops.length === 1) {
        try {
          const value = await this.#send(first.request)
          if (settle(first)) first.resolve(value)
        } catch (err) {
          if (settle(first)) first.reject(err)
        }
        return
      }
      const timeoutMs = Math.max(1, ...ops.map((op) => op.endsAtMs - performance.now()))
      let reply: protocol.BatchReply
      try {
        reply = await this.#send<protocol.BatchReply>({
          method: 'POST', origin: first.request.origin, path: protocol.batchPath, headers: first.request.headers,
          rawBody: `{"ops":[${ops.map((op) => op.json).join(',')}]}`, timeoutMs, signal: abort.signal
        })
      } catch (err) {
        if (isGranaryError(err) && err.code === 'GRN_NOT_FOUND' && err.statusCode === 404) {
          this.#alone.add(first.request.origin)   // an older server: these and later calls go alone
          for (const op of ops) deliver(op, () => this.#send(op.request))
          return
        }
        for (const op of ops) if (settle(op)) op.reject(err)
        return
      }
      const results = Array.isArray(reply?.results) && reply.results.length === ops.length ? reply.results : null
      ops.forEach((op, i) => {
        const result = results?.[i] as Record<string, unknown> | undefined
        if (results === null || typeof result !== 'object' || result === null) {
          if (settle(op)) op.reject(new GranaryError('GRN_INTERNAL', [`${first.request.origin} answered a batch of ${ops.length} without a result for each call`]))
          return
        }
        if (result.single === true) { deliver(op, () => this.#send(op.request)); return }
        if (op.settled) return
        if (op.request.reply !== undefined) op.request.reply.position = protocol.parsePosition(result.position)
        settle(op)
        if ('reply' in result) {
          op.resolve(result.reply)
        } else {
          const body = result.error as Partial<ErrorBody> | undefined
          op.reject(errorFromBody(body, typeof body?.statusCode === 'number' ? body.statusCode : 500))
        }
      })
    } finally {
      lane.out--
      this.#scheduleFlush(lane)
    }
  }
}

// Marks a waiting call ended (its timer and abort listener gone); false when it already was.
function settle (op: Waiting): boolean {
  if (op.settled) return false
  op.settled = true
  clearTimeout(op.timer)
  op.unlisten()
  return true
}

// Sends a call alone on the caller's behalf; its own timer and signal still end it first if they fire first.
function deliver (op: Waiting, send: () => Promise<unknown>): void {
  if (op.settled) return
  send().then((value) => { if (settle(op)) op.resolve(value) }, (err: unknown) => { if (settle(op)) op.reject(err) })
}

function abortReason (signal: AbortSignal): unknown {
  return isGranaryError(signal.reason) ? signal.reason : new GranaryError('GRN_ABORTED', [String(signal.reason ?? 'aborted')])
}
