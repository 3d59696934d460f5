// A shadow standing for election (the rules are shared/failover.ts's; the voters are chunkserver/voter.ts).
// Automatic: a shadow that its master last named in sync, and that has not heard from that master for a lease
// (plus a random 0..leaseMs/4, so two shadows rarely stand at once), asks every registered chunkserver for its
// vote in a new term. A majority of the registered servers makes it the master of that term; anything less and
// it waits (until the promises its voters gave it lapse, when any voted for it; then a random part) and tries
// the next term while the master stays silent.
// Planned (`granary admin promote`): first a hand-over — the master stops, drains and releases its lease with a
// signed release — then the same vote, which the release lets the chunkservers grant at once. --force skips the
// in-sync check (what the shadow lacks is lost), never the vote.
import { performance } from 'node:perf_hooks'
import { Agent, request } from 'undici'
import { caConnectOptions } from '../shared/tls.js'
import { controlRequest } from '../shared/auth.js'
import { GranaryError, errorFromBody, isGranaryError, type ErrorBody } from '../shared/errors.js'
import { majorityOf } from '../shared/failover.js'
import type { ServerId, ShadowId } from '../shared/ids.js'
import { clockRateErrorMax, electionBackoffMsMax, handOverDrainMsMax, voteRoundMsMax } from '../shared/limits.js'
import type { Logger } from '../shared/log.js'
import * as p from '../shared/protocol.js'
import type { CommitQueue } from './commit-queue.js'
import { sql, type Db } from './db.js'

export interface ElectionDeps {
  db: Db
  secret: Buffer                      // signs votes and the hand-over request (shared/auth.ts)
  queue: CommitQueue
  shadowId: ShadowId
  url: () => string                   // where this shadow serves (candidateUrl)
  leaseMs: number
  autoPromote: boolean
  log: Logger
  now?: () => number                  // monotonic ms
  // The follower's view of its master: silent for how long (monotonic ms; null: never heard), and whether the
  // master's last reply named this shadow in sync.
  masterSilentForMs: (nowMs: number) => number | null
  inSync: () => boolean
  masterUrl: () => string
  // Stops following and becomes master of `term`; voterIds granted at sentAtMs (the lease starts there).
  takeOver: (term: number, voterIds: ServerId[], sentAtMs: number) => Promise<void>
  onElected?: (event: p.FailoverEvent) => void   // after a won candidacy, measured (master/failovers.ts)
  ca?: Buffer                         // --ca-file: trusted for https:// chunkservers and masters (default: the system's CAs)
}

export interface ElectionOutcome { term: number, seq: number, votes: number, voters: number, forced: boolean, handedOver: boolean }

type Refusal = { granted: false, code: string, message: string, term?: number }
type Answer = { granted: true } | Refusal

const checkEveryMsMin = 25
// The master's side of a hand-over: up to handOverDrainMsMax for the chunkservers to know this shadow in sync,
// as long again for the mutations in flight to drain, and a vote round's worth of slack.
const handOverWaitMs = 2 * handOverDrainMsMax + voteRoundMsMax

export class Election {
  readonly #deps: ElectionDeps
  readonly #now: () => number
  readonly #agent: Agent
  #timer: NodeJS.Timeout | null = null
  #running: Promise<ElectionOutcome | null> | null = null
  #standing: Promise<void> | null = null   // a candidacy (a promotion's hand-over and votes, or a round) under way
  #highestTriedTerm = 0
  #notBeforeMs = 0
  #jitterMs: number
  #stopped = false

  constructor (deps: ElectionDeps) {
    this.#deps = deps
    this.#now = deps.now ?? (() => performance.now())
    this.#jitterMs = Math.random() * deps.leaseMs / 4
    this.#agent = new Agent({ connectTimeout: voteRoundMsMax, headersTimeout: voteRoundMsMax, bodyTimeout: voteRoundMsMax, connections: 2, ...caConnectOptions(deps.ca) })
  }

  start (): void {
    if (!this.#deps.autoPromote) return
    const everyMs = Math.max(checkEveryMsMin, Math.floor(this.#deps.leaseMs / 8))
    this.#timer = setInterval(() => { void this.#check() }, everyMs)
    this.#timer.unref()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    if (this.#timer !== null) clearInterval(this.#timer)
    await this.#running?.catch(() => null)
    await this.#agent.close().catch(() => {})
  }

  // Settles when the candidacy under way ends (won or not); null when this shadow is not standing. A mutation
  // that reaches the shadow meanwhile waits for it (bounded, master/server.ts) rather than being refused: in a
  // hand-over the old master sends clients here a few ms before the vote ends.
  standing (): Promise<void> | null {
    return this.#standing
  }

  // Runs a candidacy with #standing set (from this call, synchronously, until it has settled).
  async #stand<T> (candidacy: () => Promise<T>): Promise<T> {
    let settle = (): void => {}
    this.#standing = new Promise<void>((resolve) => { settle = resolve })
    try {
      return await candidacy()
    } finally {
      this.#standing = null
      settle()
    }
  }

  async #check (): Promise<void> {
    const { queue, log } = this.#deps
    if (this.#stopped || this.#running !== null || this.#standing !== null || queue.mode !== 'shadow' || !this.#deps.inSync()) return
    const nowMs = this.#now()
    const silentMs = this.#deps.masterSilentForMs(nowMs)
    if (silentMs === null || silentMs < this.#deps.leaseMs + this.#jitterMs || nowMs < this.#notBeforeMs) return
    const fromUrl = this.#deps.masterUrl()
    log.warn({ master: fromUrl, silentMs: Math.round(silentMs) }, 'master silent for a lease: standing for election')
    this.#running = this.#stand(async () => await this.#round({ force: false, release: undefined }))
    try {
      const won = await this.#running
      if (won !== null) this.#elected(won, nowMs, silentMs, fromUrl)
      if (won === null) {
        this.#notBeforeMs = this.#now() + this.#retryAfterMs()
        this.#jitterMs = Math.random() * this.#deps.leaseMs / 4
      }
    } catch (err) {
      log.error({ err }, 'election round failed')
    } finally {
      this.#running = null
    }
  }

  // `granary admin promote`: a hand-over when the master answers, then the vote. Retries the vote within
  // handOverDrainMsMax (a chunkserver that has not yet seen the release refuses with GRN_MASTER_LEASE_HELD).
  async promote (force: boolean): Promise<ElectionOutcome> {
    const { queue } = this.#deps
    if (queue.mode !== 'shadow' || this.#running !== null || this.#standing !== null) {
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`this server is ${queue.mode === 'shadow' ? 'already standing for election' : `a ${queue.mode}`} at term ${queue.term}; only a shadow is promoted`])
    }
    const startedMs = this.#now()
    const silentMs = this.#deps.masterSilentForMs(startedMs)
    const fromUrl = this.#deps.masterUrl()
    const won = await this.#stand(async () => await this.#promote(force))
    this.#elected(won, startedMs, silentMs, fromUrl)
    return won
  }

  // A won candidacy, measured from standing (or the promote call) on this shadow's monotonic clock.
  #elected (won: ElectionOutcome, startedMs: number, silentMs: number | null, fromUrl: string): void {
    const electionMs = Math.round(this.#now() - startedMs)
    const kind = won.forced ? 'forced' : won.handedOver ? 'hand-over' : 'election'
    const silent = kind === 'hand-over' || silentMs === null ? null : Math.round(silentMs)
    this.#deps.onElected?.({
      atMs: Date.now(), term: won.term, kind, fromUrl, silentMs: silent, electionMs, totalMs: electionMs + (silent ?? 0), votes: won.votes, voters: won.voters
    })
  }

  async #promote (force: boolean): Promise<ElectionOutcome> {
    const { log } = this.#deps
    let release: string | undefined
    try {
      release = (await this.#handOver()).release
    } catch (err) {
      const failure = isGranaryError(err) ? err : new GranaryError('GRN_UNAVAILABLE', [this.#deps.masterUrl(), (err as Error).message])
      if (!['GRN_UNAVAILABLE', 'GRN_TIMEOUT', 'GRN_NOT_MASTER'].includes(failure.code) && !(force && failure.code === 'GRN_NOT_CAUGHT_UP')) throw failure
      log.warn({ master: this.#deps.masterUrl(), code: failure.code }, 'no hand-over from the master (gone, deposed or without its lease); asking for votes once its lease lapses')
    }
    const deadlineMs = this.#now() + handOverDrainMsMax + this.#deps.leaseMs
    let lastRefusal = 'no round ran'
    let lostTo = false   // some round's refusals said another candidate has a term's votes, or a newer master exists
    const run = async (): Promise<ElectionOutcome | null> => {
      while (!this.#stopped) {
        const won = await this.#round({ force, release, handedOver: release !== undefined })
        if (won !== null) return won
        lastRefusal = this.#lastRefusal
        lostTo ||= this.#lastRefusalCodes.some((code) => code === 'GRN_VOTE_TAKEN' || code === 'GRN_STALE_TERM')
        if (this.#now() >= deadlineMs) return null
        await new Promise((resolve) => setTimeout(resolve, checkEveryMsMin))
      }
      return null
    }
    this.#running = run()
    try {
      const won = await this.#running
      if (won === null && lostTo) throw new GranaryError('GRN_VOTE_LOST', [`no majority voted for it before its deadline, and another candidate had votes or a newer master exists (last round: ${lastRefusal})`])
      if (won === null) throw new GranaryError('GRN_UNAVAILABLE', ['a majority of chunkservers', `no majority voted for this shadow: ${lastRefusal}`])
      return won
    } finally {
      this.#running = null
    }
  }

  #lastRefusal = ''
  #lastRefusalCodes: string[] = []
  #lastGrants = 0

  // After a lost round. A voter that granted this candidate a vote promised it a lease and refuses every other
  // term until that promise lapses (on the voter's clock, up to leaseMs (1 + e) / (1 - e) of this one's), so
  // standing again before then only splits the next round too; the random part, scaled to the promise, keeps
  // two losing candidates from coming back together. A round nobody voted in (the master's promises still
  // held, or no answer) holds no promise to wait for: a short random backoff. The simulation
  // (test/unit/shared/failover-sim.ts, variant retryWithinPromise) shows elections failing for good without it.
  #retryAfterMs (): number {
    if (this.#lastGrants === 0) return Math.random() * electionBackoffMsMax
    const promisesMs = this.#deps.leaseMs * (1 + clockRateErrorMax) / (1 - clockRateErrorMax)
    return promisesMs + Math.random() * Math.max(electionBackoffMsMax, 2 * promisesMs)
  }

  async #handOver (): Promise<p.HandOverReply> {
    const res = await controlRequest(async (url, init) => await request(url, { ...init, dispatcher: this.#agent, headersTimeout: handOverWaitMs, bodyTimeout: handOverWaitMs }),
      this.#deps.secret, this.#deps.masterUrl() + p.handOverPath, 'POST', { shadowId: this.#deps.shadowId, url: this.#deps.url() } satisfies p.HandOverRequest)
    if (res.statusCode !== 200) throw errorFromBody(res.json as Partial<ErrorBody> | undefined, res.statusCode)
    return res.json as p.HandOverReply
  }

  // One round: every registered chunkserver at once, each answer within voteRoundMsMax. Null: not won.
  async #round (options: { force: boolean, release: string | undefined, handedOver?: boolean }): Promise<ElectionOutcome | null> {
    const { db, queue, log } = this.#deps
    const voters = sql(db, 'SELECT serverId, url FROM servers').all() as Array<{ serverId: ServerId, url: string }>
    if (voters.length === 0) {
      this.#lastRefusal = 'no chunkserver is registered, so no majority can vote'
      this.#lastRefusalCodes = []
      return null
    }
    const term = Math.max(queue.term, this.#highestTriedTerm) + 1
    this.#highestTriedTerm = term
    const sentAtMs = this.#now()
    const body: p.VoteRequest = {
      term, candidateId: this.#deps.shadowId, candidateUrl: this.#deps.url(),
      ...(options.force ? { force: true } : {}), ...(options.release === undefined ? {} : { release: options.release })
    }
    const need = majorityOf(voters.length)
    log.info({ term, voters: voters.length, forced: options.force, handedOver: options.handedOver === true }, 'asking for votes')
    const answers = await this.#askAll(voters.map((voter) => voter.url), body, need)
    const granted = voters.filter((_, i) => answers[i]?.granted === true).map((voter) => voter.serverId)
    this.#lastGrants = granted.length
    const refusals = answers.filter((a): a is Refusal => a?.granted === false)
    const newerTerm = Math.max(0, ...refusals.map((a) => a.term ?? 0))
    if (newerTerm >= this.#highestTriedTerm) this.#highestTriedTerm = newerTerm
    this.#lastRefusal = refusals.map((r) => `${r.code}: ${r.message}`).slice(0, 3).join('; ')
    this.#lastRefusalCodes = refusals.map((r) => r.code)
    // Nobody voted in this term (every voter is still promised to the master, or unreachable): the next round
    // asks for the same term again instead of using terms up.
    if (granted.length === 0 && refusals.every((r) => r.code === 'GRN_MASTER_LEASE_HELD' || r.code === 'GRN_UNAVAILABLE' || r.code === 'GRN_NOT_IN_SYNC')) {
      this.#highestTriedTerm = Math.max(queue.term, newerTerm, term - 1)
    }
    if (granted.length < need || queue.mode !== 'shadow' || this.#stopped) {
      log.warn({ term, votes: granted.length, need, voters: voters.length, refusals: this.#lastRefusal }, 'election lost')
      return null
    }
    const votedMs = this.#now() - sentAtMs
    await this.#deps.takeOver(term, granted, sentAtMs)
    log.warn({ term, seq: queue.seq, votes: granted.length, voters: voters.length, forced: options.force, handedOver: options.handedOver === true, votedMs: Math.round(votedMs), takenOverMs: Math.round(this.#now() - sentAtMs) }, 'elected master')
    return { term, seq: queue.seq, votes: granted.length, voters: voters.length, forced: options.force, handedOver: options.handedOver === true }
  }

  // Every voter at once; settles when all have answered or as soon as `need` granted (the others' answers
  // cannot change the outcome, and the winner's lease and the clients waiting on it should not wait for the
  // slowest voter's disk). An answer not in yet is undefined.
  async #askAll (urls: readonly string[], body: p.VoteRequest, need: number): Promise<Array<Answer | undefined>> {
    const answers: Array<Answer | undefined> = urls.map(() => undefined)
    await new Promise<void>((resolve) => {
      let pending = urls.length
      let grants = 0
      for (const [i, url] of urls.entries()) {
        void this.#ask(url, body).then((answer) => {
          answers[i] = answer
          pending -= 1
          if (answer.granted) grants += 1
          if (grants >= need || pending === 0) resolve()
        })
      }
    })
    return [...answers]
  }

  async #ask (url: string, body: p.VoteRequest): Promise<Answer> {
    try {
      const res = await controlRequest(async (target, init) => await request(target, { ...init, dispatcher: this.#agent, signal: AbortSignal.timeout(voteRoundMsMax) }),
        this.#deps.secret, url + p.votePath, 'POST', body)
      const json = (res.json ?? {}) as { granted?: boolean, code?: string, message?: string, details?: { term?: number, votedTerm?: number } }
      if (res.statusCode === 200 && json.granted === true) return { granted: true }
      const term = Math.max(json.details?.term ?? 0, json.details?.votedTerm ?? 0)
      return { granted: false, code: json.code ?? `HTTP ${res.statusCode}`, message: json.message ?? '', term }
    } catch (err) {
      return { granted: false, code: 'GRN_UNAVAILABLE', message: `${url}: ${(err as Error).message}` }
    }
  }
}
