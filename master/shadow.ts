// The shadow's side of following a master: its id, the bootstrap (fetch a snapshot over HTTP), the tail loop
// (long-poll /oplog from its own last seq, apply each record with the master's apply() through the commit
// queue, which checks every result against the one recorded), its lag, and promotion. The process assembly
// (open, listen, re-bootstrap, signals) is main.ts's startShadow; this file holds no HTTP server.
//
// A replayed record that fails or gives a different result means the two copies diverged: a bug. The shadow
// logs it at fatal, loudly, and stops (onFatal exits non-zero) instead of serving reads from a wrong copy.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { caConnectOptions } from '../shared/tls.js'
import { controlRequest, signRequestWithSecret } from '../shared/auth.js'
import { AssertionError } from '../shared/assert.js'
import { GranaryError, errorFromBody, isGranaryError, type ErrorBody } from '../shared/errors.js'
import { newShadowId, shadowIdPattern, type ShadowId } from '../shared/ids.js'
import { lagSamplesKeptMax, oplogRecordsPerPollMax } from '../shared/limits.js'
import type { Logger } from '../shared/log.js'
import * as p from '../shared/protocol.js'
import type { CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import { termAt, type OplogRecord } from './oplog.js'
import { receiveSnapshot, type ReceivedSnapshot } from './snapshot.js'

const requestTimeoutMs = 5_000          // one exchange with the master, on top of the long poll's own wait
const snapshotWaitMs = 10 * 60_000      // headers and body idle time of a snapshot (a large backup takes a while)
const retryDelayMsMin = 25              // between failed polls or bootstrap attempts, doubling...
const retryDelayMsMax = 1_000           // ...up to this
export const bootstrapWaitMsMax = 60_000 // a shadow that cannot get a first snapshot this long gives up (exits)

export type FollowOutcome = 'stopped' | 'snapshot-required' | 'promoted'

// The shadow's id: made once per data folder (temp file then rename), so a restarted shadow is the same
// shadow to its master (its retention hold and report row carry over).
export function loadShadowId (dataDir: string): ShadowId {
  const file = join(dataDir, 'shadow-id')
  if (existsSync(file)) {
    const id = readFileSync(file, 'utf8').trim()
    if (!shadowIdPattern.test(id)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${file} holds ${JSON.stringify(id)}, not a shadow id`])
    return id as ShadowId
  }
  mkdirSync(dataDir, { recursive: true })
  const id = newShadowId()
  writeFileSync(`${file}.tmp`, id + '\n')
  renameSync(`${file}.tmp`, file)
  return id
}

export interface FetchSnapshotOptions {
  masterUrl: string, shadowId: ShadowId, url?: string, dir: string, log: Logger
  secret: Buffer               // signs the request (the master serves a snapshot to servers only)
  waitMsMax: number            // keep trying an unreachable master this long
  termAtLeast: number          // never install a copy older than the term this shadow already has
  ca?: Buffer                  // --ca-file: trusted for an https:// master (default: the system's CAs)
}

// GET /snapshot with retries (an unreachable or busy master is waited for, within waitMsMax). A server that
// refuses with GRN_NOT_MASTER and names its master (a shadow, or a master deposed by a failover) is left for
// the one it names, at most masterHopsMax times. The reply says which master the copy came from: the shadow
// follows that one.
export const masterHopsMax = 8
export async function fetchSnapshot (options: FetchSnapshotOptions): Promise<ReceivedSnapshot & { masterUrl: string }> {
  const agent = new Agent({ connectTimeout: requestTimeoutMs, headersTimeout: snapshotWaitMs, bodyTimeout: snapshotWaitMs, connections: 1, ...caConnectOptions(options.ca) })
  const deadlineMs = Date.now() + options.waitMsMax
  const query = new URLSearchParams({ shadowId: options.shadowId, ...(options.url === undefined ? {} : { url: options.url }) })
  let masterUrl = options.masterUrl
  let hops = 0
  try {
    for (let attempt = 1; ; attempt++) {
      try {
        const target = `${masterUrl}${p.snapshotPath}?${query.toString()}`
        const res = await request(target, { dispatcher: agent, headers: signRequestWithSecret(options.secret, 'GET', new URL(target).pathname + new URL(target).search, null) })
        if (res.statusCode !== 200) throw errorFromBody(await res.body.json().catch(() => undefined) as Partial<ErrorBody> | undefined, res.statusCode)
        const made = await receiveSnapshot(res.body, options.dir)
        if (made.manifest.term < options.termAtLeast) {
          throw new GranaryError('GRN_STALE_TERM', [made.manifest.term, options.termAtLeast], undefined,
            `the master at ${masterUrl} has term ${made.manifest.term}, older than this shadow's ${options.termAtLeast}: refusing its snapshot`)
        }
        return { ...made, masterUrl }
      } catch (err) {
        const failure = asGranaryError(err, masterUrl)
        const named = failure.code === 'GRN_NOT_MASTER' ? p.namedMasterUrl(failure.details) : undefined
        if (named !== undefined && named !== masterUrl && named !== options.url && hops < masterHopsMax) {
          hops += 1
          options.log.warn({ from: masterUrl, to: named, hops }, 'not the master; fetching the snapshot from the master it names')
          masterUrl = named
          continue
        }
        if (!failure.retryable || Date.now() + retryDelayMs(attempt) > deadlineMs) throw failure
        options.log.warn({ master: masterUrl, attempt, code: failure.code, err: failure.message }, 'snapshot not fetched; retrying')
        await sleep(retryDelayMs(attempt))
      }
    }
  } finally {
    await agent.close().catch(() => {})
  }
}

export interface FollowerDeps {
  db: Db
  secret: Buffer                      // signs oplog polls (shared/auth.ts)
  queue: CommitQueue
  masterUrl: string
  shadowId: ShadowId
  pollWaitMs: number
  leaseMs: number              // polls park at most half of it, so a live master is never silent for a lease
  bootstrapCount: number       // snapshots installed by this process so far (for the report)
  bootstrappedAtMono?: number  // performance.now() when this process installed its snapshot: contact, for reads
  log: Logger
  now: () => number
  onFatal: (err: Error) => void
  ca?: Buffer                  // --ca-file: trusted for an https:// master (default: the system's CAs)
}

export class Follower {
  readonly #deps: FollowerDeps
  readonly #agent: Agent
  readonly #stop = new AbortController()
  readonly #samples = new LagSamples(lagSamplesKeptMax)
  #url: string | undefined
  #loop: Promise<FollowOutcome> = Promise.resolve('stopped')
  #masterSeq: number | null = null
  #lastContactMs: number | null = null
  #reachable: boolean | null = null
  #promoting = false
  #lastContactMono: number | null = null   // monotonic: when a poll last succeeded (elections measure silence on it)
  #inSync = false                          // the master's last reply named this shadow in its in-sync set
  #masterUrl: string                       // the master followed; moves when a refusal names a newer one

  constructor (deps: FollowerDeps) {
    this.#deps = deps
    this.#masterUrl = deps.masterUrl
    const timeoutMs = deps.pollWaitMs + requestTimeoutMs
    this.#agent = new Agent({ connectTimeout: requestTimeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 2 * timeoutMs, connections: 2, ...caConnectOptions(deps.ca) })
  }

  // Starts the tail loop; `url` is where this shadow serves (sent with every poll for the master's report).
  start (url: string): void {
    this.#url = url
    this.#loop = this.#run()
  }

  // Resolves when the loop ends: stopped, promoted, or the master said this shadow needs a new snapshot.
  get finished (): Promise<FollowOutcome> { return this.#loop }

  async stop (): Promise<void> {
    this.#stop.abort()
    await this.#loop
    await this.#agent.close().catch(() => {})
  }

  // Records the master had that this shadow has not applied, as of the last poll; null before any poll.
  lagRecords (): number | null {
    return this.#masterSeq === null ? null : Math.max(0, this.#masterSeq - this.#deps.queue.seq)
  }

  report (nowMs: number): p.FollowReport {
    const percentiles = this.#samples.percentiles()
    return {
      masterUrl: this.#masterUrl, appliedSeq: this.#deps.queue.seq, masterSeq: this.#masterSeq, lagRecords: this.lagRecords(),
      lastContactAgeMs: this.#lastContactMs === null ? null : nowMs - this.#lastContactMs, bootstrapCount: this.#deps.bootstrapCount, inSync: this.#inSync,
      ...percentiles
    }
  }

  get masterUrl (): string { return this.#masterUrl }
  get url (): string { return this.#url ?? '' }
  get inSync (): boolean { return this.#inSync }
  // Monotonic ms since the last successful poll; null when none succeeded since this process started.
  masterSilentForMs (monoNowMs: number): number | null {
    return this.#lastContactMono === null ? null : monoNowMs - this.#lastContactMono
  }

  // For serving reads (GRN_STALE past limits.shadowReadStaleMsMax): a snapshot just installed is as fresh as a
  // poll. Elections keep masterSilentForMs, which counts polls only.
  staleForMs (monoNowMs: number): number | null {
    const last = Math.max(this.#lastContactMono ?? -Infinity, this.#deps.bootstrappedAtMono ?? -Infinity)
    return Number.isFinite(last) ? monoNowMs - last : null
  }

  // Refused unless caught up as of the last poll (a planned promotion checks this before asking the master).
  checkCaughtUp (): void {
    const lagRecords = this.lagRecords()
    if (lagRecords !== 0) throw new GranaryError('GRN_NOT_CAUGHT_UP', [this.#describeLag()], { appliedSeq: this.#deps.queue.seq, masterSeq: this.#masterSeq, lagRecords })
  }

  // The election (election.ts) was won: stop following — no record from the old master is applied after
  // this — and become the master of `term`.
  async takeOver (term: number): Promise<{ term: number, seq: number }> {
    const { queue, log } = this.#deps
    if (queue.mode !== 'shadow' || this.#promoting) throw new GranaryError('GRN_INVALID_ARGUMENT', [`this server is not a shadow (it is a ${queue.mode} at term ${queue.term})`])
    this.#promoting = true
    const lagRecords = this.lagRecords()
    const startedMs = performance.now()
    // The tail loop has ended once this resolves; its agent closes in the background (nothing more is sent on
    // it, and the clients and chunkservers waiting for this master should not wait for its sockets).
    this.#stop.abort()
    await this.#loop
    void this.#agent.close().catch(() => {})
    const stoppedMs = performance.now()
    const promoted = queue.promote(this.#deps.now(), term)
    log.warn({ ...promoted, lagRecords, formerMaster: this.#masterUrl, stopMs: Math.round(stoppedMs - startedMs), promoteMs: Math.round(performance.now() - stoppedMs) }, 'promoted to master')
    return promoted
  }

  async #run (): Promise<FollowOutcome> {
    const { log } = this.#deps
    let failures = 0
    while (!this.#stop.signal.aborted) {
      try {
        const reply = await this.#poll()
        this.#apply(reply)
        failures = 0
        this.#noteReachable(true)
      } catch (err) {
        if (this.#stop.signal.aborted) break
        if (err instanceof AssertionError) {
          log.fatal({ err, appliedSeq: this.#deps.queue.seq, master: this.#deps.masterUrl },
            'SHADOW DIVERGED FROM ITS MASTER: an oplog record did not replay to its recorded result; stopping (this is a bug)')
          this.#deps.onFatal(err)
          return 'stopped'
        }
        const failure = asGranaryError(err, this.#masterUrl)
        // The master we followed was deposed and names its successor: follow that one from where we are
        // (a history that diverged is caught by the next poll's term check and re-bootstrapped).
        const named = (failure.details as { masterUrl?: unknown } | undefined)?.masterUrl
        if (failure.code === 'GRN_NOT_MASTER' && typeof named === 'string' && named !== this.#masterUrl && named !== this.#url) {
          log.warn({ from: this.#masterUrl, to: named }, 'the master moved; following the new one')
          this.#masterUrl = named
        }
        if (failure.code === 'GRN_SNAPSHOT_REQUIRED') {
          log.warn({ appliedSeq: this.#deps.queue.seq, err: failure.message }, 'the master no longer has what this shadow needs; re-bootstrapping')
          return 'snapshot-required'
        }
        failures += 1
        this.#noteReachable(false, failure)
        await sleep(retryDelayMs(failures), undefined, { signal: this.#stop.signal }).catch(() => {})
      }
    }
    return this.#promoting ? 'promoted' : 'stopped'
  }

  async #poll (): Promise<p.OplogReply> {
    const { queue, db } = this.#deps
    const after = queue.seq
    const afterTerm = after > 0 ? termAt(db, after) : undefined
    const query = new URLSearchParams({
      after: String(after), waitMs: String(Math.min(this.#deps.pollWaitMs, Math.floor(this.#deps.leaseMs / 2))), limit: String(oplogRecordsPerPollMax), shadowId: this.#deps.shadowId,
      ...(afterTerm === undefined ? {} : { afterTerm: String(afterTerm) }), ...(this.#url === undefined ? {} : { url: this.#url })
    })
    const res = await controlRequest(async (url, init) => await request(url, { ...init, dispatcher: this.#agent, signal: this.#stop.signal }),
      this.#deps.secret, `${this.#masterUrl}${p.oplogPath}?${query.toString()}`, 'GET')
    const body = res.json
    if (res.statusCode !== 200) throw errorFromBody(body as Partial<ErrorBody> | undefined, res.statusCode)
    return body as p.OplogReply
  }

  // Never follows a master of an older term than its own copy (a promoted shadow restarted as a shadow of
  // its deposed master must not take that master's history).
  #apply (reply: p.OplogReply): void {
    const { queue } = this.#deps
    if (reply.term < queue.term) {
      throw new GranaryError('GRN_STALE_TERM', [reply.term, queue.term], undefined,
        `the master at ${this.#masterUrl} has term ${reply.term}, older than this shadow's ${queue.term}: not following it`)
    }
    queue.replay(reply.records as OplogRecord[])
    const doneMs = this.#deps.now()
    for (const record of reply.records) this.#samples.add(doneMs - record.atMs, reply.seq - record.seq)
    this.#masterSeq = reply.seq
    this.#lastContactMs = doneMs
    this.#lastContactMono = performance.now()
    this.#inSync = Array.isArray(reply.isr) && reply.isr.includes(this.#deps.shadowId)
  }

  #noteReachable (reachable: boolean, err?: GranaryError): void {
    if (this.#reachable === reachable) return
    this.#reachable = reachable
    if (reachable) this.#deps.log.info({ master: this.#deps.masterUrl, appliedSeq: this.#deps.queue.seq }, 'following the master')
    else this.#deps.log.warn({ master: this.#deps.masterUrl, code: err?.code, err: err?.message }, 'master unreachable; serving reads from the last applied seq')
  }

  #describeLag (): string {
    const lag = this.lagRecords()
    if (lag === null) return `it has not heard from its master at ${this.#deps.masterUrl} since it started; its lag is unknown`
    const ageMs = this.#lastContactMs === null ? 0 : this.#deps.now() - this.#lastContactMs
    return `${lag} records behind: applied seq ${this.#deps.queue.seq}, master seq ${String(this.#masterSeq)} when last heard from ${ageMs} ms ago`
  }
}

// The newest samples of (ms from the master's commit to this shadow's, records the master had beyond the
// applied one), in a ring: bounded, and the report's percentiles cover recent behaviour only.
class LagSamples {
  readonly #ms: Float64Array
  readonly #records: Float64Array
  #next = 0
  #count = 0

  constructor (capacity: number) {
    this.#ms = new Float64Array(capacity)
    this.#records = new Float64Array(capacity)
  }

  add (ms: number, records: number): void {
    this.#ms[this.#next] = Math.max(0, ms)
    this.#records[this.#next] = Math.max(0, records)
    this.#next = (this.#next + 1) % this.#ms.length
    this.#count = Math.min(this.#count + 1, this.#ms.length)
  }

  percentiles (): Pick<p.FollowReport, 'lagMsP50' | 'lagMsP99' | 'lagRecordsP50' | 'lagRecordsP99'> {
    if (this.#count === 0) return { lagMsP50: null, lagMsP99: null, lagRecordsP50: null, lagRecordsP99: null }
    const ms = this.#ms.slice(0, this.#count).sort()
    const records = this.#records.slice(0, this.#count).sort()
    const at = (sorted: Float64Array, q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
    return { lagMsP50: at(ms, 0.5), lagMsP99: at(ms, 0.99), lagRecordsP50: at(records, 0.5), lagRecordsP99: at(records, 0.99) }
  }
}

function retryDelayMs (attempt: number): number {
  const stepMs = Math.min(retryDelayMsMax, retryDelayMsMin * 2 ** Math.min(attempt - 1, 16))
  return Math.floor(stepMs / 2 + Math.random() * stepMs / 2)
}

// Socket errors and timeouts from undici become GRN_UNAVAILABLE (retryable); Granary errors pass through.
function asGranaryError (err: unknown, masterUrl: string): GranaryError {
  if (isGranaryError(err)) return err
  return new GranaryError('GRN_UNAVAILABLE', [masterUrl, (err as Error).message ?? String(err)], { cause: (err as { code?: string }).code })
}
