// Runs the failover simulation (failover-sim.ts) over thousands of seeds within a wall-time budget, and shows
// that it can fail: each variant flips one rule and must be caught by a seed.
//
// Replay one seed with its trace:  GRANARY_SIM_SEED=1234 npx tap test/unit/shared/failover-sim.test.ts
// (add GRANARY_SIM_VARIANT=acksOnVotes to replay a variant). Explore other seeds: GRANARY_SIM_SEED_BASE=100000.
import t from 'tap'
import { simulate, type SimResult, type Variant } from './failover-sim.js'

const simSeedCount = 5_000       // seeds per run, from the base ...
const simBudgetMs = 17_000       // ... or as many as this much wall time allows (~2,500 on a shared 2-core box); the
                                 // variants below take ~3 s more
const simSeedsMin = 200          // fewer than this in the budget and the run proves too little: fail
const traceLinesShown = 200

const replaySeed = process.env.GRANARY_SIM_SEED
const replayVariant = (process.env.GRANARY_SIM_VARIANT ?? 'correct') as Variant
const seedBase = Number(process.env.GRANARY_SIM_SEED_BASE ?? 1)

function describeFailure (result: SimResult, variant: Variant): string {
  const f = result.failure
  if (f === null) return `seed ${result.seed}: no failure`
  return `seed ${result.seed} (${variant}, ${result.chunkserverCount} chunkservers) failed invariant "${f.invariant}" at step ${f.step}, ` +
    `t=${f.atMs.toFixed(3)} ms: ${f.message}. Replay: GRANARY_SIM_SEED=${result.seed}` +
    `${variant === 'correct' ? '' : ` GRANARY_SIM_VARIANT=${variant}`} npx tap test/unit/shared/failover-sim.test.ts`
}

if (replaySeed !== undefined) {
  t.test(`replay seed ${replaySeed} (${replayVariant})`, async (t) => {
    const result = simulate(Number(replaySeed), { variant: replayVariant, trace: true })
    t.comment(result.trace.slice(-traceLinesShown).join('\n'))
    t.equal(result.failure, null, describeFailure(result, replayVariant))
  })
} else {
  t.test('no seed breaks an invariant', async (t) => {
    const startedAtMs = Date.now()
    let seeds = 0
    let steps = 0
    let acks = 0
    let elections = 0
    let hostDeaths = 0
    let livenessChecks = 0
    let electedAfterMsMax = 0
    let closestHandOverMs = Number.POSITIVE_INFINITY
    let failed: SimResult | null = null
    for (let seed = seedBase; seed < seedBase + simSeedCount && Date.now() - startedAtMs < simBudgetMs; seed++) {
      const result = simulate(seed)
      seeds++
      steps += result.steps
      acks += result.acks
      elections += result.elections
      if (result.hostDeath) hostDeaths++
      if (result.livenessChecked) livenessChecks++
      if (result.electedAfterMs !== null) electedAfterMsMax = Math.max(electedAfterMsMax, result.electedAfterMs)
      closestHandOverMs = Math.min(closestHandOverMs, result.closestHandOverMs)
      if (result.failure !== null) { failed = result; break }
    }
    const wallMs = Date.now() - startedAtMs
    t.comment(`${seeds} seeds (${seedBase}..${seedBase + seeds - 1}), ${steps} steps, ${acks} acks, ${elections} elections, ` +
      `${hostDeaths} host deaths (${livenessChecks} liveness checks, slowest re-election ${electedAfterMsMax.toFixed(0)} ms after the faults stopped); ` +
      `closest hand-over: a rival elected ${closestHandOverMs.toFixed(3)} ms (real) after a running master's lease lapsed; ${wallMs} ms`)
    if (failed !== null) {
      t.fail(describeFailure(failed, 'correct'))
      return
    }
    t.pass(`${seeds} seeds, ${steps} steps: every invariant held after every step`)
    t.ok(seeds >= simSeedsMin, `at least ${simSeedsMin} seeds ran within ${simBudgetMs} ms (ran ${seeds})`)
    t.ok(elections > 0 && livenessChecks > 0, 'the seeds included elections and host deaths')
  })

  t.test('a seed replays exactly', async (t) => {
    for (const seed of [7, 240, 4242]) {
      const a = simulate(seed, { trace: true })
      const b = simulate(seed, { trace: true })
      t.same(b.trace, a.trace, `seed ${seed}: the same ${a.steps} steps`)
      t.same({ ...b, trace: [] }, { ...a, trace: [] }, `seed ${seed}: the same result`)
    }
  })

  // Each variant breaks one rule; the first seed (from 1) that shows it is fixed, because the run is deterministic.
  // seedsMax leaves room over the first failing seed found when this was written (noted beside it).
  const safetyInvariants = ['one acker', 'acked is kept', 'one master per term']
  const caught: Array<{ variant: Variant, seedsMax: number, rule: string }> = [
    { variant: 'leaseFromReceiveTime', seedsMax: 100, rule: 'the master counts a renewal from when the echo arrived (seed 2: two ackers)' },
    { variant: 'echoBelowVotedTerm', seedsMax: 400, rule: 'a chunkserver renews a master below the term it voted in (seed 264: an ack lost)' },
    { variant: 'acksOnVotes', seedsMax: 700, rule: 'a new master acks on its votes\' lease with an in-sync set no chunkserver knows (seed 443: an ack lost)' }
  ]
  for (const { variant, seedsMax, rule } of caught) {
    t.test(`the simulation catches it when ${rule}`, async (t) => {
      let first: SimResult | null = null
      for (let seed = 1; seed <= seedsMax && first === null; seed++) {
        const result = simulate(seed, { variant })
        if (result.failure !== null && safetyInvariants.includes(result.failure.invariant)) first = result
      }
      if (first === null) {
        t.fail(`no seed in 1..${seedsMax} caught variant ${variant}`)
        return
      }
      t.pass(describeFailure(first, variant))
    })
  }

  // A liveness variant shows only on a rarer seed (the first from 1 is 162: two candidates holding two of four
  // voters each, round after round; ~0.6 s of scanning), so this checks that seed both ways: the broken rule loses the election for ever, the master code's rule elects a shadow.
  t.test('the simulation catches it when a candidate that lost stands again within its voters\' promises (seed 162: no master)', async (t) => {
    const broken = simulate(162, { variant: 'retryWithinPromise' })
    t.equal(broken.failure?.invariant, 'liveness', describeFailure(broken, 'retryWithinPromise'))
    const correct = simulate(162)
    t.equal(correct.failure, null, describeFailure(correct, 'correct'))
    t.ok(correct.livenessChecked, 'the same seed, with the rule, checked liveness and a shadow became master')
  })
}
