// The shadows as this master has seen them: in memory only, learned from their oplog polls and snapshot
// requests (each carries the shadow's id, url and applied seq). Two uses: oplog retention (the tick keeps the
// records the slowest remembered shadow still needs, within the count and age bounds) and the cluster report
// (each shadow's applied seq and lag). A restarted master starts empty and relearns within one poll; a shadow
// silent for longer than forgetAfterMs no longer holds records back.
import { GranaryError } from '../shared/errors.js'
import { shadowsMax } from '../shared/limits.js'
import type { ShadowReport } from '../shared/protocol.js'
import { sql, type Db } from './db.js'

interface ShadowState {
  shadowId: string
  url: string | null
  appliedSeq: number
  lastSeenMs: number
}

export class ShadowTracker {
  #shadows = new Map<string, ShadowState>()   // bounded by shadowsMax
  readonly #forgetAfterMs: number

  constructor (forgetAfterMs: number) {
    this.#forgetAfterMs = forgetAfterMs
  }

  get count (): number { return this.#shadows.size }

  // A poll or a snapshot: the shadow has applied everything up to appliedSeq.
  seen (shadowId: string, url: string | undefined, appliedSeq: number, nowMs: number): void {
    this.forgetSilent(nowMs)
    let state = this.#shadows.get(shadowId)
    if (state === undefined) {
      if (this.#shadows.size >= shadowsMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['shadows of one master', shadowsMax])
      state = { shadowId, url: null, appliedSeq, lastSeenMs: nowMs }
      this.#shadows.set(shadowId, state)
    }
    if (url !== undefined) state.url = url
    state.appliedSeq = appliedSeq
    state.lastSeenMs = nowMs
  }

  forgetSilent (nowMs: number): void {
    for (const [shadowId, state] of this.#shadows) {
      if (nowMs - state.lastSeenMs > this.#forgetAfterMs) this.#shadows.delete(shadowId)
    }
  }

  // The lowest applied seq among remembered shadows (the oplog keeps records from there), or null.
  neededFromSeq (nowMs: number): number | null {
    this.forgetSilent(nowMs)
    let needed: number | null = null
    for (const state of this.#shadows.values()) needed = needed === null ? state.appliedSeq : Math.min(needed, state.appliedSeq)
    return needed
  }

  // The advertised URLs of the shadows seen lately (health lists them for clients): no database read.
  urls (nowMs: number): string[] {
    this.forgetSilent(nowMs)
    return [...this.#shadows.values()].map((state) => state.url).filter((url): url is string => url !== null)
  }

  // lagMs: how long ago the master committed the oldest record the shadow lacks.
  report (db: Db, lastSeq: number, nowMs: number): ShadowReport[] {
    this.forgetSilent(nowMs)
    return [...this.#shadows.values()].sort((a, b) => a.shadowId < b.shadowId ? -1 : 1).map((state): ShadowReport => {
      const lagRecords = Math.max(0, lastSeq - state.appliedSeq)
      let lagMs: number | null = 0
      if (lagRecords > 0) {
        const next = sql(db, 'SELECT atMs FROM oplog WHERE seq = ?').get(state.appliedSeq + 1) as { atMs: number } | undefined
        lagMs = next === undefined ? null : Math.max(0, nowMs - next.atMs)
      }
      return { shadowId: state.shadowId, url: state.url, appliedSeq: state.appliedSeq, lagRecords, lagMs, lastSeenAgeMs: nowMs - state.lastSeenMs }
    })
  }
}
