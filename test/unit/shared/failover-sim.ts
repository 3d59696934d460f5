// A deterministic simulation of the failover protocol (FoundationDB / TigerBeetle style): one seed fixes every
// choice — how many chunkservers, every clock's rate and offset, every message's delay, drop, duplicate and cut
// link, every freeze, restart and host death — so a failing seed replays exactly, step for step.
//
// The actors model what the real processes do with shared/failover.ts's pure functions:
// - metadata nodes m0..m2: m0 starts as the master of term 1, m1 and m2 as shadows. The master answers every
//   chunkserver heartbeat with a MasterReplyView and its own clock's sentAtMs, counts the echoes into its lease
//   (leaseEndsAtMs over the registered chunkservers), pushes its log to the shadows, keeps its in-sync set with
//   isrAfterCatchUp / isrProposeRemoval / isrAfterEchoes, and acknowledges a mutation only while its lease is
//   held on its own clock and isrConfirmed says every member has it. A shadow appends what its master sends
//   (Raft's prefix rule: it truncates only a suffix that conflicts), confirms the seq it matched, and stands for
//   election (master/election.ts) when its master has been silent for a lease plus a jitter. A winner is master
//   with the lease its votes gave (from its send time), keeps its whole log and starts with an empty in-sync set.
//   A master that learns a newer term steps down and follows like any shadow.
// - chunkservers c0..c4 (3 to 5): heartbeat every node, apply onMasterReply to replies and echo the newest usable
//   one (term, sentAtMs, ISR epoch) in the next heartbeat, and answer vote requests with decideVote. votedTerm,
//   votedFor, the term and the in-sync set persist; a restart calls freshVoterState (noVoteBeforeMs is forgotten).
// - every actor reads time only from its own clock, whose rate is within ±clockRateErrorMax of real time and
//   may change; a frozen actor (SIGSTOP) handles nothing, and what queued up is handled when it wakes, by which
//   time its clock has jumped forward.
// - faults: random delays (so reordering), drops, duplicates, links cut one way or both (a master cut off from
//   its shadows, or whose every send is lost), freezes, chunkserver kills and restarts (a majority at once while
//   votes are asked), clock rate changes, and at most one host death of the master. "Buggify" choices aim at
//   the narrow moments (a freeze just after an election; edge seeds at the drift margin, see the constructor).
//
// Two rules the simulation found (it fails without them, see the variants); the master code has both:
// - acksOnVotes: a new master acknowledges nothing until a chunkserver majority has echoed one of its own
//   replies (and so holds its in-sync set). On its votes' lease alone, with the empty set, an ack can be on it
//   alone while a majority still holds the previous term's set and elects a shadow without that mutation.
//   master/lease.ts heardByMajority, required by master/server.ts before any mutation is acknowledged.
// - retryWithinPromise: a candidate that lost, when some voter granted it a vote, waits until the promises its
//   voters gave it have lapsed (leaseMs (1 + e) / (1 - e)) plus a random 0..max(electionBackoffMsMax, twice
//   that), or two candidates, each holding some voters' promises, refuse each other's next rounds and the
//   election can go on failing (seed 162: 2 + 2 of 4, round after round). master/election.ts
//   #retryAfterMs.
//
// Invariants, checked after every step (each handled message or timer):
// (1) at no real time can two masters acknowledge: at most one master's lease is held on its own clock;
// (2) every acknowledged mutation is in the log of every later master (same seq, same entry);
// (3) at most one master per term.
// And liveness, lightly: when the master's host dies while a shadow is in its in-sync set (and a chunkserver
// majority knows it), some shadow is master again within a bounded simulated time once the faults stop.
//
// Variants flip one rule each, to show that the checks catch a broken protocol (failover-sim.test.ts).
import {
  decideVote, freshVoterState, isrAfterCatchUp, isrAfterEchoes, isrAnnounced, isrConfirmed, isrProposeRemoval,
  leaseEndsAtMs, majorityOf, onMasterReply, type IsrState, type MasterReplyView, type VoterState
} from '../../../shared/failover.js'
import {
  clockRateErrorMax, electionBackoffMsMax, isrChangeWaitMsMax, isrConfirmWaitMsMax, leaseMsDefault, leaseMsMin, voteRoundMsMax
} from '../../../shared/limits.js'

export type Variant =
  | 'correct'
  | 'leaseFromReceiveTime'   // the master counts a renewal from when the echo ARRIVED, not from when it sent the reply
  | 'echoBelowVotedTerm'     // a chunkserver still renews a master of a term below the one it voted in
  | 'acksOnVotes'            // a new master acknowledges on the lease its votes gave, before a chunkserver majority
                             // has heard its (empty) in-sync set (master/lease.ts heardByMajority forbids it)
  | 'retryWithinPromise'     // a candidate that lost stands again after 0..electionBackoffMsMax (what master/election.ts did),
                             // while its voters' promises to it still refuse the new term (a liveness failure)

export interface SimOptions {
  variant?: Variant
  trace?: boolean            // keep a line per step (for replaying one seed)
  stepsMax?: number
  livenessBoundMs?: number   // after the faults stop; default 30 leases + 30 s
}

export interface SimFailure { invariant: string, step: number, atMs: number, message: string }

export interface SimResult {
  seed: number
  steps: number
  simulatedMs: number
  chunkserverCount: number
  acks: number
  elections: number
  hostDeath: boolean
  livenessChecked: boolean
  closestHandOverMs: number      // real ms between a master's lease lapsing and another's election, at the closest
  electedAfterMs: number | null   // from the faults stopping to a new master (liveness seeds; negative: before they stopped)
  failure: SimFailure | null
  trace: string[]
}

// ---- a seeded PRNG: mulberry32 (32-bit state, good enough for choosing faults) -------------------------------
export function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---- the event queue: a binary heap on (atMs, insertion order), so equal times run in a fixed order -----------
interface SimEvent { atMs: number, order: number, run: () => void }

class EventQueue {
  readonly #heap: SimEvent[] = []
  #order = 0

  get size (): number { return this.#heap.length }

  push (atMs: number, run: () => void): void {
    const heap = this.#heap
    heap.push({ atMs, order: this.#order++, run })
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i] as SimEvent, heap[parent] as SimEvent)) break
      swap(heap, i, parent)
      i = parent
    }
  }

  pop (): SimEvent | undefined {
    const heap = this.#heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) return top
    heap[0] = last
    let i = 0
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let least = i
      if (left < heap.length && before(heap[left] as SimEvent, heap[least] as SimEvent)) least = left
      if (right < heap.length && before(heap[right] as SimEvent, heap[least] as SimEvent)) least = right
      if (least === i) break
      swap(heap, i, least)
      i = least
    }
    return top
  }
}

function before (a: SimEvent, b: SimEvent): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order)
}

function swap (heap: SimEvent[], i: number, j: number): void {
  const t = heap[i] as SimEvent
  heap[i] = heap[j] as SimEvent
  heap[j] = t
}

// ---- clocks: piecewise linear in real time, rate within ±clockRateErrorMax --------------------------------------
interface Clock { baseRealMs: number, baseClockMs: number, rate: number }

function clockAt (clock: Clock, realMs: number): number {
  return clock.baseClockMs + (realMs - clock.baseRealMs) * clock.rate
}

// ---- the actors -------------------------------------------------------------------------------------------------
interface Entry { id: number, term: number, seq: number }

interface Actor {
  id: string
  clock: Clock
  dead: boolean
  frozenUntilMs: number          // real time; > now: frozen
  backlog: Array<() => void>     // what arrived while frozen, handled in order on waking
  pendingTick: (() => void) | null
  incarnation: number            // a timer set by an earlier incarnation (before a restart) does not fire
}

interface Candidacy {
  term: number, sentAtMs: number, deadlineMs: number, grants: Set<string>, answered: Set<string>
  termWasted: boolean            // some refusal said the term itself was taken or stale (not just "wait")
}

interface Node extends Actor {
  kind: 'node'
  role: 'master' | 'shadow'
  knownTerm: number              // the newest term this node has heard of (from a master, a heartbeat, a refusal)
  highestTriedTerm: number
  log: Entry[]
  // as a shadow
  lastHeardMs: number | null     // own clock: the last append from a master of a term it accepts
  lastAppend: { term: number, appendNo: number }   // a poll's reply never overtakes the next one's: older ones are dropped
  inSync: boolean                // that master's last append named it in sync
  jitterMs: number
  notBeforeMs: number
  candidacy: Candidacy | null
  // as a master
  masterTerm: number
  echoRenewals: Map<string, number>
  voteRenewals: Map<string, number>
  echoedEpochs: Map<string, number>
  leaseEndsAtMs: number          // own clock: echoes and votes; while it holds, no other master can hold one
  isr: IsrState
  confirmed: Map<string, number>
  nextSeq: Map<string, number>
  appendsSent: number
  pending: Array<{ seq: number, arrivedAtMs: number }>
  ackCursor: number              // acks[0..ackCursor) checked against this master's log
}

interface Echo { term: number, sentAtMs: number, isrEpoch: number }
type Persisted = Pick<VoterState, 'term' | 'votedTerm' | 'votedFor' | 'isrTerm' | 'isrEpoch' | 'isr'>

interface Chunkserver extends Actor {
  kind: 'chunkserver'
  state: VoterState
  persisted: Persisted           // what survives a restart (written before anything is answered)
  echoes: Map<string, Echo | null>
}

type Message =
  | { kind: 'heartbeat', from: string, to: string, term: number, echo: Echo | null }
  | { kind: 'heartbeatReply', from: string, to: string, view: MasterReplyView, sentAtMs: number }
  | { kind: 'append', from: string, to: string, term: number, appendNo: number, prevSeq: number, prevId: number, entries: Entry[], inSync: boolean }
  | { kind: 'appendReply', from: string, to: string, term: number, ok: boolean, matchSeq: number }
  | { kind: 'voteRequest', from: string, to: string, term: number, candidateId: string, sentAtMs: number }
  | { kind: 'voteReply', from: string, to: string, term: number, granted: boolean, code: string | null, knownTerm: number }
  | { kind: 'mutation', from: string, to: string }

interface Ack { seq: number, id: number, term: number, node: string, atMs: number }

const appendBatchMax = 64
const nackStepBack = 16

class Simulation {
  readonly #rng: () => number
  readonly #variant: Variant
  readonly #traceOn: boolean
  readonly #stepsMax: number
  readonly #queue = new EventQueue()
  readonly trace: string[] = []

  // seed parameters
  readonly leaseMs: number
  readonly chunkserverCount: number
  readonly #heartbeatIntervalMs: number
  readonly #masterTickMs: number
  readonly #shadowTickMs: number
  readonly #edge: boolean
  readonly #eagerElection: boolean
  readonly #delayMsMax: number
  readonly #longDelayChance: number
  #dropChance: number
  readonly #duplicateChance: number
  readonly #faultEveryMs: number
  readonly #mutationEveryMs: number
  readonly #standWithoutSync: boolean
  readonly #endMs: number

  readonly #nodes: Node[] = []
  readonly #chunkservers: Chunkserver[] = []
  readonly #byId = new Map<string, Node | Chunkserver>()
  readonly #acks: Ack[] = []
  readonly #cutUntilMs = new Map<string, number>()   // 'from>to' → real time the link heals
  readonly #termMasters = new Map<number, string>()
  #nowMs = 0
  #nextEntryId = 1
  #faultsActive = true
  #hostDeathAtMs: number | null
  #hostDeathDone = false
  #liveness: { sinceMs: number, quiesceAtMs: number, deadlineMs: number, metAtMs: number | null } | null = null
  readonly #livenessBoundMs: number | undefined

  steps = 0
  elections = 0
  closestHandOverMs = Number.POSITIVE_INFINITY   // real ms from a still-running master's lease lapsing to a rival's election
  failure: SimFailure | null = null

  constructor (seed: number, options: SimOptions) {
    this.#rng = mulberry32(Math.imul(seed ^ 0x5bd1e995, 0x9E3779B1) ^ seed)
    this.#variant = options.variant ?? 'correct'
    this.#traceOn = options.trace === true
    this.#stepsMax = options.stepsMax ?? 200_000
    this.#livenessBoundMs = options.livenessBoundMs
    const r = this.#rng
    // Edge seeds aim at the drift margin (masterLeaseMs): a long lease, frequent heartbeats (the newest renewal
    // is fresh), a fast network, chunkserver clocks at their fastest (promises end soonest), metadata clocks at
    // one extreme or the other, shadows that stand the moment a lease has passed, and masters whose every send
    // is lost. A margin too thin shows there as two masters that could both acknowledge.
    this.#edge = r() < 0.15
    this.leaseMs = this.#edge || r() < 0.5 ? leaseMsDefault : leaseMsMin + Math.floor(r() * (leaseMsDefault - leaseMsMin))
    this.chunkserverCount = 3 + Math.floor(r() * 3)
    this.#heartbeatIntervalMs = this.#edge || r() < 0.1 ? this.leaseMs / 20 : this.leaseMs / (3 + r() * 3)
    this.#eagerElection = this.#edge || r() < 0.1
    this.#masterTickMs = Math.max(5, this.leaseMs / 20)
    this.#shadowTickMs = this.#eagerElection ? 5 : Math.max(5, this.leaseMs / 8)
    this.#delayMsMax = this.#edge ? 0.5 + r() * 2 : 1 + r() * 30
    this.#longDelayChance = this.#edge ? 0 : r() * 0.05
    this.#dropChance = this.#edge || r() < 0.2 ? 0 : r() * 0.2
    this.#duplicateChance = r() * 0.1
    this.#faultEveryMs = 100 + r() * 1500
    this.#mutationEveryMs = 5 + r() * 100
    this.#standWithoutSync = r() < 0.3   // a shadow that stands even when not named in sync: the voters must refuse it
    this.#endMs = 5_000 + r() * 10_000
    this.#hostDeathAtMs = r() < 0.4 ? 1_000 + r() * (this.#endMs - 2_000) : null

    for (let i = 0; i < 3; i++) {
      const node: Node = {
        ...this.#newActor(`m${i}`), kind: 'node', role: i === 0 ? 'master' : 'shadow', knownTerm: i === 0 ? 1 : 0,
        highestTriedTerm: 0, log: [], lastHeardMs: null, lastAppend: { term: 0, appendNo: 0 }, inSync: false, jitterMs: this.#jitterMs(), notBeforeMs: 0,
        candidacy: null, masterTerm: i === 0 ? 1 : 0, echoRenewals: new Map(), voteRenewals: new Map(), echoedEpochs: new Map(),
        leaseEndsAtMs: Number.NEGATIVE_INFINITY, isr: { epoch: 0, members: [], proposed: null }, confirmed: new Map(),
        nextSeq: new Map(), appendsSent: 0, pending: [], ackCursor: 0
      }
      this.#nodes.push(node)
      this.#byId.set(node.id, node)
    }
    this.#termMasters.set(1, 'm0')
    for (let i = 0; i < this.chunkserverCount; i++) {
      const actor = this.#newActor(`c${i}`)
      const state = freshVoterState(clockAt(actor.clock, 0), this.leaseMs)
      const cs: Chunkserver = { ...actor, kind: 'chunkserver', state, persisted: persistedOf(state), echoes: new Map() }
      this.#chunkservers.push(cs)
      this.#byId.set(cs.id, cs)
    }
  }

  run (): void {
    for (const node of this.#nodes) this.#tick(node, this.#rng() * this.#masterTickMs, () => { this.#nodeTick(node) })
    for (const cs of this.#chunkservers) this.#tick(cs, this.#rng() * this.#heartbeatIntervalMs, () => { this.#chunkserverTick(cs) })
    this.#at(this.#rng() * this.#mutationEveryMs, () => { this.#clientMutation() })
    this.#at(this.#rng() * this.#faultEveryMs, () => { this.#fault() })
    if (this.#hostDeathAtMs !== null) this.#at(this.#hostDeathAtMs, () => { this.#hostDeath(0) })
    let ranOut = false
    while (this.failure === null) {
      if (this.steps >= this.#stepsMax) { ranOut = true; break }
      const event = this.#queue.pop()
      if (event === undefined || event.atMs > this.#runsUntilMs()) break
      this.#nowMs = event.atMs
      event.run()
    }
    const live = this.#liveness
    if (this.failure === null && !ranOut && live !== null && live.metAtMs === null) {
      this.#nowMs = Math.max(this.#nowMs, live.deadlineMs)
      this.#fail('liveness', `the master's host died at ${live.sinceMs.toFixed(1)} ms with a shadow in its in-sync set, and no shadow became master by ${live.deadlineMs.toFixed(1)} ms`)
    }
  }

  // A liveness seed runs until a new master is elected (and 2 s more) or the deadline passes.
  #runsUntilMs (): number {
    const live = this.#liveness
    if (live === null) return this.#endMs
    return live.metAtMs === null ? Math.max(this.#endMs, live.deadlineMs) : Math.max(this.#endMs, live.metAtMs + 2_000)
  }

  get nowMs (): number { return this.#nowMs }
  get acks (): number { return this.#acks.length }
  get hostDeath (): boolean { return this.#hostDeathDone }
  get livenessChecked (): boolean { return this.#liveness !== null }
  get electedAfterMs (): number | null {
    const live = this.#liveness
    return live === null || live.metAtMs === null ? null : live.metAtMs - live.quiesceAtMs
  }

  // ---- plumbing ---------------------------------------------------------------------------------------------
  #newActor (id: string): Actor {
    return { id, clock: this.#newClock(0, id), dead: false, frozenUntilMs: 0, backlog: [], pendingTick: null, incarnation: 0 }
  }

  #newClock (realMs: number, id: string): Clock {
    return { baseRealMs: realMs, baseClockMs: this.#rng() * 1e7, rate: this.#clockRate(id) }
  }

  // master/election.ts: a random 0..leaseMs/2 beyond the lease, so two shadows rarely stand at once.
  #jitterMs (): number {
    return this.#eagerElection ? 0 : this.#rng() * this.leaseMs / 2
  }

  #clockRate (id: string): number {
    if (this.#edge) return id.startsWith('c') || this.#rng() < 0.5 ? 1 + clockRateErrorMax : 1 - clockRateErrorMax
    const r = this.#rng()
    if (r < 0.15) return 1 - clockRateErrorMax   // the extremes, where a wrong margin shows first
    if (r < 0.3) return 1 + clockRateErrorMax
    return 1 - clockRateErrorMax + this.#rng() * 2 * clockRateErrorMax
  }

  #now (actor: Actor): number { return clockAt(actor.clock, this.#nowMs) }

  #at (atMs: number, run: () => void): void { this.#queue.push(atMs, run) }

  #log (line: string): void {
    if (this.#traceOn) this.trace.push(`${this.steps} ${this.#nowMs.toFixed(3)} ${line}`)
  }

  // A timer on the actor's own clock (converted at its current rate); it does not fire in a later incarnation,
  // and while the actor is frozen it waits for the wake.
  #tick (actor: Actor, clockDelayMs: number, run: () => void): void {
    const incarnation = actor.incarnation
    this.#at(this.#nowMs + clockDelayMs / actor.clock.rate, () => {
      if (actor.dead || actor.incarnation !== incarnation) return
      if (this.#nowMs < actor.frozenUntilMs) { actor.pendingTick = run; return }
      run()
      this.#check()
    })
  }

  #send (message: Message): void {
    const cutUntilMs = this.#cutUntilMs.get(`${message.from}>${message.to}`)
    if (cutUntilMs !== undefined && this.#nowMs < cutUntilMs) { this.#log(`cut ${message.kind} ${message.from}->${message.to}`); return }
    if (this.#faultsActive && this.#rng() < this.#dropChance) { this.#log(`drop ${message.kind} ${message.from}->${message.to}`); return }
    const copies = this.#faultsActive && this.#rng() < this.#duplicateChance ? 2 : 1
    for (let i = 0; i < copies; i++) {
      let delayMs = 0.05 + this.#rng() * this.#delayMsMax
      if (this.#faultsActive && this.#rng() < this.#longDelayChance) delayMs += this.#rng() * 2 * this.leaseMs
      this.#at(this.#nowMs + delayMs, () => { this.#deliver(message) })
    }
  }

  #deliver (message: Message): void {
    const target = this.#byId.get(message.to)
    if (target === undefined || target.dead) return
    const handle = (): void => {
      this.#log(`recv ${message.to}<-${message.from} ${describe(message)}`)
      if (target.kind === 'node') this.#nodeReceive(target, message)
      else this.#chunkserverReceive(target, message)
    }
    if (this.#nowMs < target.frozenUntilMs) { target.backlog.push(handle); return }
    handle()
    this.#check()
  }

  #fail (invariant: string, message: string): void {
    if (this.failure !== null) return
    this.failure = { invariant, step: this.steps, atMs: this.#nowMs, message }
    this.#log(`FAIL ${invariant}: ${message}`)
  }

  // ---- the invariants, after every step ---------------------------------------------------------------------
  #check (): void {
    this.steps++
    let holder: Node | null = null
    for (const node of this.#nodes) {
      if (node.dead || node.role !== 'master') continue
      if (this.#now(node) < node.leaseEndsAtMs) {
        if (holder !== null) {
          this.#fail('one acker', `${holder.id} (term ${holder.masterTerm}, lease ${(holder.leaseEndsAtMs - this.#now(holder)).toFixed(3)} ms more on its clock) and ` +
            `${node.id} (term ${node.masterTerm}, ${(node.leaseEndsAtMs - this.#now(node)).toFixed(3)} ms more) could both acknowledge`)
          return
        }
        holder = node
      }
      while (node.ackCursor < this.#acks.length) {
        const ack = this.#acks[node.ackCursor++] as Ack
        if (ack.term >= node.masterTerm) continue
        const entry = node.log[ack.seq - 1]
        if (entry?.id !== ack.id) {
          this.#fail('acked is kept', `mutation #${ack.id} (seq ${ack.seq}) acknowledged by ${ack.node} in term ${ack.term} at ${ack.atMs.toFixed(3)} ms ` +
            `is not in the log of ${node.id}, master of term ${node.masterTerm} (it has ${entry === undefined ? 'nothing' : `#${entry.id} of term ${entry.term}`} at seq ${ack.seq}, ${node.log.length} entries)`)
          return
        }
      }
    }
  }

  // ---- faults -----------------------------------------------------------------------------------------------
  #fault (): void {
    if (!this.#faultsActive) return
    const r = this.#rng()
    const actors: Actor[] = [...this.#nodes, ...this.#chunkservers].filter((a) => !a.dead)
    if (r < 0.35) {
      const actor = actors[Math.floor(this.#rng() * actors.length)]
      if (actor !== undefined) this.#freeze(actor, this.#rng() < 0.5 ? 10 + this.#rng() * this.leaseMs : this.leaseMs + this.#rng() * 3 * this.leaseMs)
    } else if (r < 0.6) {
      const alive = this.#chunkservers.filter((cs) => !cs.dead)
      const cs = alive[Math.floor(this.#rng() * alive.length)]
      if (cs !== undefined) this.#killChunkserver(cs, 20 + this.#rng() * 3 * this.leaseMs)
    } else if (r < 0.8) {
      this.#partition()
    } else {
      const actor = actors[Math.floor(this.#rng() * actors.length)]
      if (actor !== undefined) {
        actor.clock = { baseRealMs: this.#nowMs, baseClockMs: this.#now(actor), rate: this.#clockRate(actor.id) }
        this.#log(`clock ${actor.id} rate ${actor.clock.rate.toFixed(4)}`)
      }
    }
    this.#at(this.#nowMs + this.#rng() * 2 * this.#faultEveryMs, () => { this.#fault() })
  }

  // Links cut for a while, each direction on its own (a host cut off, or only its replies lost): the master
  // from its shadows (they stand while it still renews its lease), the master from some chunkservers, or any
  // actor from any others.
  #partition (): void {
    const durationMs = this.leaseMs / 4 + this.#rng() * 4 * this.leaseMs
    const master = this.#nodes.find((n) => !n.dead && n.role === 'master')
    const all: Actor[] = [...this.#nodes, ...this.#chunkservers]
    const r = this.#rng()
    let source: Actor | undefined
    let targets: Actor[]
    let direction = this.#rng()   // < 0.6 both ways, then only out of source, then only into it
    if (master !== undefined && (r < 0.15 || this.#edge)) {
      source = master             // everything it sends is lost: the chunkservers' promises lapse while echoes still arrive
      targets = all.filter((a) => a !== master)
      direction = 0.7
    } else if (master !== undefined && r < 0.45) {
      source = master
      targets = this.#nodes.filter((n) => n !== master)
    } else if (master !== undefined && r < 0.7) {
      source = master
      targets = this.#chunkservers.filter(() => this.#rng() < 0.6)
    } else {
      source = all[Math.floor(this.#rng() * all.length)]
      targets = all.filter((a) => a !== source && this.#rng() < 0.5)
    }
    if (source === undefined) return
    for (const target of targets) {
      if (direction < 0.8) this.#cutUntilMs.set(`${source.id}>${target.id}`, this.#nowMs + durationMs)
      if (direction < 0.6 || direction >= 0.8) this.#cutUntilMs.set(`${target.id}>${source.id}`, this.#nowMs + durationMs)
    }
    this.#log(`partition ${source.id} from [${targets.map((a) => a.id).join(', ')}] ${direction < 0.6 ? 'both ways' : direction < 0.8 ? 'outbound' : 'inbound'} for ${durationMs.toFixed(1)} ms`)
  }

  #freeze (actor: Actor, durationMs: number): void {
    if (actor.dead || this.#nowMs < actor.frozenUntilMs) return
    actor.frozenUntilMs = this.#nowMs + durationMs
    this.#log(`freeze ${actor.id} for ${durationMs.toFixed(1)} ms`)
    this.#at(actor.frozenUntilMs, () => { this.#wake(actor) })
  }

  #wake (actor: Actor): void {
    if (actor.dead || this.#nowMs < actor.frozenUntilMs) return
    actor.frozenUntilMs = 0
    this.#log(`wake ${actor.id} with ${actor.backlog.length} queued`)
    const backlog = actor.backlog.splice(0)
    for (const handle of backlog) {
      if (actor.dead || this.failure !== null) return
      handle()
      this.#check()
    }
    const tick = actor.pendingTick
    actor.pendingTick = null
    if (tick !== null && !actor.dead && this.failure === null) {
      tick()
      this.#check()
    }
  }

  #killChunkserver (cs: Chunkserver, downMs: number): void {
    cs.dead = true
    cs.backlog = []
    cs.pendingTick = null
    cs.frozenUntilMs = 0
    this.#log(`kill ${cs.id} for ${downMs.toFixed(1)} ms`)
    this.#at(this.#nowMs + downMs, () => { this.#restartChunkserver(cs) })
  }

  #restartChunkserver (cs: Chunkserver): void {
    if (!cs.dead) return
    cs.dead = false
    cs.incarnation++
    cs.clock = this.#newClock(this.#nowMs, cs.id)   // a new process: a new monotonic clock
    cs.state = freshVoterState(this.#now(cs), this.leaseMs, cs.persisted)
    cs.echoes = new Map()
    this.#log(`restart ${cs.id} ${JSON.stringify(cs.persisted)}`)
    this.#tick(cs, this.#rng() * this.#heartbeatIntervalMs, () => { this.#chunkserverTick(cs) })
    this.#check()
  }

  // The master's host dies for good. When a shadow is in its in-sync set and a chunkserver majority knows it,
  // some shadow must be master again soon after the faults stop.
  #hostDeath (attempt: number): void {
    if (this.#hostDeathDone || !this.#faultsActive) return
    const masters = this.#nodes.filter((n) => !n.dead && n.role === 'master').sort((a, b) => b.masterTerm - a.masterTerm)
    const master = masters[0]
    if (master === undefined) {
      if (attempt < 20) this.#at(this.#nowMs + 200, () => { this.#hostDeath(attempt + 1) })
      return
    }
    this.#hostDeathDone = true
    master.dead = true
    master.backlog = []
    master.pendingTick = null
    const need = majorityOf(this.chunkserverCount)
    const named = isrAnnounced(master.isr).isr
    const electable = this.#nodes.filter((s) => !s.dead && s.inSync && master.isr.members.includes(s.id) && named.includes(s.id) &&
      this.#chunkservers.filter((cs) => cs.persisted.isrTerm === master.masterTerm && cs.persisted.isr.includes(s.id)).length >= need)
    this.#log(`host death ${master.id} (term ${master.masterTerm}, isr ${JSON.stringify(master.isr)}), electable [${electable.map((s) => s.id).join(', ')}]`)
    const quiesceAtMs = this.#nowMs + this.#rng() * 3_000
    if (electable.length > 0) {
      const boundMs = this.#livenessBoundMs ?? 30 * this.leaseMs + 30_000
      this.#liveness = { sinceMs: this.#nowMs, quiesceAtMs, deadlineMs: quiesceAtMs + boundMs, metAtMs: null }
    }
    this.#at(quiesceAtMs, () => { this.#quiesce() })
  }

  // The faults stop: the network delivers (with ordinary delays), every process wakes, every server restarts.
  #quiesce (): void {
    this.#faultsActive = false
    this.#dropChance = 0
    this.#cutUntilMs.clear()
    this.#log('faults stop')
    for (const actor of [...this.#nodes, ...this.#chunkservers]) {
      if (actor.dead || actor.frozenUntilMs === 0) continue
      actor.frozenUntilMs = this.#nowMs
      this.#wake(actor)
    }
    for (const cs of this.#chunkservers) if (cs.dead) this.#restartChunkserver(cs)
  }

  #clientMutation (): void {
    const masters = this.#nodes.filter((n) => !n.dead && n.role === 'master')
    const target = masters[Math.floor(this.#rng() * masters.length)]
    if (target !== undefined) this.#send({ kind: 'mutation', from: 'client', to: target.id })
    this.#at(this.#nowMs + this.#rng() * 2 * this.#mutationEveryMs, () => { this.#clientMutation() })
  }

  // ---- a metadata node --------------------------------------------------------------------------------------
  #nodeTick (node: Node): void {
    if (node.role === 'master') this.#masterTick(node)
    else this.#shadowTick(node)
    this.#tick(node, node.role === 'master' ? this.#masterTickMs : this.#shadowTickMs, () => { this.#nodeTick(node) })
  }

  #nodeReceive (node: Node, message: Message): void {
    const nowMs = this.#now(node)
    switch (message.kind) {
      case 'heartbeat': {
        if (message.term > node.knownTerm) this.#learnTerm(node, message.term)
        if (node.role !== 'master') return
        const echo = message.echo
        if (echo !== null && echo.term === node.masterTerm && echo.sentAtMs <= nowMs) {
          const renewedAtMs = this.#variant === 'leaseFromReceiveTime' ? nowMs : echo.sentAtMs
          node.echoRenewals.set(message.from, Math.max(node.echoRenewals.get(message.from) ?? Number.NEGATIVE_INFINITY, renewedAtMs))
          node.echoedEpochs.set(message.from, Math.max(node.echoedEpochs.get(message.from) ?? 0, echo.isrEpoch))
          this.#recomputeLease(node)
          this.#isrChange(node, isrAfterEchoes(node.isr, [...node.echoedEpochs.values()], this.chunkserverCount))
        }
        const announced = isrAnnounced(node.isr)
        const view: MasterReplyView = { term: node.masterTerm, isrEpoch: announced.epoch, isr: [...announced.isr], released: false }
        this.#send({ kind: 'heartbeatReply', from: node.id, to: message.from, view, sentAtMs: nowMs })
        this.#tryAck(node)
        return
      }
      case 'append': {
        if (message.term < node.knownTerm) {
          this.#send({ kind: 'appendReply', from: node.id, to: message.from, term: node.knownTerm, ok: false, matchSeq: 0 })
          return
        }
        if (node.role === 'master') {
          if (message.term === node.masterTerm) { this.#fail('one master per term', `${node.id} and ${message.from} both master of term ${message.term}`); return }
          this.#stepDown(node, message.term, `append from ${message.from}`)
        }
        if (message.term === node.lastAppend.term && message.appendNo <= node.lastAppend.appendNo) return
        node.lastAppend = { term: message.term, appendNo: message.appendNo }
        if (node.candidacy !== null && message.term >= node.candidacy.term) node.candidacy = null
        node.knownTerm = message.term
        node.lastHeardMs = nowMs
        node.inSync = message.inSync
        const { prevSeq, prevId, entries } = message
        if (prevSeq > node.log.length || (prevSeq > 0 && node.log[prevSeq - 1]?.id !== prevId)) {
          this.#send({ kind: 'appendReply', from: node.id, to: message.from, term: message.term, ok: false, matchSeq: Math.min(node.log.length, prevSeq - 1) })
          return
        }
        for (let i = 0; i < entries.length; i++) {
          const entry = entries[i] as Entry
          const existing = node.log[prevSeq + i]
          if (existing?.id === entry.id) continue
          if (existing !== undefined) {
            this.#log(`${node.id} truncates ${node.log.length - (prevSeq + i)} entries from seq ${prevSeq + i + 1}`)
            node.log.length = prevSeq + i
          }
          node.log.push(entry)
        }
        this.#send({ kind: 'appendReply', from: node.id, to: message.from, term: message.term, ok: true, matchSeq: prevSeq + entries.length })
        return
      }
      case 'appendReply': {
        if (message.term > node.knownTerm) { this.#learnTerm(node, message.term); return }
        if (node.role !== 'master' || message.term !== node.masterTerm) return
        if (!message.ok) {
          const next = node.nextSeq.get(message.from) ?? node.log.length + 1
          node.nextSeq.set(message.from, Math.max(1, Math.min(message.matchSeq + 1, next - nackStepBack)))
          return
        }
        node.confirmed.set(message.from, Math.max(node.confirmed.get(message.from) ?? 0, message.matchSeq))
        node.nextSeq.set(message.from, Math.max(node.nextSeq.get(message.from) ?? 1, message.matchSeq + 1))
        if (message.matchSeq >= node.log.length) this.#isrChange(node, isrAfterCatchUp(node.isr, message.from))
        this.#tryAck(node)
        return
      }
      case 'voteReply': {
        const candidacy = node.candidacy
        if (candidacy === null || message.term !== candidacy.term || node.role !== 'shadow') return
        candidacy.answered.add(message.from)
        if (message.granted) candidacy.grants.add(message.from)
        else {
          if (message.knownTerm > node.highestTriedTerm) node.highestTriedTerm = message.knownTerm
          if (message.code !== 'GRN_MASTER_LEASE_HELD' && message.code !== 'GRN_NOT_IN_SYNC') candidacy.termWasted = true
        }
        if (candidacy.grants.size >= majorityOf(this.chunkserverCount)) this.#win(node, candidacy)
        else if (candidacy.answered.size === this.chunkserverCount) this.#lose(node, candidacy)   // election.ts: every answer is in
        return
      }
      case 'mutation': {
        if (node.role !== 'master') return
        const entry: Entry = { id: this.#nextEntryId++, term: node.masterTerm, seq: node.log.length + 1 }
        node.log.push(entry)
        node.pending.push({ seq: entry.seq, arrivedAtMs: nowMs })
        this.#tryAck(node)
        return
      }
      default:
    }
  }

  #learnTerm (node: Node, term: number): void {
    if (node.role === 'master') this.#stepDown(node, term, 'a newer term')
    node.knownTerm = Math.max(node.knownTerm, term)
    if (node.candidacy !== null && term >= node.candidacy.term) node.candidacy = null
  }

  #stepDown (node: Node, term: number, why: string): void {
    this.#log(`${node.id} steps down from term ${node.masterTerm} (${why}: term ${term})`)
    node.role = 'shadow'
    node.knownTerm = Math.max(node.knownTerm, term)
    node.pending = []
    node.inSync = false
    node.lastHeardMs = this.#now(node)
    node.leaseEndsAtMs = Number.NEGATIVE_INFINITY
  }

  #recomputeLease (node: Node): void {
    const renewals = new Map(node.echoRenewals)
    for (const [id, sentAtMs] of node.voteRenewals) renewals.set(id, Math.max(renewals.get(id) ?? Number.NEGATIVE_INFINITY, sentAtMs))
    node.leaseEndsAtMs = leaseEndsAtMs([...renewals.values()], this.chunkserverCount, this.leaseMs)
  }

  #isrChange (node: Node, next: IsrState): void {
    if (next === node.isr) return
    this.#log(`${node.id} isr ${JSON.stringify(node.isr)} -> ${JSON.stringify(next)}`)
    node.isr = next
  }

  #masterTick (node: Node): void {
    const nowMs = this.#now(node)
    for (const other of this.#nodes) {
      if (other === node) continue
      const next = Math.min(node.nextSeq.get(other.id) ?? node.log.length + 1, node.log.length + 1)
      const prevSeq = next - 1
      this.#send({
        kind: 'append', from: node.id, to: other.id, term: node.masterTerm, appendNo: ++node.appendsSent, prevSeq, prevId: prevSeq > 0 ? (node.log[prevSeq - 1] as Entry).id : 0,
        entries: node.log.slice(prevSeq, prevSeq + appendBatchMax), inSync: isrAnnounced(node.isr).isr.includes(other.id)
      })
    }
    while (node.pending.length > 0 && nowMs - (node.pending[0] as { arrivedAtMs: number }).arrivedAtMs >= isrChangeWaitMsMax) node.pending.shift()
    const oldest = node.pending[0]
    if (oldest !== undefined && nowMs - oldest.arrivedAtMs >= isrConfirmWaitMsMax) {
      const silent = node.isr.members.filter((id) => (node.confirmed.get(id) ?? 0) < oldest.seq)
      if (silent.length > 0) this.#isrChange(node, isrProposeRemoval(node.isr, silent))
    }
    this.#isrChange(node, isrAfterEchoes(node.isr, [...node.echoedEpochs.values()], this.chunkserverCount))
    this.#tryAck(node)
  }

  // An acknowledgement needs the lease, every in-sync member's confirmation, and (unless the variant drops it)
  // a chunkserver majority that has echoed a reply of this term: until then some of them may still hold the
  // previous term's in-sync set, which can name a shadow this master's acks do not wait for.
  #tryAck (node: Node): void {
    if (this.#variant !== 'acksOnVotes' && node.echoedEpochs.size < majorityOf(this.chunkserverCount)) return
    while (node.role === 'master' && node.pending.length > 0) {
      const pending = node.pending[0] as { seq: number }
      if (!(this.#now(node) < node.leaseEndsAtMs) || !isrConfirmed(node.isr, node.confirmed, pending.seq)) return
      node.pending.shift()
      const entry = node.log[pending.seq - 1] as Entry
      this.#acks.push({ seq: entry.seq, id: entry.id, term: node.masterTerm, node: node.id, atMs: this.#nowMs })
      this.#log(`${node.id} acks #${entry.id} seq ${entry.seq} term ${node.masterTerm} isr [${node.isr.members.join(', ')}]`)
    }
  }

  #shadowTick (node: Node): void {
    const nowMs = this.#now(node)
    const candidacy = node.candidacy
    if (candidacy !== null) {
      if (nowMs >= candidacy.deadlineMs) this.#lose(node, candidacy)
      return
    }
    if (!node.inSync && !this.#standWithoutSync) return
    if (node.lastHeardMs === null || nowMs - node.lastHeardMs < this.leaseMs + node.jitterMs || nowMs < node.notBeforeMs) return
    const term = Math.max(node.knownTerm, node.highestTriedTerm) + 1
    node.highestTriedTerm = term
    node.candidacy = { term, sentAtMs: nowMs, deadlineMs: nowMs + voteRoundMsMax, grants: new Set(), answered: new Set(), termWasted: false }
    this.#log(`${node.id} stands for term ${term} (log ${node.log.length})`)
    for (const cs of this.#chunkservers) this.#send({ kind: 'voteRequest', from: node.id, to: cs.id, term, candidateId: node.id, sentAtMs: nowMs })
    // Buggify: some chunkservers (up to a majority: a rack's power) restart while the votes are asked, having
    // forgotten what they promised.
    if (this.#faultsActive && this.#rng() < 0.2) {
      const restarts = 1 + Math.floor(this.#rng() * majorityOf(this.chunkserverCount))
      for (const cs of this.#chunkservers.filter((c) => !c.dead).slice(0, restarts)) this.#killChunkserver(cs, this.#rng() * 5)
    }
  }

  // A lost round. Each vote it did get is a promise to this candidate that refuses every other candidate
  // (GRN_MASTER_LEASE_HELD) for leaseMs on the voter's clock: two candidates retrying sooner (a random
  // 0..electionBackoffMsMax) find each other's voters still bound and can lose every round for ever (with 4
  // chunkservers, 2 + 2 alternating). So the next round waits until the promises
  // of this one have lapsed on any clock within the bound, then the random backoff.
  #lose (node: Node, candidacy: Candidacy): void {
    const nowMs = this.#now(node)
    this.#log(`${node.id} lost term ${candidacy.term} with ${candidacy.grants.size} votes`)
    node.candidacy = null
    // master/election.ts: a round in which nobody voted (each voter still promised, not in sync or silent)
    // asks for the same term again instead of using terms up.
    if (candidacy.grants.size === 0 && !candidacy.termWasted) node.highestTriedTerm = Math.max(node.knownTerm, node.highestTriedTerm === candidacy.term ? candidacy.term - 1 : node.highestTriedTerm)
    // master/election.ts #retryAfterMs: a round nobody voted in holds no promise to wait out.
    if (this.#variant === 'retryWithinPromise' || candidacy.grants.size === 0) {
      node.notBeforeMs = nowMs + this.#rng() * electionBackoffMsMax
    } else {
      const promisesMs = this.leaseMs * (1 + clockRateErrorMax) / (1 - clockRateErrorMax)
      node.notBeforeMs = nowMs + promisesMs + this.#rng() * Math.max(electionBackoffMsMax, 2 * promisesMs)
    }
    node.jitterMs = this.#jitterMs()
  }

  #win (node: Node, candidacy: Candidacy): void {
    const previous = this.#termMasters.get(candidacy.term)
    if (previous !== undefined && previous !== node.id) {
      this.#fail('one master per term', `${node.id} won term ${candidacy.term}, which ${previous} already won`)
      return
    }
    this.#termMasters.set(candidacy.term, node.id)
    this.elections++
    for (const other of this.#nodes) {
      if (other === node || other.dead || other.role !== 'master' || other.leaseEndsAtMs === Number.NEGATIVE_INFINITY) continue
      this.closestHandOverMs = Math.min(this.closestHandOverMs, (this.#now(other) - other.leaseEndsAtMs) / other.clock.rate)
    }
    this.#log(`${node.id} becomes master of term ${candidacy.term} with [${[...candidacy.grants].join(', ')}] (log ${node.log.length})`)
    node.role = 'master'
    node.candidacy = null
    node.masterTerm = candidacy.term
    node.knownTerm = candidacy.term
    node.echoRenewals = new Map()
    node.voteRenewals = new Map([...candidacy.grants].map((id) => [id, candidacy.sentAtMs]))
    node.echoedEpochs = new Map()
    node.isr = { epoch: 0, members: [], proposed: null }   // its own, empty: it adds shadows as they catch up
    node.confirmed = new Map()
    node.nextSeq = new Map()
    node.appendsSent = 0
    node.pending = []
    node.ackCursor = 0
    this.#recomputeLease(node)
    if (this.#liveness !== null && this.#liveness.metAtMs === null) this.#liveness.metAtMs = this.#nowMs
    // Buggify: the moments after an election are where a lost acknowledgement would hide.
    if (this.#faultsActive && this.#rng() < 0.3) {
      const soonMs = this.#rng() < 0.5 ? this.#rng() * 2 * this.#masterTickMs : this.#rng() * 2 * this.#heartbeatIntervalMs
      this.#at(this.#nowMs + soonMs, () => {
        if (this.#faultsActive) this.#freeze(node, this.leaseMs + this.#rng() * 3 * this.leaseMs)
      })
    }
  }

  // ---- a chunkserver ----------------------------------------------------------------------------------------
  #chunkserverTick (cs: Chunkserver): void {
    for (const node of this.#nodes) {
      this.#send({ kind: 'heartbeat', from: cs.id, to: node.id, term: cs.state.term, echo: cs.echoes.get(node.id) ?? null })
    }
    this.#tick(cs, this.#heartbeatIntervalMs * (0.9 + this.#rng() * 0.2), () => { this.#chunkserverTick(cs) })
  }

  #chunkserverReceive (cs: Chunkserver, message: Message): void {
    const nowMs = this.#now(cs)
    if (message.kind === 'heartbeatReply') {
      const before = cs.state
      let result: { state: VoterState, echo: boolean }
      if (this.#variant === 'echoBelowVotedTerm') {
        const r = onMasterReply({ ...before, votedTerm: 0 }, message.view, nowMs, this.leaseMs)
        result = { state: { ...r.state, votedTerm: before.votedTerm }, echo: r.echo }
      } else {
        result = onMasterReply(before, message.view, nowMs, this.leaseMs)
      }
      cs.state = result.state
      cs.persisted = persistedOf(cs.state)
      cs.echoes.set(message.from, result.echo
        ? { term: message.view.term, sentAtMs: message.sentAtMs, isrEpoch: cs.state.isrTerm === message.view.term ? cs.state.isrEpoch : 0 }
        : null)
      return
    }
    if (message.kind === 'voteRequest') {
      const decision = decideVote(cs.state, { term: message.term, candidateId: message.candidateId }, nowMs, this.leaseMs)
      if (decision.granted) {
        cs.state = decision.state
        cs.persisted = persistedOf(cs.state)   // on disk before the answer
        this.#log(`${cs.id} votes for ${message.candidateId} in term ${message.term}`)
      } else {
        this.#log(`${cs.id} refuses ${message.candidateId} in term ${message.term}: ${decision.code}`)
      }
      this.#send({
        kind: 'voteReply', from: cs.id, to: message.from, term: message.term, granted: decision.granted,
        code: decision.granted ? null : decision.code, knownTerm: Math.max(cs.state.term, cs.state.votedTerm)
      })
    }
  }
}

function persistedOf (state: VoterState): Persisted {
  return { term: state.term, votedTerm: state.votedTerm, votedFor: state.votedFor, isrTerm: state.isrTerm, isrEpoch: state.isrEpoch, isr: [...state.isr] }
}

function describe (message: Message): string {
  switch (message.kind) {
    case 'heartbeat': return `heartbeat term ${message.term} echo ${JSON.stringify(message.echo)}`
    case 'heartbeatReply': return `reply ${JSON.stringify(message.view)} sentAt ${message.sentAtMs.toFixed(3)}`
    case 'append': return `append term ${message.term} prev ${message.prevSeq} +${message.entries.length} inSync ${message.inSync}`
    case 'appendReply': return `appendReply term ${message.term} ok ${message.ok} match ${message.matchSeq}`
    case 'voteRequest': return `voteRequest term ${message.term}`
    case 'voteReply': return `voteReply term ${message.term} granted ${message.granted} known ${message.knownTerm}`
    case 'mutation': return 'mutation'
  }
}

export function simulate (seed: number, options: SimOptions = {}): SimResult {
  const sim = new Simulation(seed, options)
  sim.run()
  return {
    seed,
    steps: sim.steps,
    simulatedMs: sim.nowMs,
    chunkserverCount: sim.chunkserverCount,
    acks: sim.acks,
    elections: sim.elections,
    hostDeath: sim.hostDeath,
    livenessChecked: sim.livenessChecked,
    electedAfterMs: sim.electedAfterMs,
    closestHandOverMs: sim.closestHandOverMs,
    failure: sim.failure,
    trace: sim.trace
  }
}
