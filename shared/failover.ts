// The failover protocol's decisions, as pure functions of (state, message, clock): the master lease, the
// chunkserver's vote, and the in-sync set (ISR). The master, the chunkservers and the shadows call these, and
// so does the deterministic simulation (test/unit/shared/failover-sim.test.ts), which drives them through
// delays, drops, duplicates, frozen processes, restarts and drifting clocks and checks the invariants after
// every step. docs/ARCHITECTURE.md "Failover" argues each invariant; the comments here say which rule is whose.
//
// Clocks: every time here is a process's own MONOTONIC clock (performance.now() based), never a wall clock and
// never another process's. Clock rates may differ from real time by at most clockRateErrorMax.
import { clockRateErrorMax } from './limits.js'

export function majorityOf (voterCount: number): number {
  return Math.floor(voterCount / 2) + 1
}

// How long the master trusts a renewal, on its own clock: the chunkserver's promise (leaseMs on ITS clock,
// from when it RECEIVED the reply, which is after the master sent it) lasts at least leaseMs / (1 + e) real
// time; the master's leaseMs' on its clock lasts at most leaseMs' / (1 - e). leaseMs' = leaseMs (1 - e) / (1 + e)
// keeps the master's belief inside every promise whatever the two clocks' rates within the bound.
export function masterLeaseMs (leaseMs: number): number {
  return Math.floor(leaseMs * (1 - clockRateErrorMax) / (1 + clockRateErrorMax))
}

// ---- the master's lease ---------------------------------------------------------------------------------
// renewalsSentAtMs: per registered chunkserver, the master-clock time at which this master (this process)
// sent the heartbeat reply that the chunkserver's latest heartbeat echoed. The lease ends masterLeaseMs after
// the majority-th newest of them. No registered chunkserver: no one can elect another master, so the lease is
// unbounded (a fresh cluster, a test master).
export function leaseEndsAtMs (renewalsSentAtMs: readonly number[], voterCount: number, leaseMs: number): number {
  if (voterCount === 0) return Number.POSITIVE_INFINITY
  const need = majorityOf(voterCount)
  if (renewalsSentAtMs.length < need) return Number.NEGATIVE_INFINITY
  const newestFirst = [...renewalsSentAtMs].sort((a, b) => b - a)
  return (newestFirst[need - 1] as number) + masterLeaseMs(leaseMs)
}

// ---- a chunkserver's vote -------------------------------------------------------------------------------
export interface VoterState {
  term: number              // the newest term of a master this server has had a reply from (persisted)
  votedTerm: number         // the newest term it voted in (persisted before the vote is answered)
  votedFor: string | null   // whom it voted for in votedTerm
  isrTerm: number           // the term and epoch of the in-sync set below (persisted)
  isrEpoch: number
  isr: string[]             // shadow ids its current master last named as in sync: the only electable ones
  noVoteBeforeMs: number    // own clock: the promise to the current master (and leaseMs after a start)
  promisedTo: string | null // whom that promise is to when it is a vote's promise no master reply has renewed since
}

export function freshVoterState (nowMs: number, leaseMs: number, persisted?: Partial<VoterState>): VoterState {
  return {
    term: 0, votedTerm: 0, votedFor: null, isrTerm: 0, isrEpoch: 0, isr: [], ...persisted,
    // A restarted server has forgotten when it last heard from the master: it promises a whole lease anew,
    // to whoever was master (so to nobody it could name).
    noVoteBeforeMs: nowMs + leaseMs,
    promisedTo: null
  }
}

export interface MasterReplyView {
  term: number
  isrEpoch: number
  isr: string[]
  released: boolean         // a planned hand-over: the master gives its lease up and will acknowledge nothing more
}

// A heartbeat reply arrived (receivedAtMs on this server's clock). echo: the next heartbeat may renew this
// master's lease. A reply from a master older than a term this server has heard from, or voted in, renews
// nothing and changes nothing: after voting in T a server never extends the lease of a master below T.
export function onMasterReply (state: VoterState, reply: MasterReplyView, receivedAtMs: number, leaseMs: number): { state: VoterState, echo: boolean } {
  if (reply.term < state.term || reply.term < state.votedTerm) return { state, echo: false }
  const next: VoterState = { ...state, term: reply.term }
  if (reply.term > state.isrTerm || (reply.term === state.isrTerm && reply.isrEpoch > state.isrEpoch)) {
    next.isrTerm = reply.term
    next.isrEpoch = reply.isrEpoch
    next.isr = [...reply.isr]
  }
  if (reply.released) {
    next.noVoteBeforeMs = Math.min(state.noVoteBeforeMs, receivedAtMs)
    return { state: next, echo: false }
  }
  // A renewal is a promise to this master, whoever it is: no candidate is exempt from it any more.
  next.noVoteBeforeMs = Math.max(state.noVoteBeforeMs, receivedAtMs + leaseMs)
  next.promisedTo = null
  return { state: next, echo: true }
}

export interface VoteRequestView { term: number, candidateId: string }

export type VoteRefusal = 'GRN_STALE_TERM' | 'GRN_VOTE_TAKEN' | 'GRN_NOT_IN_SYNC' | 'GRN_MASTER_LEASE_HELD'
export type VoteDecision =
  | { granted: true, state: VoterState, repeat: boolean }
  | { granted: false, code: VoteRefusal, reason: string }

// One vote per term, only for a member of the last in-sync set heard, only once the current master's lease
// has lapsed here. A granted vote is also a promise to the candidate (it renews the candidate's lease from the
// moment the vote request was sent), so a winner can take mutations at once.
export function decideVote (state: VoterState, request: VoteRequestView, nowMs: number, leaseMs: number): VoteDecision {
  if (request.term === state.votedTerm && request.candidateId === state.votedFor) {
    return { granted: true, state, repeat: true }   // the same request again (a retry): the same answer
  }
  if (request.term <= state.term || request.term < state.votedTerm) {
    return { granted: false, code: 'GRN_STALE_TERM', reason: `term ${request.term} is not newer than ${Math.max(state.term, state.votedTerm)}` }
  }
  if (request.term === state.votedTerm) {
    return { granted: false, code: 'GRN_VOTE_TAKEN', reason: `already voted for ${String(state.votedFor)} in term ${request.term}` }
  }
  if (!state.isr.includes(request.candidateId)) {
    return { granted: false, code: 'GRN_NOT_IN_SYNC', reason: `${request.candidateId} is not in the in-sync set of term ${state.isrTerm} (epoch ${state.isrEpoch}): [${state.isr.join(', ')}]` }
  }
  // A vote's promise protects only the lease of the candidate it went to, so that candidate standing again in a
  // newer term (it lost, or never heard, the round it was granted) is not held off by its own promise: without
  // this, a candidate retrying at once (granary admin promote) collects each voter's grant in a different term as
  // their promises lapse one by one, and never a majority in one. Safe: the candidate asks a newer term only
  // when it is not master of the older one, so no lease that this promise protected is in use.
  if (nowMs < state.noVoteBeforeMs && state.promisedTo !== request.candidateId) {
    return { granted: false, code: 'GRN_MASTER_LEASE_HELD', reason: `the master of term ${state.term} holds its lease here for ${Math.ceil(state.noVoteBeforeMs - nowMs)} ms more` }
  }
  return { granted: true, repeat: false, state: { ...state, votedTerm: request.term, votedFor: request.candidateId, noVoteBeforeMs: Math.max(state.noVoteBeforeMs, nowMs + leaseMs), promisedTo: request.candidateId } }
}

// ---- the in-sync set, on the master ---------------------------------------------------------------------
// members: the shadows whose confirmation every acknowledgement waits for. A member that falls silent can only
// be dropped once a majority of chunkservers has echoed an epoch without it (so no majority can still elect it);
// until then it stays in `members` and acknowledgements wait. Adding is immediate: it only makes acks stricter.
export interface IsrState {
  epoch: number
  members: string[]            // acks wait for each of these
  proposed: string[] | null    // the next set (epoch + 1) while a removal waits for its echoes
}

export function isrAfterCatchUp (isr: IsrState, shadowId: string): IsrState {
  // While a removal waits for its echoes the set stays as it is (one change at a time); the shadow is added
  // at its next poll after that.
  if (isr.members.includes(shadowId) || isr.proposed !== null) return isr
  return { epoch: isr.epoch + 1, members: [...isr.members, shadowId].sort(), proposed: null }
}

export function isrProposeRemoval (isr: IsrState, shadowIds: readonly string[]): IsrState {
  const base = isr.proposed ?? isr.members
  const proposed = base.filter((id) => !shadowIds.includes(id))
  if (proposed.length === base.length) return isr
  return { epoch: isr.epoch, members: isr.members, proposed }
}

// What the master tells chunkservers: the proposed set when there is one (epoch + 1), else the members.
export function isrAnnounced (isr: IsrState): { epoch: number, isr: string[] } {
  return isr.proposed === null ? { epoch: isr.epoch, isr: isr.members } : { epoch: isr.epoch + 1, isr: isr.proposed }
}

// echoedEpochs: per registered chunkserver, the newest ISR epoch (of this term) its heartbeats echoed.
export function isrAfterEchoes (isr: IsrState, echoedEpochs: readonly number[], voterCount: number): IsrState {
  if (isr.proposed === null) return isr
  const target = isr.epoch + 1
  const echoed = echoedEpochs.filter((epoch) => epoch >= target).length
  if (voterCount > 0 && echoed < majorityOf(voterCount)) return isr
  return { epoch: target, members: isr.proposed, proposed: null }
}

// Every member has durably applied up to seq.
export function isrConfirmed (isr: IsrState, confirmedSeqs: ReadonlyMap<string, number>, seq: number): boolean {
  return isr.members.every((id) => (confirmedSeqs.get(id) ?? 0) >= seq)
}
