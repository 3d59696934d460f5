// Long polls on the oplog: a shadow that has applied everything parks its GET /oplog here until the next
// commit (the commit queue calls notify after every batch) or its wait runs out. This is what keeps a shadow's
// lag at one commit plus one HTTP round trip instead of a polling interval. Bounded: past oplogPollersMax
// parked polls, a new one is answered at once (empty) and the shadow simply polls again.
import type { EventEmitter } from 'node:events'
import { assert } from '../shared/assert.js'
import { oplogPollersMax } from '../shared/limits.js'

interface Waiter { afterSeq: number, wake: () => void }
// What a parked poll watches for its shadow hanging up: its response (http.ServerResponse has both).
type HangUp = EventEmitter & { readonly closed: boolean }

export class OplogFeed {
  #seq: number
  #waiters = new Set<Waiter>()   // bounded by oplogPollersMax
  #closed = false

  constructor (seq: number) {
    assert(Number.isSafeInteger(seq) && seq >= 0, 'a feed starts at a seq')
    this.#seq = seq
  }

  get waiterCount (): number { return this.#waiters.size }

  // The queue committed up to seq: wake every poll waiting for something after a smaller seq.
  notify (seq: number): void {
    if (seq <= this.#seq) return
    this.#seq = seq
    for (const waiter of this.#waiters) {
      if (waiter.afterSeq < seq) waiter.wake()
    }
  }

  // Resolves once a record after afterSeq is committed, waitMs has passed, `hangUp` emits 'close' (the poll's
  // response: the shadow hung up), or the feed closes (the server is stopping). Never rejects: the caller reads
  // whatever is there. The response's own 'close' event, not an AbortSignal: every poll's response closes when it
  // is answered, and aborting a controller then built a DOMException with a stack per poll (~45 µs on Node 20).
  // A response already closed (the shadow hung up while the request was still in fastify's hooks) emits no more
  // 'close': it is not parked at all, or it would hold one of oplogPollersMax places for its whole wait.
  async wait (afterSeq: number, waitMs: number, hangUp?: HangUp): Promise<void> {
    if (this.#closed || this.#seq > afterSeq || waitMs <= 0 || hangUp?.closed === true) return
    if (this.#waiters.size >= oplogPollersMax) return
    await new Promise<void>((resolve) => {
      const waiter: Waiter = { afterSeq, wake: () => done() }
      const timer = setTimeout(() => done(), waitMs)
      const done = (): void => {
        if (!this.#waiters.delete(waiter)) return
        clearTimeout(timer)
        hangUp?.removeListener('close', done)
        resolve()
      }
      hangUp?.once('close', done)
      this.#waiters.add(waiter)
    })
  }

  // Releases every parked poll (fastify's preClose: the server would otherwise wait out their timers).
  close (): void {
    this.#closed = true
    for (const waiter of [...this.#waiters]) waiter.wake()
  }
}
