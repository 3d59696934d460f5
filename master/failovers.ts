// The failovers this process won as a shadow (master/election.ts measures them), newest first, for the cluster
// report, the status page and /metrics. Memory only and per process: a restarted master starts empty (its log
// lines keep the history). Bounded: the oldest is dropped past failoverEventsKeptMax.
import type { FailoverEvent } from '../shared/protocol.js'

export const failoverEventsKeptMax = 32

export class FailoverLog {
  readonly #events: FailoverEvent[] = []
  readonly #listeners: Array<(event: FailoverEvent) => void> = []

  record (event: FailoverEvent): void {
    this.#events.unshift(event)
    if (this.#events.length > failoverEventsKeptMax) this.#events.length = failoverEventsKeptMax
    for (const listener of this.#listeners) listener(event)
  }

  onRecord (listener: (event: FailoverEvent) => void): void { this.#listeners.push(listener) }

  recent (): FailoverEvent[] { return this.#events.map((event) => ({ ...event })) }
}
