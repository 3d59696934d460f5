// JSON calls to the masters. config.masters lists the master first, then its shadows.
// - Reads (stat, list, open, du, report) go to the master and fall over at once to the next URL when one
//   cannot answer, so reads keep working while the master restarts (the shadow serves them).
// - Mutations go to the master only, retried with backoff inside the operation's budget. Each carries a
//   client-chosen requestId that every retry REUSES: a master that already applied it answers with the
//   original reply instead of applying it twice.
import { newRequestId, type InodeId, type LeaseId, type ServerId, type ChunkHandle } from '../shared/ids.js'
import { isGranaryError, type ErrorCode, type GranaryError } from '../shared/errors.js'
import * as protocol from '../shared/protocol.js'
import { assert } from '../shared/assert.js'
import { Deadline, retry, type RetryPolicy } from './retry.js'
import { publish, describeError } from './diagnostics.js'
import type { Transport, QueryValues } from './transport.js'

export interface CallOptions {
  deadline?: Deadline           // share a budget with a larger operation; else a fresh one of deadlineMs
  deadlineMs?: number
  signal?: AbortSignal
  giveUpOn?: readonly ErrorCode[]   // retryable codes to return at once instead of retrying
}

export interface MasterLinkOptions {
  masters: string[]
  deadlineMs: number
  requestTimeoutMs: number
  policy: RetryPolicy
}

// A URL that failed is skipped by reads for this long (unless every URL is down), so a dead master does not
// cost every read a connect attempt.
const downSkipMs = 1_000

export class MasterLink {
  readonly #transport: Transport
  readonly #masters: string[]
  readonly #deadlineMs: number
  readonly #requestTimeoutMs: number
  readonly #policy: RetryPolicy
  readonly #downUntilMs: number[]

  constructor (transport: Transport, options: MasterLinkOptions) {
    assert(options.masters.length >= 1, 'at least one master URL')
    this.#transport = transport
    this.#masters = [...options.masters]
    this.#deadlineMs = options.deadlineMs
    this.#requestTimeoutMs = options.requestTimeoutMs
    this.#policy = options.policy
    this.#downUntilMs = this.#masters.map(() => 0)
  }

  get masters (): readonly string[] { return this.#masters }

  deadline (options: CallOptions | undefined): Deadline {
    return options?.deadline ?? new Deadline(options?.deadlineMs ?? this.#deadlineMs)
  }

  // ---- reads ------------------------------------------------------------------------------------------
  stat (path: string, options?: CallOptions): Promise<protocol.StatReply> {
    return this.read(`stat ${path}`, protocol.statPath, { path }, options)
  }

  list (path: string, page: { after?: string, limit?: number }, options?: CallOptions): Promise<protocol.ListReply> {
    return this.read(`list ${path}`, protocol.listPath, { path, after: page.after, limit: page.limit }, options)
  }

  open (path: string, options?: CallOptions): Promise<protocol.OpenReply> {
    return this.read(`open ${path}`, protocol.openPath, { path }, options)
  }

  du (path: string, options?: CallOptions): Promise<protocol.DuReply> {
    return this.read(`du ${path}`, protocol.duPath, { path }, options)
  }

  report (options?: CallOptions): Promise<protocol.ClusterReport> {
    return this.read('report', protocol.reportPath, {}, options)
  }

  // ---- namespace mutations ----------------------------------------------------------------------------
  // mode: the new folder's permission bits (intermediate ones get the default); undefined: the default.
  mkdir (path: string, parents: boolean, options?: CallOptions, mode?: number): Promise<protocol.MkdirReply> {
    return this.mutate(`mkdir ${path}`, protocol.mkdirPath, { path, parents, mode }, options)
  }

  rename (source: string, target: string, options?: CallOptions): Promise<protocol.RenameReply> {
    return this.mutate(`rename ${source}`, protocol.renamePath, { source, target }, options)
  }

  delete (path: string, recursive: boolean, skipTrash: boolean, options?: CallOptions): Promise<protocol.DeleteReply> {
    return this.mutate(`delete ${path}`, protocol.deletePath, { path, recursive, skipTrash }, options)
  }

  restore (path: string, target: string | undefined, options?: CallOptions): Promise<protocol.RestoreReply> {
    return this.mutate(`restore ${path}`, protocol.restorePath, target === undefined ? { path } : { path, target }, options)
  }

  // ---- the write protocol -----------------------------------------------------------------------------
  create (request: { path: string, replication?: number, chunkSizeBytes?: number, overwrite?: boolean, mode?: number }, options?: CallOptions): Promise<protocol.CreateReply> {
    return this.mutate(`create ${request.path}`, protocol.createPath, request, options)
  }

  allocate (request: { inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, excludeServerIds?: ServerId[] }, options?: CallOptions): Promise<protocol.AllocateReply> {
    return this.mutate(`allocate chunk ${request.chunkIndex}`, protocol.allocatePath, request, options)
  }

  commit (request: {
    inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, chunkHandle: ChunkHandle, version: number,
    lengthBytes: number, crc32: number, serverIds: ServerId[]
  }, options?: CallOptions): Promise<protocol.CommitReply> {
    return this.mutate(`commit chunk ${request.chunkIndex}`, protocol.commitPath, request, options)
  }

  complete (request: { inodeId: InodeId, leaseId: LeaseId, sizeBytes: number, chunkCount: number, mtimeMs?: number }, options?: CallOptions): Promise<protocol.CompleteReply> {
    return this.mutate(`complete inode ${request.inodeId}`, protocol.completePath, request, options)
  }

  abandon (request: { inodeId: InodeId, leaseId: LeaseId }, options?: CallOptions): Promise<protocol.AbandonReply> {
    return this.mutate(`abandon inode ${request.inodeId}`, protocol.abandonPath, request, options)
  }

  // Renewing is idempotent by nature (it only moves an expiry forward), so it carries no requestId.
  renew (request: { inodeId: InodeId, leaseId: LeaseId }, options?: CallOptions): Promise<protocol.RenewReply> {
    const deadline = this.deadline(options)
    return retry(() => this.#post(protocol.renewPath, request, deadline, options?.signal),
      { what: `renew inode ${request.inodeId}`, deadline, policy: this.#policy, signal: options?.signal })
  }

  // ---- the two call shapes ----------------------------------------------------------------------------
  async read<T> (what: string, route: string, query: QueryValues, options?: CallOptions): Promise<T> {
    const deadline = this.deadline(options)
    const signal = options?.signal
    return retry(() => this.#readOnce<T>(what, route, query, deadline, signal), { what, deadline, policy: this.#policy, signal, giveUpOn: options?.giveUpOn })
  }

  async mutate<T> (what: string, route: string, body: object, options?: CallOptions): Promise<T> {
    const deadline = this.deadline(options)
    const signal = options?.signal
    const request = { ...body, requestId: newRequestId() }   // chosen once: the same id on every retry
    return retry(() => this.#post<T>(route, request, deadline, signal), { what, deadline, policy: this.#policy, signal, giveUpOn: options?.giveUpOn })
  }

  // One pass over the URLs, master first. A retryable failure moves on to the next URL at once; a
  // non-retryable answer (GRN_NOT_FOUND...) is the answer.
  async #readOnce<T> (what: string, route: string, query: QueryValues, deadline: Deadline, signal: AbortSignal | undefined): Promise<T> {
    const order = this.#readOrder()
    let last: GranaryError | undefined
    for (let i = 0; i < order.length; i++) {
      const index = order[i] as number
      const origin = this.#masters[index] as string
      try {
        const reply = await this.#transport.json<T>({
          method: 'GET', origin, path: route, query, timeoutMs: deadline.timeoutMs(this.#requestTimeoutMs), signal,
        })
        this.#downUntilMs[index] = 0
        return reply
      } catch (err) {
        if (!isGranaryError(err) || !err.retryable || deadline.expired()) throw err
        last = err
        this.#downUntilMs[index] = Date.now() + downSkipMs
        const next = order[i + 1]
        if (next !== undefined) publish('failover', () => ({ what, from: origin, to: this.#masters[next], ...describeError(err) }))
      }
    }
    assert(last !== undefined, 'a failed pass over the masters saw an error')
    throw last
  }

  // Masters not recently failed first, in configured order; then the recently failed ones.
  #readOrder (): number[] {
    const nowMs = Date.now()
    const up: number[] = []
    const down: number[] = []
    this.#masters.forEach((_, index) => { ((this.#downUntilMs[index] ?? 0) > nowMs ? down : up).push(index) })
    return [...up, ...down]
  }

  #post<T> (route: string, body: object, deadline: Deadline, signal: AbortSignal | undefined): Promise<T> {
    return this.#transport.json<T>({
      method: 'POST', origin: this.#masters[0] as string, path: route, body, timeoutMs: deadline.timeoutMs(this.#requestTimeoutMs), signal,
    })
  }
}
