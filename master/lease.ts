// The master lease (shared/failover.ts has the rule): this master may acknowledge a mutation, or answer a read
// as the master, only while a majority of the registered chunkservers have renewed it within the lease. A
// renewal is the chunkserver's echo of a heartbeat reply THIS process sent, counted from the moment it was
// sent on this process's monotonic clock — never from when the echo arrived, so a heartbeat that sat in a
// socket buffer while this process was frozen (SIGSTOP) cannot extend anything.
import { randomBytes } from 'node:crypto'
import { leaseEndsAtMs, majorityOf } from '../shared/failover.js'
import type { ServerId } from '../shared/ids.js'
import type { Logger } from '../shared/log.js'
import type { LeaseEcho } from '../shared/protocol.js'
import { sql, type Db } from './db.js'

export interface LeaseOptions {
  db: Db
  leaseMs: number
  now: () => number                 // monotonic ms of this process
  log?: Logger                      // the moment a term is first heard by a majority (acks may start)
}

export class MasterLease {
  readonly instanceId = randomBytes(8).toString('hex')   // tells this process's replies from a predecessor's
  readonly #options: LeaseOptions
  readonly #renewals = new Map<ServerId, number>()       // sentAtMs of the newest echoed reply; bounded by chunkserversMax
  readonly #isrEchoes = new Map<ServerId, number>()
  readonly #echoed = new Map<ServerId, number>()        // the newest term of this process's replies a server echoed
  #registered: Set<ServerId>                            // the servers table, reloaded by refreshVoters()
  #endsAtMs = Number.NEGATIVE_INFINITY
  #released = false
  #heardTerm = 0                                        // the newest term heardByMajority has been true for (logged once)
  readonly #heardWaiters = new Set<() => void>()        // untilHeardByMajority calls; bounded by the server's parked mutations

  constructor (options: LeaseOptions) {
    this.#options = options
    this.#registered = registeredServers(options.db)
    this.#recompute()
  }

  get leaseMs (): number { return this.#options.leaseMs }
  get voterCount (): number { return this.#registered.size }
  get endsAtMs (): number { return this.#endsAtMs }
  get released (): boolean { return this.#released }
  now (): number { return this.#options.now() }

  // True while a majority's promises cover this moment on this clock. Always false once released.
  held (): boolean {
    return !this.#released && this.#options.now() < this.#endsAtMs
  }

  // Describes why not (for refusals and the report).
  describe (): string {
    if (this.#released) return 'released in a hand-over'
    const ageMs = Math.round(this.#options.now() - this.#endsAtMs)
    if (this.#endsAtMs === Number.NEGATIVE_INFINITY) return `no renewals yet from a majority of the ${this.#registered.size} registered chunkservers`
    // held yet refused: only heardByMajority can be missing
    return this.held() ? `elected, but no majority of the ${this.#registered.size} registered chunkservers has yet echoed one of its replies` : `it lapsed ${ageMs} ms ago`
  }

  // A heartbeat: counts its echo when it names this process and this term. Returns whether the server's
  // renewal is one this master can use (if not, the reply asks it to echo at once).
  onHeartbeat (serverId: ServerId, echo: LeaseEcho | undefined, term: number): boolean {
    if (echo === undefined || echo.instanceId !== this.instanceId || echo.term !== term || echo.sentAtMs > this.#options.now()) return false
    const previous = this.#renewals.get(serverId) ?? Number.NEGATIVE_INFINITY
    if (echo.sentAtMs > previous) this.#renewals.set(serverId, echo.sentAtMs)
    this.#isrEchoes.set(serverId, Math.max(this.#isrEchoes.get(serverId) ?? 0, echo.isrEpoch))
    this.#echoed.set(serverId, Math.max(this.#echoed.get(serverId) ?? 0, term))
    this.#recompute()
    if (term > this.#heardTerm && this.heardByMajority(term)) {
      this.#heardTerm = term
      this.#options.log?.info({ term, voters: this.#registered.size, leaseHeld: this.held() }, 'a chunkserver majority echoed this term: acknowledging')
      for (const wake of [...this.#heardWaiters]) wake()
    }
    return true
  }

  // True once a majority of the registered chunkservers has echoed one of this process's own replies, and so
  // holds this term's in-sync set. Votes alone give a lease but not this: a master elected on votes whose voters
  // still hold the previous term's in-sync set must not acknowledge, or a shadow of that set — which lacks the
  // ack — could be elected next (the failover simulation's acksOnVotes variant, test/unit/shared/failover-sim.ts).
  heardByMajority (term: number): boolean {
    if (this.#registered.size === 0) return true
    let heard = 0
    for (const [serverId, echoedTerm] of this.#echoed) if (echoedTerm === term && this.#registered.has(serverId)) heard++
    return heard >= majorityOf(this.#registered.size)
  }

  // Resolves once heardByMajority(term) holds or waitMs have passed, whichever is first; the caller checks
  // again (this only waits, it decides nothing). A master just elected is echoed within a heartbeat or two.
  async untilHeardByMajority (term: number, waitMs: number): Promise<void> {
    if (this.heardByMajority(term) || waitMs <= 0) return
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer)
        this.#heardWaiters.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, waitMs)
      this.#heardWaiters.add(wake)
    })
  }

  // Granted votes are promises too, made after the candidate sent its requests at sentAtMs.
  onVotes (serverIds: readonly ServerId[], sentAtMs: number): void {
    for (const serverId of serverIds) this.#renewals.set(serverId, Math.max(this.#renewals.get(serverId) ?? Number.NEGATIVE_INFINITY, sentAtMs))
    this.#recompute()
  }

  // The servers table changed (a server registered): the majority is over the registered set.
  refreshVoters (): void {
    this.#registered = registeredServers(this.#options.db)
    this.#recompute()
  }

  isrEchoes (): number[] {
    const out: number[] = []
    for (const [serverId, epoch] of this.#isrEchoes) if (this.#registered.has(serverId)) out.push(epoch)
    return out
  }

  // A planned hand-over: from now on this process holds no lease, whatever is echoed.
  release (): void {
    this.#released = true
  }

  #recompute (): void {
    // Only registered servers count; a renewal from a server not (yet) in the table is kept for when it is.
    const renewals: number[] = []
    for (const [serverId, sentAtMs] of this.#renewals) if (this.#registered.has(serverId)) renewals.push(sentAtMs)
    this.#endsAtMs = leaseEndsAtMs(renewals, this.#registered.size, this.#options.leaseMs)
  }
}

function registeredServers (db: Db): Set<ServerId> {
  return new Set((sql(db, 'SELECT serverId FROM servers').all() as Array<{ serverId: ServerId }>).map((r) => r.serverId))
}
