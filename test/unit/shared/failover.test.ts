// The failover rules one at a time (shared/failover.ts): the vote, the lease majority, the drift margin, the
// chunkserver's view of replies and the in-sync set. failover-sim.test.ts drives them all together.
import t from 'tap'
import {
  decideVote, freshVoterState, isrAfterCatchUp, isrAfterEchoes, isrAnnounced, isrConfirmed, isrProposeRemoval,
  leaseEndsAtMs, majorityOf, masterLeaseMs, onMasterReply, type IsrState, type VoterState
} from '../../../shared/failover.js'
import { clockRateErrorMax, leaseMsDefault } from '../../../shared/limits.js'

const leaseMs = 1_000

function voter (overrides: Partial<VoterState> = {}): VoterState {
  return { term: 3, votedTerm: 0, votedFor: null, isrTerm: 3, isrEpoch: 2, isr: ['s1', 's2'], noVoteBeforeMs: 5_000, promisedTo: null, ...overrides }
}

t.test('majorityOf', async (t) => {
  t.same([0, 1, 2, 3, 4, 5, 6].map(majorityOf), [1, 1, 2, 2, 3, 3, 4])
})

t.test('the drift margin: the master trusts a renewal for leaseMs (1 - e) / (1 + e), rounded down', async (t) => {
  t.equal(masterLeaseMs(leaseMsDefault), 904, 'the number limits.ts quotes')
  t.equal(masterLeaseMs(100), 90)
  // Worst case: the master's clock runs slowest (its lease lasts longest in real time), the chunkserver's
  // fastest (its promise ends soonest), and the reply arrives the instant it is sent. The belief still ends first.
  for (const lease of [100, 257, 1_000, 30_000]) {
    const masterRealMs = masterLeaseMs(lease) / (1 - clockRateErrorMax)
    const promiseRealMs = lease / (1 + clockRateErrorMax)
    t.ok(masterRealMs <= promiseRealMs, `lease ${lease}: the master's ${masterRealMs.toFixed(3)} ms real <= the promise's ${promiseRealMs.toFixed(3)} ms`)
  }
})

t.test('leaseEndsAtMs: the majority-th newest renewal plus the master lease', async (t) => {
  const m = masterLeaseMs(leaseMs)
  t.equal(leaseEndsAtMs([], 0, leaseMs), Number.POSITIVE_INFINITY, 'no registered chunkserver: nobody can elect another master')
  t.equal(leaseEndsAtMs([], 3, leaseMs), Number.NEGATIVE_INFINITY, 'no renewal yet')
  t.equal(leaseEndsAtMs([100], 3, leaseMs), Number.NEGATIVE_INFINITY, 'one of three is no majority')
  t.equal(leaseEndsAtMs([100, 300], 3, leaseMs), 100 + m, 'two of three: the older of the two counts')
  t.equal(leaseEndsAtMs([300, 100, 200], 3, leaseMs), 200 + m, 'three of three: the second newest, whatever the order')
  t.equal(leaseEndsAtMs([500, 400, 100, 50], 4, leaseMs), 100 + m, 'four servers need three')
  t.equal(leaseEndsAtMs([500, 400, 300, 200, 100], 5, leaseMs), 300 + m, 'five need three')
  t.equal(leaseEndsAtMs([500, 400], 5, leaseMs), Number.NEGATIVE_INFINITY, 'two of five is no majority')
  const renewals = [3, 1, 2]
  leaseEndsAtMs(renewals, 3, leaseMs)
  t.same(renewals, [3, 1, 2], 'the input is not sorted in place')
})

t.test('freshVoterState: persisted fields survive, the promise is a whole lease from the start', async (t) => {
  t.same(freshVoterState(10, leaseMs), { term: 0, votedTerm: 0, votedFor: null, isrTerm: 0, isrEpoch: 0, isr: [], noVoteBeforeMs: 10 + leaseMs, promisedTo: null })
  const restarted = freshVoterState(7, leaseMs, { term: 4, votedTerm: 5, votedFor: 's1', isrTerm: 4, isrEpoch: 1, isr: ['s1'], noVoteBeforeMs: 1 })
  t.same(restarted, { term: 4, votedTerm: 5, votedFor: 's1', isrTerm: 4, isrEpoch: 1, isr: ['s1'], noVoteBeforeMs: 7 + leaseMs, promisedTo: null },
    'a remembered noVoteBeforeMs (another clock) is replaced, and the new promise is to nobody it can name')
  t.equal(decideVote(restarted, { term: 6, candidateId: 's1' }, 8, leaseMs).granted, false, '... so not even the candidate it voted for is exempt')
})

t.test('decideVote: one vote per term, only for an in-sync shadow, only after the lease lapsed here', async (t) => {
  const now = 6_000
  const grant = decideVote(voter(), { term: 4, candidateId: 's1' }, now, leaseMs)
  t.same(grant, { granted: true, repeat: false, state: { ...voter(), votedTerm: 4, votedFor: 's1', noVoteBeforeMs: now + leaseMs, promisedTo: 's1' } },
    'granted: the vote is recorded and promises the candidate a lease')

  if (!grant.granted) throw new Error('unreachable')
  t.same(decideVote(grant.state, { term: 4, candidateId: 's1' }, now + 1, leaseMs), { granted: true, state: grant.state, repeat: true },
    'the same request again: the same answer, nothing changes')

  const refusal = (state: VoterState, term: number, candidateId: string, at = now): string => {
    const d = decideVote(state, { term, candidateId }, at, leaseMs)
    return d.granted ? 'granted' : d.code
  }
  t.equal(refusal(grant.state, 4, 's2', now + 2 * leaseMs), 'GRN_VOTE_TAKEN', 'another candidate in a term already voted in')
  t.equal(refusal(grant.state, 3, 's2', now + 2 * leaseMs), 'GRN_STALE_TERM', 'a term below the vote')
  t.equal(refusal(voter(), 3, 's1'), 'GRN_STALE_TERM', 'the term of the master it already follows')
  t.equal(refusal(voter(), 2, 's1'), 'GRN_STALE_TERM', 'an older term')
  t.equal(refusal(voter(), 4, 's3'), 'GRN_NOT_IN_SYNC', 'a shadow its master did not name in sync')
  t.equal(refusal(voter(), 4, 's1', 4_999), 'GRN_MASTER_LEASE_HELD', 'the promise to the master still holds')
  t.equal(refusal(voter(), 4, 's1', 5_000), 'granted', 'it lapses at noVoteBeforeMs exactly')
  t.equal(refusal(grant.state, 5, 's2', now + leaseMs - 1), 'GRN_MASTER_LEASE_HELD', 'a grant is a promise too: the next term waits for it')
  t.equal(refusal(grant.state, 5, 's2', now + leaseMs), 'granted', '... and then a newer term may elect another shadow')
  t.equal(refusal(grant.state, 5, 's1', now + 1), 'granted', 'the candidate it promised may stand again in a newer term: the promise protects only its lease')
  const renewed = onMasterReply(grant.state, { term: 4, isrEpoch: 0, isr: ['s1', 's2'], released: false }, now + 1, leaseMs).state
  t.equal(refusal(renewed, 5, 's1', now + 2), 'GRN_MASTER_LEASE_HELD', 'once a master of that term renewed it, the promise is the master\'s, and binds every candidate')
  t.equal(refusal({ ...voter(), promisedTo: 's1' }, 4, 's2', 4_999), 'GRN_MASTER_LEASE_HELD', 'a promise to one candidate still holds off another')
  t.equal(refusal(freshVoterState(now, leaseMs, { term: 3, votedTerm: 4, votedFor: 's1', isrTerm: 3, isr: ['s1', 's2'] }), 4, 's2', now + 2 * leaseMs),
    'GRN_VOTE_TAKEN', 'a vote survives a restart')
})

t.test('onMasterReply: renews only the newest master, never one below a term voted in', async (t) => {
  const state = voter({ noVoteBeforeMs: 0 })
  const same = onMasterReply(state, { term: 3, isrEpoch: 2, isr: ['s1', 's2'], released: false }, 100, leaseMs)
  t.equal(same.echo, true)
  t.equal(same.state.noVoteBeforeMs, 100 + leaseMs, 'promised a lease from when it was received')

  const older = onMasterReply(state, { term: 2, isrEpoch: 9, isr: ['s3'], released: false }, 100, leaseMs)
  t.same(older, { state, echo: false }, 'an older term renews nothing and changes nothing')

  const voted = voter({ votedTerm: 4, votedFor: 's1', noVoteBeforeMs: 0 })
  t.same(onMasterReply(voted, { term: 3, isrEpoch: 3, isr: [], released: false }, 100, leaseMs), { state: voted, echo: false },
    'after voting in 4 it never extends the lease of the master of 3')

  const newer = onMasterReply(state, { term: 5, isrEpoch: 0, isr: [], released: false }, 100, leaseMs)
  t.same([newer.state.term, newer.state.isrTerm, newer.state.isrEpoch, newer.state.isr], [5, 5, 0, []], 'a newer term replaces the set, whatever its epoch')

  const stale = onMasterReply(state, { term: 3, isrEpoch: 1, isr: ['s3'], released: false }, 100, leaseMs)
  t.same(stale.state.isr, ['s1', 's2'], 'an older epoch of the same term (a reordered reply) does not replace the set')
  t.equal(stale.echo, true, '... but still renews')

  const later = onMasterReply(voter({ noVoteBeforeMs: 9_000 }), { term: 3, isrEpoch: 2, isr: ['s1', 's2'], released: false }, 100, leaseMs)
  t.equal(later.state.noVoteBeforeMs, 9_000, 'a promise is never shortened by a renewal')

  const released = onMasterReply(voter({ noVoteBeforeMs: 9_000 }), { term: 3, isrEpoch: 2, isr: ['s1', 's2'], released: true }, 100, leaseMs)
  t.same([released.echo, released.state.noVoteBeforeMs], [false, 100], 'a release gives the promise up at once and is not echoed')
})

t.test('the in-sync set: add at once, remove only after a chunkserver majority echoed it', async (t) => {
  const start: IsrState = { epoch: 0, members: [], proposed: null }
  const one = isrAfterCatchUp(start, 's2')
  t.same(one, { epoch: 1, members: ['s2'], proposed: null })
  t.equal(isrAfterCatchUp(one, 's2'), one, 'already in')
  const two = isrAfterCatchUp(one, 's1')
  t.same(two, { epoch: 2, members: ['s1', 's2'], proposed: null }, 'sorted')

  const proposed = isrProposeRemoval(two, ['s2'])
  t.same(proposed, { epoch: 2, members: ['s1', 's2'], proposed: ['s1'] }, 'acks still wait for s2')
  t.same(isrAnnounced(proposed), { epoch: 3, isr: ['s1'] }, 'the chunkservers hear the next set')
  t.equal(isrProposeRemoval(proposed, ['s2']), proposed, 'proposing it again changes nothing')
  t.equal(isrAfterCatchUp(proposed, 's3'), proposed, 'one change at a time: no addition while a removal waits')
  t.same(isrProposeRemoval(proposed, ['s1']), { epoch: 2, members: ['s1', 's2'], proposed: [] }, 'a second removal joins the proposal')

  t.equal(isrAfterEchoes(proposed, [3, 2, 2], 3), proposed, 'one of three echoed epoch 3: not yet')
  t.equal(isrAfterEchoes(proposed, [3, 3], 5), proposed, 'two of five: not yet')
  t.same(isrAfterEchoes(proposed, [3, 4, 2], 3), { epoch: 3, members: ['s1'], proposed: null }, 'two of three: done')
  t.same(isrAfterEchoes(proposed, [], 0), { epoch: 3, members: ['s1'], proposed: null }, 'no registered chunkserver: nobody can elect s2')
  t.equal(isrAfterEchoes(two, [9, 9, 9], 3), two, 'nothing proposed')
  t.same(isrAnnounced(two), { epoch: 2, isr: ['s1', 's2'] })

  const confirmed = new Map([['s1', 10], ['s2', 7]])
  t.equal(isrConfirmed(two, confirmed, 7), true)
  t.equal(isrConfirmed(two, confirmed, 8), false, 's2 has only 7')
  t.equal(isrConfirmed(proposed, confirmed, 8), false, 'a member proposed out is still waited for')
  t.equal(isrConfirmed(start, new Map(), 1_000), true, 'an empty set confirms everything: the acknowledgement is on the master alone')
  t.equal(isrConfirmed(one, new Map(), 1), false, 'a member never heard from has confirmed nothing')
})
