// The in-sync set (ISR, as in Kafka; the rules are shared/failover.ts's): the shadows every acknowledgement
// waits for. A shadow's oplog poll `after=N` says it has applied — committed to its own database — every record
// up to N, so "acked" means on this machine and on every in-sync shadow. A shadow joins once a poll finds it
// caught up. One that stops confirming is proposed out after isrConfirmWaitMsMax, and leaves only once a
// majority of chunkservers has echoed the epoch without it (they would otherwise still elect it); until then
// acknowledgements wait, at most isrChangeWaitMsMax, then fail retryable (the op is committed; the client's
// retry with the same request id gets the stored reply once the set has settled).
// `${dataDir}/isr.json` keeps (term, epoch, members) across a restart, written durably on every change: a
// restarted master must not acknowledge without a shadow the chunkservers may still elect.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { assert } from '../shared/assert.js'
import { GranaryError } from '../shared/errors.js'
import { isrAfterCatchUp, isrAfterEchoes, isrAnnounced, isrConfirmed, isrProposeRemoval, type IsrState } from '../shared/failover.js'
import { isrChangeWaitMsMax, isrConfirmWaitMsMax } from '../shared/limits.js'
import type { Logger } from '../shared/log.js'

export interface IsrOptions {
  dataDir: string | null           // null: not persisted (unit tests of the pure parts)
  term: number
  log: Logger
  echoes: () => { epochs: number[], voterCount: number }   // from the lease: ISR epochs the chunkservers echoed
}

interface Waiter { seq: number, startedAtMs: number, resolve: () => void, reject: (err: Error) => void, timer: NodeJS.Timeout | null }

export class InSyncSet {
  readonly #options: IsrOptions
  #term: number
  #state: IsrState
  readonly #confirmed = new Map<string, number>()
  readonly #waiters = new Set<Waiter>()   // bounded by the commit queue: one per acknowledgement in flight

  constructor (options: IsrOptions) {
    this.#options = options
    this.#term = options.term
    this.#state = { epoch: 0, members: [], proposed: null }
    const saved = options.dataDir === null ? null : load(join(options.dataDir, 'isr.json'))
    if (saved !== null && saved.term === options.term) this.#state = { epoch: saved.epoch, members: saved.members, proposed: null }
  }

  get members (): readonly string[] { return this.#state.members }
  announced (): { epoch: number, isr: string[] } { return isrAnnounced(this.#state) }
  confirmedSeq (shadowId: string): number | null { return this.#confirmed.get(shadowId) ?? null }

  // A new term (this shadow was promoted): an empty set of its own, epoch 0. Not written: isr.json still names
  // an older term, which the constructor ignores for a master of this one, so a restart finds the same empty
  // set; the next change writes it. (Two fsyncs here blocked the new master's event loop — heartbeats, and the
  // mutations waiting for their echoes — for tens of ms on a busy disk.)
  reset (term: number): void {
    assert(term > this.#term, 'a reset is to a newer term')
    this.#term = term
    this.#state = { epoch: 0, members: [], proposed: null }
    this.#confirmed.clear()
  }

  // An oplog poll: the shadow has applied up to appliedSeq; masterSeq is this master's last committed seq.
  // Returns true when this poll made the shadow a member.
  onPoll (shadowId: string, appliedSeq: number, masterSeq: number): boolean {
    this.#confirmed.set(shadowId, Math.max(this.#confirmed.get(shadowId) ?? 0, appliedSeq))
    const before = this.#state
    if (appliedSeq >= masterSeq) this.#change(isrAfterCatchUp(this.#state, shadowId), 'shadow caught up: in sync')
    this.#wake()
    return this.#state !== before && this.#state.members.includes(shadowId)
  }

  // A heartbeat echoed an epoch: a proposed removal may now be done.
  onEchoes (): void {
    if (this.#state.proposed === null) return
    const { epochs, voterCount } = this.#options.echoes()
    this.#change(isrAfterEchoes(this.#state, epochs, voterCount), 'a chunkserver majority knows: out of the in-sync set')
    this.#wake()
  }

  // Resolves once every member has applied seq. After isrConfirmWaitMsMax the members still short of it are
  // proposed out; after isrChangeWaitMsMax the wait fails with GRN_UNAVAILABLE (retryable).
  async waitConfirmed (seq: number): Promise<void> {
    if (isrConfirmed(this.#state, this.#confirmed, seq)) return
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { seq, startedAtMs: Date.now(), resolve, reject, timer: null }
      const step = (): void => {
        if (!this.#waiters.has(waiter)) return
        const waitedMs = Date.now() - waiter.startedAtMs
        if (waitedMs >= isrChangeWaitMsMax) {
          this.#waiters.delete(waiter)
          reject(new GranaryError('GRN_UNAVAILABLE', ['the in-sync shadows', `not all of [${this.#state.members.join(', ')}] confirmed seq ${seq} within ${isrChangeWaitMsMax} ms and no chunkserver majority has yet agreed to drop them`]))
          return
        }
        const silent = this.#state.members.filter((id) => (this.#confirmed.get(id) ?? 0) < seq)
        if (silent.length > 0) this.#change(isrProposeRemoval(this.#state, silent), 'shadow silent: proposed out of the in-sync set')
        this.onEchoes()
        if (this.#waiters.has(waiter)) waiter.timer = setTimeout(step, isrConfirmWaitMsMax / 4)
      }
      this.#waiters.add(waiter)
      waiter.timer = setTimeout(step, isrConfirmWaitMsMax)
    })
  }

  // Stops every wait (the server closes, or this master was deposed): they fail retryable.
  close (err: Error): void {
    for (const waiter of this.#waiters) {
      if (waiter.timer !== null) clearTimeout(waiter.timer)
      waiter.reject(err)
    }
    this.#waiters.clear()
  }

  #wake (): void {
    for (const waiter of this.#waiters) {
      if (!isrConfirmed(this.#state, this.#confirmed, waiter.seq)) continue
      if (waiter.timer !== null) clearTimeout(waiter.timer)
      this.#waiters.delete(waiter)
      waiter.resolve()
    }
  }

  #change (next: IsrState, message: string): void {
    if (next === this.#state) return
    const before = this.#state
    this.#state = next
    this.#save()
    this.#options.log.warn({ term: this.#term, epoch: next.epoch, members: next.members, proposed: next.proposed, before: before.members }, message)
  }

  #save (): void {
    if (this.#options.dataDir === null) return
    save(join(this.#options.dataDir, 'isr.json'), { term: this.#term, epoch: this.#state.epoch, members: this.#state.members })
  }
}

interface Saved { term: number, epoch: number, members: string[] }

function load (file: string): Saved | null {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const saved = JSON.parse(text) as Saved
  if (!Number.isSafeInteger(saved.term) || !Number.isSafeInteger(saved.epoch) || !Array.isArray(saved.members)) {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${file} is not an in-sync set record`])
  }
  return saved
}

// Temp file, fsync, rename, directory fsync: rare (a shadow joins or leaves) and must survive power loss.
function save (file: string, saved: Saved): void {
  const temp = `${file}.tmp`
  writeFileSync(temp, JSON.stringify(saved) + '\n')
  const fd = openSync(temp, 'r+')
  try { fsyncSync(fd) } finally { closeSync(fd) }
  renameSync(temp, file)
  const dir = openSync(dirname(file), 'r')
  try { fsyncSync(dir) } finally { closeSync(dir) }
}
