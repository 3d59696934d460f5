// Heartbeats to every master URL (the master first, then shadows), each on its own loop: send load and chunk
// changes, run the commands that ride on the reply (the master never calls a chunkserver), learn newer terms.
// A full report goes out on first contact and whenever that master's last reply asked for one; otherwise the
// chunks added and removed since that master's last successful heartbeat. A failed heartbeat (the master may
// have restarted and lost nothing, or lost our deltas) makes the next one a full report.
// beatSoon() cuts the wait short: a finished copy is reported at once, and the reply brings the next commands.
// A reply that says more commands are queued (moreCommands) is followed by the next heartbeat as soon as its
// commands have run, at most commandFollowUpBeatsMax in a row: a deleted tree's garbage then goes at disk
// speed (deletes run deletesInFlightMax at a time) rather than commandsPerHeartbeatMax per interval.
import { Agent, request } from 'undici'
import { caConnectOptions } from '../shared/tls.js'
import { controlRequest, type Principal } from '../shared/auth.js'
import { operatorKeysMax } from '../shared/limits.js'
import { createHash, timingSafeEqual } from 'node:crypto'

import { isGranaryError } from '../shared/errors.js'
import { commandFollowUpBeatsMax, commandsPerHeartbeatMax, deletesInFlightMax, reportedChunksPerHeartbeatMax, voteRoundMsMax } from '../shared/limits.js'
import { healthPath, heartbeatPath, namedMasterUrl, type ChunkserverCommand, type HeartbeatReply, type HeartbeatRequest, type LeaseEcho, type ReplicateCommand, type StoredChunk } from '../shared/protocol.js'
import type { Logger } from '../shared/log.js'
import type { ChunkStore, StoreEvent } from './store.js'
import type { Voter } from './voter.js'

export interface HeartbeatDeps {
  store: ChunkStore
  secret: Buffer               // signs heartbeats; replies not signed with it are not believed (shared/auth.ts)
  masters: string[]            // origins, from parseMasterList
  intervalMs: number
  url: () => string            // this server's advertised URL
  log: Logger
  onReplicate?: (command: ReplicateCommand) => void   // chunkserver/replicator.ts: copies run outside this loop
  voter?: Voter                // the lease and the vote: master replies renew a promise, and the next heartbeat echoes it
  ca?: Buffer                  // --ca-file: trusted for https:// masters (default: the system's CAs)
}

const intervalMsMin = 10
const heartbeatLinksMax = 16           // configured masters and shadows plus masters learned from votes
const intervalMsMax = 60_000
// While a master does not answer (it is restarting), try again soon rather than a whole interval later: its
// placement and replica counts wait for this server's full report, so every ms here delays writes. The wait
// doubles from unreachableRetryMsMin with each failure up to the interval, and while unreachable each attempt is
// a cheap probe (GET healthPath) first: a dead or hung master or shadow costs no full report per try.
const unreachableRetryMsMin = 25
const probeTimeoutMsMin = 1000

const failuresCounted = 16            // 2^16 × 25 ms is past any interval: the backoff is at its cap
// A candidate this server voted for is master a few ms after the vote (once a majority granted), and its lease
// waits on the echoes of its own replies: it is beaten every candidateBeatMs until it answers as a master of the
// voted term, for at most a vote round and a bit (then it lost, or is gone, and the interval applies again).
const candidateBeatMs = 10
const candidateWaitMs = 2 * voteRoundMsMax

// The wait before the next attempt at an unreachable master: 25, 50, 100, ... ms, at most the interval.
export function retryAfterMs (link: { failures: number, intervalMs: number }): number {
  return Math.min(link.intervalMs, unreachableRetryMsMin * 2 ** Math.max(0, link.failures - 1))
}

interface MasterLink {
  url: string
  needFullReport: boolean
  added: Map<string, StoredChunk>     // `${handle}_${version}` → chunk, since the last successful heartbeat
  removed: Map<string, StoredChunk>
  reachable: boolean | null           // null until the first attempt; logged when it changes
  failures: number                    // failed attempts in a row (probes included): the backoff's exponent
  intervalMs: number
  moreCommands: boolean               // the last reply said more commands are queued for us
  soon: boolean                       // beatSoon() was called since this link's last beat started
  wake: (() => void) | null           // ends the current wait between beats
  echo: LeaseEcho | null              // the last master reply from this URL that renewed its lease: sent with the next beat
  leaseWanted: boolean                // that reply asked for the echo at once (a master just started or just won)
  masterTerm: number                  // the term of this URL's last reply when it answered as a master, else 0
  awaitTerm: number                   // a candidate voted for in this term: beat every candidateBeatMs until it is master of it
  awaitUntilMs: number                // ...but not past this (Date.now())
}

export class Heartbeats {
  readonly #deps: HeartbeatDeps
  #operatorKeys = new Map<string, Buffer>()   // admin key id → SHA-256 of its secret, from the latest signed reply
  readonly #links: MasterLink[]
  readonly #agent: Agent
  readonly #stop = new AbortController()
  #loops: Array<Promise<void>> = []
  #started = false

  // An admin's "id:secret" on /metrics (Basic/Bearer), checked against the hashes the master sent.
  operatorKey (accessKeyId: string, secret: string): Principal | null {
    const want = this.#operatorKeys.get(accessKeyId)
    if (want === undefined) return null
    const got = createHash('sha256').update(secret).digest()
    return timingSafeEqual(got, want) ? { kind: 'key', accessKeyId, name: 'admin', readOnly: false, admin: true, prefix: null } : null
  }

  #learnOperatorKeys (keys: unknown[]): void {
    const next = new Map<string, Buffer>()
    for (const entry of keys.slice(0, operatorKeysMax)) {
      if (Array.isArray(entry) && typeof entry[0] === 'string' && typeof entry[1] === 'string' && /^[0-9a-f]{64}$/.test(entry[1])) next.set(entry[0], Buffer.from(entry[1], 'hex'))
    }
    this.#operatorKeys = next
  }

  constructor (deps: HeartbeatDeps) {
    this.#deps = deps
    this.#links = deps.masters.map((url) => newLink(url, deps.intervalMs))
    // A heartbeat that takes longer than a few intervals is as good as lost; never let one hang a loop.
    const timeoutMs = Math.max(1000, 3 * deps.intervalMs)
    this.#agent = new Agent({ connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs, keepAliveTimeout: 2 * timeoutMs, connections: 2, ...caConnectOptions(deps.ca) })
    deps.store.onChange((event, chunk) => { for (const link of this.#links) record(link, event, chunk) })
  }

  start (): void {
    this.#started = true
    this.#loops = this.#links.map(async (link) => await this.#loop(link))
  }

  // A shadow this server voted for becomes a master it must heartbeat to (its lease lives on these echoes),
  // even when it is not in the configured list. Bounded by heartbeatLinksMax. When votedTerm is given (a vote
  // was just granted), that URL is beaten now and every candidateBeatMs until it answers as a master of that
  // term: a new master acknowledges nothing until a majority echoed one of its replies, and waiting a whole
  // interval for the next beat was most of a planned hand-over's pause.
  addMaster (url: string, votedTerm?: number): void {
    if (this.#stop.signal.aborted) return
    let link = this.#links.find((l) => l.url === url)
    if (link === undefined) {
      if (this.#links.length >= heartbeatLinksMax) return
      link = newLink(url, this.#deps.intervalMs)
      this.#links.push(link)
      this.#deps.log.info({ master: url }, 'heartbeating to a newly elected master')
      if (this.#started) this.#loops.push(this.#loop(link))
    }
    if (votedTerm === undefined || link.masterTerm >= votedTerm) return
    link.awaitTerm = Math.max(link.awaitTerm, votedTerm)
    link.awaitUntilMs = Date.now() + candidateWaitMs
    link.soon = true
    link.wake?.()
  }

  // The next heartbeat to every master goes now rather than at its interval; one called during a beat makes
  // another follow at once. Calls coalesce (one flag per link), so this adds at most one beat per call.
  beatSoon (): void {
    for (const link of this.#links) {
      link.soon = true
      link.wake?.()
    }
  }

  async stop (): Promise<void> {
    this.#stop.abort()
    await Promise.all(this.#loops)
    await this.#agent.close().catch(() => {})
  }

  async #loop (link: MasterLink): Promise<void> {
    let followUps = 0
    while (!this.#stop.signal.aborted) {
      const startedAtMs = Date.now()
      link.moreCommands = false
      link.leaseWanted = false
      link.soon = false
      await this.#beat(link).catch((err: unknown) => this.#deps.log.error({ err, master: link.url }, 'heartbeat failed'))
      // The commands of that reply have run: fetch the next batch now, within the bound (a master that always
      // says "more" cannot turn this loop into a busy one).
      if ((link.moreCommands || link.leaseWanted) && followUps < commandFollowUpBeatsMax) { followUps++; continue }
      followUps = 0
      if (link.awaitTerm > 0 && (link.masterTerm >= link.awaitTerm || Date.now() >= link.awaitUntilMs)) link.awaitTerm = 0
      const periodMs = link.awaitTerm > 0 ? candidateBeatMs : link.reachable === false ? retryAfterMs(link) : link.intervalMs
      await this.#wait(link, Math.max(0, periodMs - (Date.now() - startedAtMs)))
    }
  }

  // Until waitMs pass, stop() is called or beatSoon() wakes this link.
  async #wait (link: MasterLink, waitMs: number): Promise<void> {
    if (link.soon || this.#stop.signal.aborted) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#stop.signal.removeEventListener('abort', done)
        link.wake = null
        resolve()
      }
      const timer = setTimeout(done, waitMs)
      this.#stop.signal.addEventListener('abort', done, { once: true })
      link.wake = done
    })
  }

  async #beat (link: MasterLink): Promise<void> {
    const { store, log } = this.#deps
    let reply: HeartbeatReply
    try {
      if (link.reachable === false) await this.#probe(link)
      const body = await this.#requestFor(link)
      const res = await controlRequest(async (url, init) => await request(url, { ...init, dispatcher: this.#agent, signal: this.#stop.signal }),
        this.#deps.secret, link.url + heartbeatPath, 'POST', body)
      const json = res.json
      if (res.statusCode !== 200) {
        // A deposed master names its successor: heartbeat that one too (learned like a vote's master).
        const refusal = json as { code?: string, details?: { masterUrl?: unknown, fencedByTerm?: unknown } } | null
        const named = namedMasterUrl(refusal?.details)
        if (refusal?.code === 'GRN_NOT_MASTER' && typeof refusal.details?.fencedByTerm === 'number' && named !== undefined) this.addMaster(named)
        throw Object.assign(new Error(`HTTP ${res.statusCode}`), { code: refusal?.code })
      }
      reply = json as HeartbeatReply
      if (Array.isArray(reply.operatorKeys) && Number.isSafeInteger(reply.term) && reply.term >= this.#deps.store.term) this.#learnOperatorKeys(reply.operatorKeys)
    } catch (err) {
      link.needFullReport = true
      link.echo = null
      link.added.clear()
      link.removed.clear()
      if (link.reachable !== false && !this.#stop.signal.aborted) {
        log.warn({ master: link.url, code: (err as { code?: string }).code, err: (err as Error).message }, 'master unreachable')
      }
      link.reachable = false
      link.failures = Math.min(link.failures + 1, failuresCounted)
      return
    }
    if (link.reachable !== true) log.info({ master: link.url }, 'master reachable')
    link.reachable = true
    link.failures = 0
    link.needFullReport = reply.needFullReport === true
    if (Number.isSafeInteger(reply.heartbeatIntervalMs)) link.intervalMs = Math.min(Math.max(reply.heartbeatIntervalMs, intervalMsMin), intervalMsMax)
    // A reply from a master older than the newest term this server has seen (the term may have risen while the
    // request was in flight: a newer master's token or heartbeat reply) carries a deposed master's commands:
    // none of them runs, and it asks for no follow-up.
    const termSeen = store.term
    // Both on disk before the next beat (which carries the echo), written side by side: a new master's first
    // reply brings a new term and a new in-sync set, and its acknowledgements wait for these echoes.
    await Promise.all([
      Number.isSafeInteger(reply.term) ? store.observeTerm(reply.term).catch((err: Error) => log.error({ err }, 'term not persisted')) : undefined,
      this.#renew(link, reply)
    ])
    if (!Number.isSafeInteger(reply.term) || reply.term < termSeen) {
      if (Array.isArray(reply.commands) && reply.commands.length > 0) log.warn({ master: link.url, term: reply.term, termSeen, commandCount: reply.commands.length }, 'commands from an older term ignored')
      return
    }
    await this.#run(reply.commands)
    link.moreCommands = reply.moreCommands === true
  }

  // A master's reply renews the promise this server gives it (voter.ts); the echo goes with the next beat to
  // that URL only. A shadow's reply renews nothing. A reply from a master below a term this server has seen
  // or voted in renews nothing either, and then no older echo is sent.
  async #renew (link: MasterLink, reply: HeartbeatReply): Promise<void> {
    const { voter } = this.#deps
    link.echo = null
    link.masterTerm = reply.role === 'master' && Number.isSafeInteger(reply.term) ? reply.term : 0
    if (voter === undefined || reply.role !== 'master' || typeof reply.instanceId !== 'string' || typeof reply.sentAtMs !== 'number') return
    link.echo = await voter.onMasterReply(link.url, {
      term: reply.term, instanceId: reply.instanceId, sentAtMs: reply.sentAtMs, isrEpoch: reply.isrEpoch ?? 0,
      isr: Array.isArray(reply.isr) ? reply.isr : [], released: reply.released === true
    }).catch((err: Error) => { this.#deps.log.error({ err }, 'vote state not persisted; no renewal sent'); return null })
    link.leaseWanted = reply.leaseWanted === true && link.echo !== null
  }

  // Is anyone answering there who takes heartbeats? Throws when not; the full heartbeat (and its report) is built
  // only after a yes. A deposed master (health says fencedByTerm) answers, but takes no heartbeat: it gets only
  // these probes, backed off to the interval, until it comes back as a shadow or a master of a newer term.
  async #probe (link: MasterLink): Promise<void> {
    const res = await request(link.url + healthPath, {
      method: 'GET', dispatcher: this.#agent, signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(Math.max(probeTimeoutMsMin, link.intervalMs))])
    })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw Object.assign(new Error(`probe answered HTTP ${res.statusCode}`), { code: 'GRN_UNAVAILABLE' })
    let health: { fencedByTerm?: unknown } | null = null
    try { health = JSON.parse(text) as { fencedByTerm?: unknown } } catch { health = null }
    if (typeof health?.fencedByTerm === 'number') throw Object.assign(new Error(`a deposed master (fenced by term ${health.fencedByTerm})`), { code: 'GRN_NOT_MASTER' })
  }

  async #requestFor (link: MasterLink): Promise<HeartbeatRequest> {
    const { store } = this.#deps
    const [capacityBytes, freeBytes] = await Promise.all([store.capacityBytes(), store.freeBytes()])
    const body: HeartbeatRequest = {
      serverId: store.serverId, url: this.#deps.url(), capacityBytes, freeBytes, usedBytes: store.usedBytes,
      chunkCount: store.chunkCount, activeWrites: store.activeWrites, term: store.term
    }
    // Taken and cleared in one synchronous step: changes after this point go into the next heartbeat.
    if (link.needFullReport) {
      body.fullReport = store.chunks()
    } else {
      body.added = [...link.added.values()]
      body.removed = [...link.removed.values()]
    }
    link.added.clear()
    link.removed.clear()
    if (link.echo !== null) body.lease = link.echo
    const masterUrl = this.#deps.voter?.masterUrl
    if (masterUrl !== undefined) body.masterUrl = masterUrl
    // Every stored chunk that failed a checksum and every chunk file the start-up scan could not read, until
    // the master has it deleted or a good copy replaces it.
    const corrupt = store.corruptReport()
    if (corrupt.length > 0) body.corrupt = corrupt
    return body
  }

  async #run (commands: HeartbeatReply['commands'] | undefined): Promise<void> {
    if (!Array.isArray(commands)) return
    const deletes: Array<Extract<ChunkserverCommand, { type: 'delete' }>> = []
    for (const command of commands.slice(0, commandsPerHeartbeatMax)) {
      if (command.type === 'replicate') this.#deps.onReplicate?.(command)
      else if (command.type === 'delete') deletes.push(command)
    }
    if (deletes.length > 0) await this.#runDeletes(deletes)
  }

  // deletesInFlightMax unlinks at a time (the master queues one command per chunk, so no two here touch the
  // same file). One info line per batch: a deleted tree is tens of thousands of chunks.
  async #runDeletes (deletes: Array<Extract<ChunkserverCommand, { type: 'delete' }>>): Promise<void> {
    const { store, log } = this.#deps
    const startedAtMs = Date.now()
    const counts = { deletedCount: 0, absentCount: 0, failedCount: 0 }
    let next = 0
    await Promise.all(Array.from({ length: Math.min(deletesInFlightMax, deletes.length) }, async () => {
      while (next < deletes.length) {
        const command = deletes[next++] as typeof deletes[number]
        try {
          if (await store.delete(command.chunkHandle, command.version)) counts.deletedCount++
          else counts.absentCount++
        } catch (err) {
          counts.failedCount++
          log.error({ chunkHandle: command.chunkHandle, version: command.version, code: isGranaryError(err) ? err.code : (err as { code?: string }).code }, 'delete command failed')
        }
      }
    }))
    log.info({ commandCount: deletes.length, ...counts, durationMs: Date.now() - startedAtMs }, 'delete commands run')
  }
}

function newLink (url: string, intervalMs: number): MasterLink {
  return {
    url, needFullReport: true, added: new Map(), removed: new Map(), reachable: null, failures: 0, intervalMs, moreCommands: false,
    soon: false, wake: null, echo: null, leaseWanted: false, masterTerm: 0, awaitTerm: 0, awaitUntilMs: 0
  }
}

// One set per direction and master; a chunk added then removed before being reported cancels out of `added`
// but is still reported removed (harmless if the master never knew it). Past the report limit the deltas are
// dropped and the next heartbeat is a full report instead.
// Recorded even while a full report is pending: one may be in flight already, and changes after its
// snapshot must still reach the master.
function record (link: MasterLink, event: StoreEvent, chunk: StoredChunk): void {
  const key = `${chunk.chunkHandle}_${chunk.version}`
  if (event === 'added') {
    link.removed.delete(key)
    link.added.set(key, chunk)
  } else {
    link.added.delete(key)
    link.removed.set(key, chunk)
  }
  if (link.added.size + link.removed.size > reportedChunksPerHeartbeatMax) {
    link.added.clear()
    link.removed.clear()
    link.needFullReport = true
  }
}
