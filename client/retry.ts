// One deadline budget per operation, shared by all its attempts (SeaweedFS: attempts "share one retry
// budget"). Between attempts: jittered exponential backoff. What is retried is decided by the error table
// (`retryable`), never by a message. When the budget or the attempt limit runs out the caller gets
// GRN_DEADLINE_EXCEEDED, whose details carry the last error's code, so "gave up" never hides "why".
import { setTimeout as sleep } from 'node:timers/promises'
import { GranaryError, isGranaryError, type ErrorCode } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import { assert } from '../shared/assert.js'
import { publish, describeError } from './diagnostics.js'

export interface RetryPolicy {
  retryDelayMsMin: number
  retryDelayMsMax: number
  attemptsMax: number
}

// A point in time an operation must finish by. Made once per operation and handed to every attempt, so each
// request's own timeout can be cut to what is left.
export class Deadline {
  readonly startMs: number
  readonly atMs: number

  constructor (budgetMs: number, nowMs: number = Date.now()) {
    assert(Number.isFinite(budgetMs) && budgetMs > 0, 'a deadline budget is positive')
    this.startMs = nowMs
    this.atMs = nowMs + budgetMs
  }

  remainingMs (nowMs: number = Date.now()): number { return Math.max(0, this.atMs - nowMs) }
  elapsedMs (nowMs: number = Date.now()): number { return nowMs - this.startMs }
  expired (nowMs: number = Date.now()): boolean { return nowMs >= this.atMs }

  // A request's timeout: its own limit, but never past the deadline.
  timeoutMs (requestTimeoutMs: number): number { return Math.max(1, Math.min(requestTimeoutMs, this.remainingMs())) }
}

export interface RetryOptions {
  what: string                  // names the operation in errors and events ('create /a/b')
  deadline: Deadline
  policy: RetryPolicy
  signal?: AbortSignal
  giveUpOn?: readonly ErrorCode[]   // retryable codes the caller wants back at once (it has a better plan)
  // Called before sleeping after a retryable failure; may adjust state for the next attempt.
  onRetry?: (err: GranaryError, attempt: number) => void
}

// Runs fn until it succeeds, fails with a non-retryable error, or the budget/attempt limit runs out.
export async function retry<T> (fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { what, deadline, policy, signal } = options
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal)
    try {
      return await fn(attempt)
    } catch (err) {
      if (signal?.aborted === true) throw abortedError(signal)
      if (!isGranaryError(err) || !err.retryable || options.giveUpOn?.includes(err.code) === true) throw err
      const delayMs = backoffDelayMs(attempt, policy)
      // An attempt left with less time than the smallest backoff step would only time out: give up now.
      if (attempt >= policy.attemptsMax || deadline.remainingMs() <= delayMs + policy.retryDelayMsMin) {
        throw deadlineExceeded(what, deadline, attempt, err)
      }
      options.onRetry?.(err, attempt)
      publish('retry', () => ({ what, attempt, delayMs, ...describeError(err) }))
      await sleepOrAbort(delayMs, signal)
    }
  }
}

// Exponential from retryDelayMsMin, capped at retryDelayMsMax, with "equal jitter": half fixed, half random,
// so retrying clients spread out but none retries faster than half the step.
export function backoffDelayMs (attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  assert(attempt >= 1, 'attempts count from 1')
  const exponent = Math.min(attempt - 1, 30)
  const stepMs = Math.min(policy.retryDelayMsMax, policy.retryDelayMsMin * 2 ** exponent)
  const delayMs = stepMs / 2 + random() * stepMs / 2
  return Math.max(policy.retryDelayMsMin, Math.min(policy.retryDelayMsMax, Math.floor(delayMs)))
}

export function deadlineExceeded (what: string, deadline: Deadline, attempts: number, last: GranaryError): GranaryError {
  const elapsedMs = deadline.elapsedMs()
  return new GranaryError('GRN_DEADLINE_EXCEEDED', [what, elapsedMs, attempts, `${last.code}: ${last.message}`],
    { lastCode: last.code, lastMessage: last.message, attempts, elapsedMs })
}

export function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw abortedError(signal)
}

export function abortedError (signal: AbortSignal): GranaryError {
  const reason: unknown = signal.reason
  if (isGranaryError(reason)) return reason
  return new GranaryError('GRN_ABORTED', [reason instanceof Error ? reason.message : String(reason ?? 'aborted')])
}

async function sleepOrAbort (delayMs: number, signal: AbortSignal | undefined): Promise<void> {
  try {
    await sleep(delayMs, undefined, { signal })
  } catch (err) {
    if (signal?.aborted === true) throw abortedError(signal)
    throw err
  }
}
