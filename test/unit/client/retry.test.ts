// Proves the retry policy: backoff stays within [retryDelayMsMin, retryDelayMsMax] and grows, only retryable
// codes are retried, the budget ends in GRN_DEADLINE_EXCEEDED carrying the last error's code, the attempt
// limit holds, giveUpOn returns at once, and an AbortSignal ends the wait with GRN_ABORTED.
import t from 'tap'
import diagnosticsChannel from 'node:diagnostics_channel'
import { GranaryError } from '../../../shared/errors.js'
import { Deadline, retry, backoffDelayMs, type RetryPolicy } from '../../../client/retry.js'
import { channelNames } from '../../../client/diagnostics.js'

const policy: RetryPolicy = { retryDelayMsMin: 5, retryDelayMsMax: 40, attemptsMax: 50 }

t.test('backoff is jittered, exponential and bounded', async (t) => {
  t.equal(backoffDelayMs(1, policy, () => 0), 5, 'first delay never below the minimum')
  t.equal(backoffDelayMs(3, policy, () => 1), 20, 'third step: min × 4')
  t.equal(backoffDelayMs(3, policy, () => 0), 10, 'equal jitter: at least half the step')
  t.equal(backoffDelayMs(40, policy, () => 1), 40, 'capped at the maximum')
  for (let attempt = 1; attempt < 60; attempt++) {
    const delay = backoffDelayMs(attempt, policy)
    t.ok(delay >= policy.retryDelayMsMin && delay <= policy.retryDelayMsMax, `attempt ${attempt}: ${delay} within bounds`)
  }
})

t.test('retryable errors are retried until success', async (t) => {
  const events: unknown[] = []
  const listener = (message: unknown): void => { events.push(message) }
  diagnosticsChannel.subscribe(channelNames.retry, listener)
  t.teardown(() => { diagnosticsChannel.unsubscribe(channelNames.retry, listener) })
  let calls = 0
  const result = await retry(async (attempt) => {
    calls++
    if (attempt < 3) throw new GranaryError('GRN_UNAVAILABLE', ['http://x', 'refused'])
    return 'done'
  }, { what: 'test op', deadline: new Deadline(5000), policy })
  t.equal(result, 'done')
  t.equal(calls, 3)
  t.equal(events.length, 2, 'one retry event per retry')
  t.match(events[0], { what: 'test op', attempt: 1, code: 'GRN_UNAVAILABLE' })
})

t.test('a non-retryable error is thrown at once', async (t) => {
  let calls = 0
  const err = await retry(async () => { calls++; throw new GranaryError('GRN_NOT_FOUND', ['/x']) },
    { what: 'stat /x', deadline: new Deadline(5000), policy }).catch((e: unknown) => e)
  t.equal((err as GranaryError).code, 'GRN_NOT_FOUND')
  t.equal(calls, 1)
  const bug = await retry(async () => { throw new TypeError('a bug') }, { what: 'x', deadline: new Deadline(5000), policy }).catch((e: unknown) => e)
  t.type(bug, TypeError, 'errors that are not Granary errors are never retried')
})

t.test('the budget runs out with GRN_DEADLINE_EXCEEDED carrying the last code', async (t) => {
  const startMs = Date.now()
  let calls = 0
  const err = await retry(async () => { calls++; throw new GranaryError('GRN_TIMEOUT', ['http://x', 10]) },
    { what: 'create /a', deadline: new Deadline(200), policy }).catch((e: unknown) => e) as GranaryError
  const elapsedMs = Date.now() - startMs
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  t.match(err.details, { lastCode: 'GRN_TIMEOUT', attempts: calls })
  t.match(err.message, /create \/a gave up after \d+ ms and \d+ attempts: GRN_TIMEOUT/)
  t.ok(calls > 2, `retried several times (${calls})`)
  t.ok(elapsedMs < 400, `did not sleep past the deadline (${elapsedMs} ms)`)
  t.equal(err.retryable, false, 'a spent budget is not retried by an outer loop')
})

t.test('attempts are bounded by attemptsMax', async (t) => {
  let calls = 0
  const err = await retry(async () => { calls++; throw new GranaryError('GRN_UNAVAILABLE', ['x', 'y']) },
    { what: 'x', deadline: new Deadline(60_000), policy: { ...policy, retryDelayMsMax: 5, attemptsMax: 4 } }).catch((e: unknown) => e) as GranaryError
  t.equal(calls, 4)
  t.equal(err.code, 'GRN_DEADLINE_EXCEEDED')
  t.match(err.details, { lastCode: 'GRN_UNAVAILABLE', attempts: 4 })
})

t.test('giveUpOn hands a retryable code back at once', async (t) => {
  let calls = 0
  const err = await retry(async () => { calls++; throw new GranaryError('GRN_NO_CHUNKSERVERS', [3, 2]) },
    { what: 'x', deadline: new Deadline(5000), policy, giveUpOn: ['GRN_NO_CHUNKSERVERS'] }).catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_NO_CHUNKSERVERS')
  t.equal(calls, 1)
})

t.test('an abort ends the wait with GRN_ABORTED', async (t) => {
  const controller = new AbortController()
  const startMs = Date.now()
  setTimeout(() => { controller.abort() }, 50)
  const err = await retry(async () => { throw new GranaryError('GRN_UNAVAILABLE', ['x', 'y']) },
    { what: 'x', deadline: new Deadline(60_000), policy: { ...policy, retryDelayMsMin: 1000, retryDelayMsMax: 1000 }, signal: controller.signal })
    .catch((e: unknown) => e) as GranaryError
  t.equal(err.code, 'GRN_ABORTED')
  t.ok(Date.now() - startMs < 900, 'did not wait out the backoff')
  const pre = new AbortController()
  pre.abort(new GranaryError('GRN_TIMEOUT', ['x', 1]))
  const early = await retry(async () => 'never', { what: 'x', deadline: new Deadline(1000), policy, signal: pre.signal }).catch((e: unknown) => e) as GranaryError
  t.equal(early.code, 'GRN_TIMEOUT', 'an abort reason that is a GranaryError is kept')
})

t.test('a deadline cuts each request timeout to what is left', async (t) => {
  const deadline = new Deadline(1000, 0)
  t.equal(deadline.remainingMs(400), 600)
  t.equal(deadline.expired(999), false)
  t.equal(deadline.expired(1000), true)
  t.ok(new Deadline(100).timeoutMs(5000) <= 100)
  t.equal(new Deadline(10_000).timeoutMs(50), 50)
})
