// Reserved files (protocol.ts reservePath): a small file in one master call. The master makes unnamed files
// ahead, each with chunk 0 allocated and a write token; writeFile of bytes that fit one chunk takes one, streams
// the bytes to its pipeline and names, commits and completes it with one call (the completing commit's bind).
// Without one at hand the write goes the usual way (create, then the completing commit): nothing waits for a
// reservation. The first write of a client reserves nothing (a one-file process would waste them); the second
// starts the pool.
//
// The pool sizes itself to the demand. A take that finds it empty, or a refill sooner than a quarter of the
// usable time after the last one, doubles the next request (up to reservationsPerCallMax); reservations that
// lapse unused halve it (down to reservationsBatchMin). An unused reservation costs the master its lease expiry,
// like an abandoned upload. A failed reserve (an older master without the route, no chunkservers to place on)
// stops refills for refillPauseMs.
import { performance } from 'node:perf_hooks'
import * as limits from '../shared/limits.js'
import type { Reservation } from '../shared/protocol.js'
import type { MasterLink } from './master-link.js'
import { publish, describeError } from './diagnostics.js'

const reservationsBatchMin = 2
const refillPauseMs = 5_000            // after a failed reserve, the writes go the usual way this long
const reserveDeadlineMs = 5_000        // one reserve call's budget: a slow master delays no write, only the refill

interface Held { reservation: Reservation, usableUntilMs: number }   // performance.now() clock

export class ReservationPool {
  readonly #link: MasterLink
  readonly #replication: number
  readonly #chunkSizeBytes: number
  readonly #ready: Held[] = []
  #batch = reservationsBatchMin
  #refilling = false
  #missed = false                  // a take found the pool empty since the last refill
  #missedBefore = false            // ... or ever: the client's first small write reserves nothing
  #lastRefillAtMs = -Infinity
  #pausedUntilMs = -Infinity
  #closed = false

  constructor (link: MasterLink, options: { replication: number, chunkSizeBytes: number }) {
    this.#link = link
    this.#replication = options.replication
    this.#chunkSizeBytes = options.chunkSizeBytes
  }

  get size (): number { return this.#ready.length }

  // A reservation still well within its lease and token, or undefined (then a refill starts).
  take (): Reservation | undefined {
    const nowMs = performance.now()
    let lapsed = 0
    while (this.#ready.length > 0 && (this.#ready[0] as Held).usableUntilMs <= nowMs) {
      this.#ready.shift()
      lapsed++
    }
    if (lapsed > 0) this.#batch = Math.max(reservationsBatchMin, Math.floor(this.#batch / 2))
    // Reserved before a failover this client has seen: their tokens carry the old term, which chunkservers refuse.
    const term = this.#link.position.term
    while (this.#ready.length > 0 && (this.#ready[0] as Held).reservation.firstChunk.term < term) this.#ready.shift()
    const held = this.#ready.shift()
    if (held === undefined) {
      // A client's first small write reserves nothing: a process that writes one file (a CLI put) would only
      // leave reservations behind for the master to expire.
      if (!this.#missedBefore) {
        this.#missedBefore = true
        return undefined
      }
      this.#missed = true
    }
    if (this.#ready.length <= Math.floor(this.#batch / 2)) this.#refill(nowMs)
    return held?.reservation
  }

  close (): void {
    this.#closed = true
    this.#ready.length = 0
  }

  #refill (nowMs: number): void {
    if (this.#refilling || this.#closed || nowMs < this.#pausedUntilMs) return
    const count = Math.min(this.#batch, limits.reservationsPooledMax - this.#ready.length)
    if (count <= 0) return
    this.#refilling = true
    this.#link.reserve({ count, replication: this.#replication, chunkSizeBytes: this.#chunkSizeBytes }, { deadlineMs: reserveDeadlineMs }).then((reply) => {
      const receivedAtMs = performance.now()
      const usableForMs = reply.usableForMs
      if (this.#missed || receivedAtMs - this.#lastRefillAtMs < usableForMs / 4) this.#batch = Math.min(limits.reservationsPerCallMax, this.#batch * 2)
      this.#missed = false
      this.#lastRefillAtMs = receivedAtMs
      if (this.#closed) return
      for (const reservation of reply.reservations) this.#ready.push({ reservation, usableUntilMs: receivedAtMs + usableForMs })
    }, (err: unknown) => {
      this.#pausedUntilMs = performance.now() + refillPauseMs
      publish('reserveError', () => describeError(err))
    }).finally(() => { this.#refilling = false })
  }
}
