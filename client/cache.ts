// The open() metadata of recently read files: chunks, replicas and read tokens. Fetched once per file and
// reused for a short TTL, so repeated reads skip the master (GFS clients cache chunk locations the same way).
// An entry never outlives its tokens, holds at most entriesMax files (least recently used goes first), and the
// client's own writes, renames and deletes drop what they touch. Other clients' changes show up after the TTL.
import type { OpenReply } from '../shared/protocol.js'
import { assert } from '../shared/assert.js'

export interface MetadataCacheOptions {
  ttlMs: number
  entriesMax: number
  tokenMarginMs?: number        // stop using tokens this long before they expire (clock skew, long reads)
  now?: () => number
}

interface Entry { reply: OpenReply, expiresAtMs: number }

export class MetadataCache {
  readonly #entries = new Map<string, Entry>()   // insertion order = recency order
  readonly #ttlMs: number
  readonly #entriesMax: number
  readonly #tokenMarginMs: number
  readonly #now: () => number

  constructor (options: MetadataCacheOptions) {
    assert(options.entriesMax >= 1, 'a cache holds at least one entry')
    assert(options.ttlMs >= 0, 'a TTL is not negative')
    this.#ttlMs = options.ttlMs
    this.#entriesMax = options.entriesMax
    this.#tokenMarginMs = options.tokenMarginMs ?? 5_000
    this.#now = options.now ?? Date.now
  }

  get size (): number { return this.#entries.size }

  get (path: string): OpenReply | undefined {
    const entry = this.#entries.get(path)
    if (entry === undefined) return undefined
    if (this.#now() >= entry.expiresAtMs) {
      this.#entries.delete(path)
      return undefined
    }
    this.#entries.delete(path)
    this.#entries.set(path, entry)
    return entry.reply
  }

  set (path: string, reply: OpenReply): void {
    const nowMs = this.#now()
    const expiresAtMs = Math.min(nowMs + this.#ttlMs, reply.tokenExpiresAtMs - this.#tokenMarginMs)
    this.#entries.delete(path)
    if (expiresAtMs <= nowMs) return
    while (this.#entries.size >= this.#entriesMax) {
      const oldest = this.#entries.keys().next()
      assert(oldest.done !== true, 'a full cache has an oldest entry')
      this.#entries.delete(oldest.value)
    }
    this.#entries.set(path, { reply, expiresAtMs })
  }

  // Drops `path` and, for a directory that was renamed or deleted, everything below it. The walk is bounded
  // by entriesMax.
  invalidate (path: string): void {
    this.#entries.delete(path)
    const prefix = path === '/' ? '/' : `${path}/`
    for (const key of this.#entries.keys()) {
      if (key.startsWith(prefix)) this.#entries.delete(key)
    }
  }

  clear (): void { this.#entries.clear() }
}
