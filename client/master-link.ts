// JSON calls to the masters. config.masters lists the master and its shadows, in any order. The link
// remembers which URL is the master: the last one that accepted a mutation (at first, the first URL).
// - Reads (stat, list, open, du, report) go to the remembered master first and fall over at once to the next
//   URL when one cannot answer (unreachable, timed out, or a deposed master's GRN_NOT_MASTER), so reads keep
//   working while the master restarts (a shadow serves them). A read not answered within the hedge delay (a
//   few times the recent latency, hedgeDelayMsMin..hedgeDelayMsMax) is also sent to the next URL: the first
//   good answer wins, the other request is aborted, and a URL that lost a race is tried last for downSkipMs.
//   So a hung (SIGSTOPped) master costs a read one hedge delay, not a request timeout.
// - Never backwards: every reply carries its (term, seq) position (protocol.positionHeader). The link keeps
//   the newest it has seen, from mutations and reads, and refuses a reply older than that (GRN_STALE, tried
//   elsewhere): a read after a write sees the write, whichever server answers it.
// - One URL is enough: the link asks the servers it knows for the cluster's metadata servers (health's
//   metadataServers, at most every membersRefreshMs) and learns the ones it did not know.
// - Mutations go to the remembered master, retried with backoff inside the operation's budget. One refused
//   with GRN_NOT_MASTER goes next to the master the refusal names (details.masterUrl, learned into the list
//   when new), else to the next URL round robin; one that cannot reach its URL moves on round robin too. A
//   shadow names its master, so a client configured [shadow, master], or whose master was deposed by a
//   promotion, finds the master either way. Each mutation carries a client-chosen requestId that every retry
//   REUSES, on whichever URL: a master that already applied it answers with the original reply instead of
//   applying it twice.
import { newRequestId, type InodeId, type LeaseId, type ServerId, type ChunkHandle } from '../shared/ids.js'
import { GranaryError, isGranaryError, type ErrorCode } from '../shared/errors.js'
import * as protocol from '../shared/protocol.js'
import { assert } from '../shared/assert.js'
import * as limits from '../shared/limits.js'
import { Deadline, retry, type RetryPolicy } from './retry.js'
import { publish, describeError } from './diagnostics.js'
import type { Transport, QueryValues } from './transport.js'
import { LinkedAbort } from './linked-abort.js'

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
  mutationTimeoutMs?: number    // one mutation exchange (default requestTimeoutMs); then the next URL is tried
  policy: RetryPolicy
  staleReads?: boolean          // send protocol.staleOkHeader: a cut-off shadow answers instead of GRN_STALE
}

// A URL that failed is skipped by reads for this long (unless every URL is down), so a dead master does not
// cost every read a connect attempt.
const downSkipMs = 1_000

// URLs the link knows: the configured ones (shared/config.ts parseMasterList allows 8) plus masters learned
// from GRN_NOT_MASTER refusals. When full, a newly named master overwrites a learned URL, oldest first; the
// configured URLs stay, and so does the remembered master.
export const mastersKnownMax = 16
const learnedSlotsMin = 2   // so one learned slot that is not the remembered master is always free to overwrite

// Errors that say "this URL is not where mutations go": try another one on the next attempt. Other retryable
// errors (GRN_LEASE_HELD, GRN_NO_CHUNKSERVERS, GRN_INTERNAL) are the master's own answer: retry it there.
const movesOnCodes: ReadonlySet<ErrorCode> = new Set(['GRN_NOT_MASTER', 'GRN_UNAVAILABLE', 'GRN_TIMEOUT'])
const unreachableCodes: ReadonlySet<ErrorCode> = new Set(['GRN_UNAVAILABLE', 'GRN_TIMEOUT'])

// How much longer a read whose request has been out elapsedMs waits before the next URL is asked (≤ 0: now).
// delayMs is the hedge delay, a few times the recent latency. A new client (a `granary cat` process: one read,
// then exit) has no latency yet and would wait the no-history delay, mostly its own cold start. It sends the
// members ask (health, to every URL) with that first read, so it can compare servers instead of guessing:
// healthLeadMs is how long ago another URL answered that ask while the read's own URL has not (null: it has,
// or nobody has). Asked the same cheap question at the same moment, a URL that trails another by
// hedgeDelayMsMin is hung or far slower (a SIGSTOPped master), so the read is raced at once.
export function hedgeWaitMs (elapsedMs: number, delayMs: number, healthLeadMs: number | null): number {
  const byDelayMs = delayMs - elapsedMs
  return healthLeadMs === null ? byDelayMs : Math.min(byDelayMs, limits.hedgeDelayMsMin - healthLeadMs)
}

export class MasterLink {
  readonly #transport: Transport
  readonly #masters: string[]          // configured URLs first, then learned ones; bounded by mastersKnownMax
  readonly #configuredCount: number
  readonly #deadlineMs: number
  readonly #requestTimeoutMs: number
  readonly #mutationTimeoutMs: number
  readonly #policy: RetryPolicy
  readonly #downUntilMs: number[]      // per URL, like #masters
  #masterIndex = 0                     // the remembered master: the last URL that accepted a mutation
  #learnedOverwriteCount = 0           // picks the learned slot to overwrite once the list is full
  #seen: protocol.Position = { term: 0, seq: 0 }   // the newest position any reply carried
  #latencyMs: number | null = null     // smoothed latency of answered reads: the hedge delay follows it
  #membersAskedAtMs = -Infinity        // the last ask for the cluster's metadata servers
  readonly #healthAnsweredAtMs = new Map<string, number>()   // URL → when it answered the last members ask (performance.now())
  readonly #healthWaiters = new Set<() => void>()            // reads with no latency to hedge by, woken by each health answer
  readonly #readHeaders: Record<string, string>

  constructor (transport: Transport, options: MasterLinkOptions) {
    assert(options.masters.length >= 1, 'at least one master URL')
    assert(options.masters.length <= mastersKnownMax - learnedSlotsMin, 'room to learn masters past the configured URLs')
    this.#transport = transport
    this.#masters = [...options.masters]
    this.#configuredCount = this.#masters.length
    this.#deadlineMs = options.deadlineMs
    this.#requestTimeoutMs = options.requestTimeoutMs
    this.#mutationTimeoutMs = Math.min(options.mutationTimeoutMs ?? options.requestTimeoutMs, options.requestTimeoutMs)
    this.#policy = options.policy
    this.#downUntilMs = this.#masters.map(() => 0)
    this.#readHeaders = options.staleReads === true ? { [protocol.staleOkHeader]: '1' } : {}
  }

  get masters (): readonly string[] { return [...this.#masters] }
  get position (): protocol.Position { return { ...this.#seen } }

  // How long a read waits for its URL before racing the next one.
  hedgeDelayMs (): number {
    const latency = this.#latencyMs ?? limits.hedgeDelayMsMin
    return Math.min(limits.hedgeDelayMsMax, Math.max(limits.hedgeDelayMsMin, Math.round(latency * limits.hedgeLatencyFactor)))
  }

  // Asks every known URL for the metadata servers it knows (cheap: health), at most every membersRefreshMs,
  // without waiting for the answers; the new URLs are learned. Returns the ask (tests await it).
  // A new client (a `granary cat` process) sends these asks with its first read: see hedgeWaitMs.
  refreshMembers (force = false): Promise<void> | null {
    const nowMs = Date.now()
    if (!force && nowMs - this.#membersAskedAtMs < limits.membersRefreshMs) return null
    this.#membersAskedAtMs = nowMs
    this.#healthAnsweredAtMs.clear()
    const asks = [...this.#masters].map(async (origin) => {
      let reply: protocol.HealthReply
      try {
        reply = await this.#transport.json<protocol.HealthReply>({ method: 'GET', origin, path: protocol.healthPath, timeoutMs: this.#requestTimeoutMs })
      } catch (err) {
        // An error reply still says the server is running; one it could not send (down, hung) does not.
        if (isGranaryError(err) && !unreachableCodes.has(err.code) && err.code !== 'GRN_ABORTED') this.#noteHealthAnswer(origin)
        throw err
      }
      this.#noteHealthAnswer(origin)
      for (const listed of Array.isArray(reply.metadataServers) ? reply.metadataServers.slice(0, mastersKnownMax) : []) {
        const url = protocol.metadataServerUrl(listed)
        if (url !== undefined && !this.#masters.includes(url)) {
          this.#learn(url)
          publish('failover', () => ({ what: 'members', from: origin, to: url, code: 'LEARNED', message: `learned metadata server ${url} from ${origin}` }))
        }
      }
    })
    return Promise.allSettled(asks).then(() => {})
  }
  #noteHealthAnswer (origin: string): void {
    this.#healthAnsweredAtMs.set(origin, performance.now())
    for (const wake of [...this.#healthWaiters]) wake()
  }

  get masterUrl (): string { return this.#masters[this.#masterIndex] as string }

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

  // ---- access keys (admin) ------------------------------------------------------------------------------
  listKeys (options?: CallOptions): Promise<protocol.KeyListReply> {
    return this.read('list access keys', protocol.keysPath, {}, options)
  }

  signingKey (query: protocol.KeySigningQuery, options?: CallOptions): Promise<protocol.KeySigningReply> {
    return this.read(`signing key of ${query.accessKeyId}`, protocol.keySigningPath, { ...query }, options)
  }

  createKey (request: Omit<protocol.KeyCreateRequest, 'requestId'>, options?: CallOptions): Promise<protocol.AccessKeyInfo> {
    return this.mutate(`create access key ${request.name}`, protocol.keysPath, request, options)
  }

  revokeKey (accessKeyId: string, options?: CallOptions): Promise<protocol.AccessKeyInfo> {
    return this.mutate(`revoke access key ${accessKeyId}`, protocol.keysRevokePath, { accessKeyId }, options)
  }

  // ---- namespace mutations ----------------------------------------------------------------------------
  // mode: the new folder's permission bits (intermediate ones get the default); undefined: the default.
  mkdir (path: string, parents: boolean, options?: CallOptions, mode?: number): Promise<protocol.MkdirReply> {
    return this.mutate(`mkdir ${path}`, protocol.mkdirPath, { path, parents, mode }, options)
  }

  rename (source: string, target: string, options?: CallOptions): Promise<protocol.RenameReply> {
    return this.mutate(`rename ${source}`, protocol.renamePath, { source, target }, options)
  }

  concat (request: { target: string, sources: string[], attrs?: protocol.FileAttrs, mtimeMs?: number }, options?: CallOptions): Promise<protocol.ConcatReply> {
    return this.mutate(`concat into ${request.target}`, protocol.concatPath, request, options)
  }

  delete (path: string, recursive: boolean, skipTrash: boolean, options?: CallOptions): Promise<protocol.DeleteReply> {
    return this.mutate(`delete ${path}`, protocol.deletePath, { path, recursive, skipTrash }, options)
  }

  restore (path: string, target: string | undefined, options?: CallOptions): Promise<protocol.RestoreReply> {
    return this.mutate(`restore ${path}`, protocol.restorePath, target === undefined ? { path } : { path, target }, options)
  }

  // ---- the write protocol -----------------------------------------------------------------------------
  create (request: { path: string, replication?: number, chunkSizeBytes?: number, overwrite?: boolean, mode?: number, allocateFirstChunk?: boolean, attrs?: protocol.FileAttrs }, options?: CallOptions): Promise<protocol.CreateReply> {
    return this.mutate(`create ${request.path}`, protocol.createPath, request, options)
  }

  reserve (request: { count: number, replication?: number, chunkSizeBytes?: number }, options?: CallOptions): Promise<protocol.ReserveReply> {
    return this.mutate(`reserve ${request.count} files`, protocol.reservePath, request, options)
  }

  allocate (request: { inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, excludeServerIds?: ServerId[] }, options?: CallOptions): Promise<protocol.AllocateReply> {
    return this.mutate(`allocate chunk ${request.chunkIndex}`, protocol.allocatePath, request, options)
  }

  commit (request: {
    inodeId: InodeId, leaseId: LeaseId, chunkIndex: number, chunkHandle: ChunkHandle, version: number,
    lengthBytes: number, crc32: number, serverIds: ServerId[], complete?: { sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: protocol.FileAttrs, bind?: protocol.BindArgs }
  }, options?: CallOptions): Promise<protocol.CommitReply> {
    return this.mutate(`commit chunk ${request.chunkIndex}`, protocol.commitPath, request, options)
  }

  complete (request: { inodeId: InodeId, leaseId: LeaseId, sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: protocol.FileAttrs, bind?: protocol.BindArgs }, options?: CallOptions): Promise<protocol.CompleteReply> {
    return this.mutate(`complete inode ${request.inodeId}`, protocol.completePath, request, options)
  }

  abandon (request: { inodeId: InodeId, leaseId: LeaseId }, options?: CallOptions): Promise<protocol.AbandonReply> {
    return this.mutate(`abandon inode ${request.inodeId}`, protocol.abandonPath, request, options)
  }

  // Renewing is idempotent by nature (it only moves an expiry forward), so it carries no requestId.
  renew (request: { inodeId: InodeId, leaseId: LeaseId }, options?: CallOptions): Promise<protocol.RenewReply> {
    return this.#toMaster(`renew inode ${request.inodeId}`, protocol.renewPath, request, { ...options, giveUpOn: undefined })
  }

  // ---- the two call shapes ----------------------------------------------------------------------------
  async read<T> (what: string, route: string, query: QueryValues, options?: CallOptions): Promise<T> {
    void this.refreshMembers()
    const deadline = this.deadline(options)
    const signal = options?.signal
    return retry(() => this.#readOnce<T>(what, route, query, deadline, signal), { what, deadline, policy: this.#policy, signal, giveUpOn: options?.giveUpOn })
  }

  async mutate<T> (what: string, route: string, body: object, options?: CallOptions): Promise<T> {
    const request = { ...body, requestId: newRequestId() }   // chosen once: the same id on every retry, on every URL
    void this.refreshMembers()
    return await this.#toMaster<T>(what, route, request, options)
  }

  // Attempts go to the remembered master first; after each failure #nextForMutation picks the next URL. The
  // backoff and the deadline are retry()'s, so a call that finds no master ends at its deadline with the last error.
  async #toMaster<T> (what: string, route: string, body: object, options: CallOptions | undefined): Promise<T> {
    const deadline = this.deadline(options)
    const signal = options?.signal
    let index = this.#masterIndex
    const tried = new Set<number>()   // URLs that were not the master in this lap over the list
    // With no other URL to move to, each exchange that timed out doubles the next one's timeout (up to
    // requestTimeoutMs): an overloaded lone master is not sent the same mutation every 1.5 s while it is still
    // working on the earlier copies (a retry storm). With a shadow known the timeout stays short, so a frozen
    // master is left quickly for the shadow that is taking over.
    let timedOut = 0
    const attempt = async (): Promise<T> => {
      const meta = { position: null as protocol.Position | null }
      const timeoutMs = Math.min(this.#requestTimeoutMs, this.#mutationTimeoutMs * 2 ** timedOut)
      const reply = await this.#post<T>(this.#masters[index] as string, route, body, deadline, signal, meta, timeoutMs)
      this.#masterIndex = index   // it took a mutation: it is the master
      this.#downUntilMs[index] = 0
      this.#notePosition(meta.position)
      return reply
    }
    const onRetry = (err: GranaryError): void => {
      if (err.code === 'GRN_TIMEOUT' && this.#masters.length === 1) timedOut = Math.min(timedOut + 1, 8)
      if (unreachableCodes.has(err.code)) this.#downUntilMs[index] = Date.now() + downSkipMs
      const next = this.#nextForMutation(index, err, tried)
      if (next !== index) publish('failover', () => ({ what, from: this.#masters[index], to: this.#masters[next], ...describeError(err) }))
      index = next
    }
    return await retry(attempt, { what, deadline, policy: this.#policy, signal, giveUpOn: options?.giveUpOn, onRetry })
  }

  // Where a mutation goes after masters[index] failed with err: the master a refusal names, unless it already
  // refused in this lap; else the next URL round robin that has not. When every URL has failed, a new lap
  // starts (a promotion may be under way). The named master is never followed blindly, so two shadows naming
  // each other cannot keep a mutation from the URLs after them.
  #nextForMutation (index: number, err: GranaryError, tried: Set<number>): number {
    if (!movesOnCodes.has(err.code)) return index
    tried.add(index)
    const named = err.code === 'GRN_NOT_MASTER' ? protocol.namedMasterUrl(err.details) : undefined
    if (named !== undefined) {
      const known = this.#masters.indexOf(named)
      if (known === -1) {
        const learned = this.#learn(named)
        tried.delete(learned)   // a full list reuses a slot: the URL in it now has not refused this mutation
        return learned
      }
      if (!tried.has(known)) return known
    }
    const count = this.#masters.length
    for (let step = 1; step < count; step++) {
      const candidate = (index + step) % count
      if (!tried.has(candidate)) return candidate
    }
    tried.clear()
    const known = named === undefined ? -1 : this.#masters.indexOf(named)
    return known !== -1 && known !== index ? known : (index + 1) % count
  }

  // Adds a master URL a refusal named. When the list is full it overwrites a learned URL instead, in turn,
  // skipping the remembered master; the configured URLs are never dropped.
  #learn (url: string): number {
    assert(!this.#masters.includes(url), 'only a new URL is learned')
    if (this.#masters.length < mastersKnownMax) {
      this.#masters.push(url)
      this.#downUntilMs.push(0)
      return this.#masters.length - 1
    }
    const slotCount = mastersKnownMax - this.#configuredCount
    let index = this.#configuredCount + (this.#learnedOverwriteCount++ % slotCount)
    if (index === this.#masterIndex) index = this.#configuredCount + (this.#learnedOverwriteCount++ % slotCount)
    assert(index !== this.#masterIndex && index >= this.#configuredCount, 'a learned slot other than the master is overwritten')
    this.#masters[index] = url
    this.#downUntilMs[index] = 0
    return index
  }

  // One pass over the URLs, master first, hedged: the next URL is asked when every URL asked so far has failed
  // (at once) or none has answered within the hedge delay. The first good answer wins and the others are
  // aborted; a URL that lost the race to a later one is tried last for downSkipMs. A non-retryable answer
  // (GRN_NOT_FOUND...) is the answer, unless its position is older than one already seen (a lagging shadow's
  // "not found" for a file this client just made): then it counts as GRN_STALE and the pass goes on.
  async #readOnce<T> (what: string, route: string, query: QueryValues, deadline: Deadline, signal: AbortSignal | undefined): Promise<T> {
    const order = this.#readOrder()
    const aborts = new Map<number, LinkedAbort>()   // URL index → its request's abort, while out
    let launched = 0
    let failed = 0
    let settled = false
    let hedgeTimer: NodeJS.Timeout | undefined
    let hedgeFromMs = 0                                  // when the request the hedge timer watches started
    let hedgeOrigin = ''                                 // and its URL
    let wakeOnHealth: (() => void) | undefined
    let abandonTimer: NodeJS.Timeout | undefined
    const outstanding = new Map<number, number>()   // URL index → when its request started (performance.now())
    let last: GranaryError | undefined
    try {
      return await new Promise<T>((resolve, reject) => {
        const finish = (outcome: () => void): void => {
          settled = true
          clearTimeout(hedgeTimer)
          clearTimeout(abandonTimer)
          outcome()
        }
        const launch = (): void => {
          clearTimeout(hedgeTimer)
          if (settled || launched >= order.length) return
          const rank = launched++
          const index = order[rank] as number
          const origin = this.#masters[index] as string
          if (rank > 0) publish('failover', () => ({ what, from: this.#masters[order[rank - 1] as number], to: origin, code: failed === launched - 1 ? last?.code : 'GRN_HEDGE', message: failed === launched - 1 ? last?.message : `no answer within ${Math.round(performance.now() - hedgeFromMs)} ms: racing the next server` }))
          // With one URL there is no race to lose, so no controller (an AbortSignal per read was ~6 µs of CPU);
          // with more, one linked to the caller's signal by a listener, released when this request is over
          // (AbortSignal.any cost ~18 µs: client/linked-abort.ts).
          const abort = order.length > 1 ? new LinkedAbort(signal) : undefined
          if (abort !== undefined) aborts.set(index, abort)
          const meta = { position: null as protocol.Position | null }
          const startedMs = performance.now()
          outstanding.set(index, startedMs)
          this.#transport.json<T>({
            method: 'GET', origin, path: route, query, headers: this.#readHeaders, reply: meta,
            timeoutMs: deadline.timeoutMs(this.#requestTimeoutMs),
            signal: abort === undefined ? signal : abort.signal,
          }).then((reply) => {
            outstanding.delete(index)
            aborts.delete(index)
            abort?.release()
            if (settled) return
            const stale = this.#staleness(meta.position, origin)
            if (stale !== null) { onFailure(index, stale); return }
            this.#noteLatency(performance.now() - startedMs)
            this.#downUntilMs[index] = 0
            for (let earlier = 0; earlier < rank; earlier++) this.#downUntilMs[order[earlier] as number] = Date.now() + downSkipMs
            this.#notePosition(meta.position)
            finish(() => { resolve(reply) })
          }, (err: unknown) => {
            outstanding.delete(index)
            aborts.delete(index)
            abort?.release()
            if (settled) return
            const stale = isGranaryError(err) && !err.retryable ? this.#staleness(meta.position, origin) : null
            if (stale === null && (!isGranaryError(err) || !err.retryable || deadline.expired())) { finish(() => { reject(err) }); return }
            onFailure(index, stale ?? err as GranaryError)
          })
          hedgeFromMs = startedMs
          hedgeOrigin = origin
          if (launched < order.length) armHedge()
          else if (last !== undefined) armAbandon()   // nothing failed yet: nothing to end the pass for (a failure arms it)
        }
        // The next URL is asked once the last one launched has waited hedgeWaitMs. Also run on each health answer
        // while this client has no latency yet (#healthWaiters), which may shorten the wait.
        const armHedge = (): void => {
          clearTimeout(hedgeTimer)
          if (settled || launched >= order.length) return
          const waitMs = Math.min(hedgeWaitMs(performance.now() - hedgeFromMs, this.hedgeDelayMs(), this.#healthLeadMs(hedgeOrigin)), deadline.remainingMs())
          if (waitMs <= 0) { launch(); return }
          hedgeTimer = setTimeout(armHedge, waitMs)
        }
        const onFailure = (index: number, err: GranaryError): void => {
          last = err
          failed++
          this.#downUntilMs[index] = Date.now() + downSkipMs
          if (launched < order.length) {
            if (failed === launched) launch()                    // everyone asked so far failed: the next one now
            return                                               // else another request is still out
          }
          if (failed === launched) { finish(() => { reject(last) }); return }
          armAbandon()
        }
        // Every URL was asked and the ones still out are slow: once each has been out for hedgeAbandonMs, and
        // some other URL has failed (else there is nothing better to do than wait), end the pass (retry() backs
        // off and starts another) and try the slow ones last for a while. A hung master must not hold a read that
        // a lagging shadow answered stale until the master's request times out; a slow but working master (a big
        // list page) gets a whole hedgeAbandonMs, so a stale shadow cannot keep aborting it.
        const armAbandon = (): void => {
          const nowMs = performance.now()
          const waitMs = Math.max(0, ...[...outstanding.values()].map((started) => started + limits.hedgeAbandonMs - nowMs))
          clearTimeout(abandonTimer)
          abandonTimer = setTimeout(() => {
            if (settled || last === undefined) return
            for (const slow of outstanding.keys()) this.#downUntilMs[slow] = Date.now() + downSkipMs
            finish(() => { reject(last) })
          }, waitMs)
        }
        if (this.#latencyMs === null) { wakeOnHealth = armHedge; this.#healthWaiters.add(armHedge) }
        launch()
      })
    } finally {
      if (wakeOnHealth !== undefined) this.#healthWaiters.delete(wakeOnHealth)
      // Only requests still out are aborted (the common case has none: no error object, no stack to capture).
      if (aborts.size > 0) {
        const reason = new GranaryError('GRN_ABORTED', [`${what}: another server answered first`])
        for (const abort of aborts.values()) abort.abort(reason)
      }
    }
  }

  // For a client with no latency yet: how long ago another URL answered the members ask that origin has not
  // answered (null: origin answered, or nobody has, or the client has a latency to hedge by).
  #healthLeadMs (origin: string): number | null {
    if (this.#latencyMs !== null || this.#healthAnsweredAtMs.has(origin) || this.#healthAnsweredAtMs.size === 0) return null
    return performance.now() - Math.min(...this.#healthAnsweredAtMs.values())
  }

  // A reply older than the newest position seen is refused (null: fresh enough, or a server too old to say).
  #staleness (position: protocol.Position | null, origin: string): GranaryError | null {
    if (position === null || !protocol.positionBefore(position, this.#seen)) return null
    return new GranaryError('GRN_STALE', [`${origin} answered at ${protocol.formatPosition(position)}, older than ${protocol.formatPosition(this.#seen)} already seen`],
      { position: protocol.formatPosition(position), seen: protocol.formatPosition(this.#seen) })
  }

  #notePosition (position: protocol.Position | null): void {
    if (position !== null && protocol.positionBefore(this.#seen, position)) this.#seen = position
  }

  #noteLatency (ms: number): void {
    this.#latencyMs = this.#latencyMs === null ? ms : this.#latencyMs * 0.8 + ms * 0.2
  }

  // The remembered master first, then the list in order from it; URLs not recently failed before the rest.
  #readOrder (): number[] {
    const nowMs = Date.now()
    const up: number[] = []
    const down: number[] = []
    const count = this.#masters.length
    for (let step = 0; step < count; step++) {
      const index = (this.#masterIndex + step) % count
      if ((this.#downUntilMs[index] ?? 0) > nowMs) down.push(index)
      else up.push(index)
    }
    return [...up, ...down]
  }

  #post<T> (origin: string, route: string, body: object, deadline: Deadline, signal: AbortSignal | undefined, reply?: { position: protocol.Position | null }, timeoutMs = this.#mutationTimeoutMs): Promise<T> {
    return this.#transport.json<T>({
      method: 'POST', origin, path: route, body, timeoutMs: deadline.timeoutMs(timeoutMs), signal, reply,
    })
  }
}
