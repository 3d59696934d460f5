// The chunkserver as a voter (shared/failover.ts has the rules): it keeps the promise it gave its master with
// every heartbeat it echoes, votes at most once per term, and only for a shadow its master named in sync.
// `${dataDir}/vote.json` holds votedTerm, votedFor and the in-sync set (temp file, fsync, rename, dir fsync),
// written BEFORE a vote is answered: a vote survives a restart, and so does the set it is judged against.
// The promise (noVoteBeforeMs) is on this process's monotonic clock and is not persisted: a restarted server
// promises a whole lease from its start instead (freshVoterState), which covers whatever it promised before.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { GranaryError } from '../shared/errors.js'
import { decideVote, freshVoterState, onMasterReply, type MasterReplyView, type VoterState } from '../shared/failover.js'
import type { Logger } from '../shared/log.js'
import type { LeaseEcho, VoteRequest } from '../shared/protocol.js'
import { verifyRelease } from '../shared/token.js'
import { writeFileDurably, type ChunkStore } from './store.js'

export interface VoterDeps {
  store: ChunkStore            // its term is the newest master term this server has seen (tokens and replies)
  leaseMs: number
  secret: Buffer               // checks a hand-over's signed release
  log: Logger
  now?: () => number           // monotonic ms; tests move it
  onVoted?: (candidateUrl: string, term: number) => void   // heartbeat to the candidate from now on (it may not be in the list)
}

interface Persisted { votedTerm: number, votedFor: string | null, isrTerm: number, isrEpoch: number, isr: string[] }

export class Voter {
  readonly #deps: VoterDeps
  readonly #now: () => number
  #state: VoterState
  #write: Promise<void> = Promise.resolve()
  #masterUrl: string | undefined   // the master of the newest term this server had a reply from

  private constructor (deps: VoterDeps, persisted: Partial<Persisted>) {
    this.#deps = deps
    this.#now = deps.now ?? (() => performance.now())
    this.#state = freshVoterState(this.#now(), deps.leaseMs, { ...persisted, term: deps.store.term })
  }

  static async open (deps: VoterDeps): Promise<Voter> {
    const file = join(deps.store.dataDir, 'vote.json')
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return null; throw err })
    let persisted: Partial<Persisted> = {}
    if (text !== null) {
      const parsed = JSON.parse(text) as Persisted
      if (!Number.isSafeInteger(parsed.votedTerm) || !Array.isArray(parsed.isr)) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${file} is not a vote record`])
      persisted = parsed
    }
    return new Voter(deps, persisted)
  }

  get state (): Readonly<VoterState> { return this.#state }
  get masterUrl (): string | undefined { return this.#masterUrl }

  // A heartbeat reply from a master (role 'master'): returns the echo to send with the next heartbeat to that
  // master, or null when this reply renews nothing (an older term, or one below a term this server voted in).
  async onMasterReply (masterUrl: string, reply: MasterReplyView & { instanceId: string, sentAtMs: number }): Promise<LeaseEcho | null> {
    const before = this.#state
    const { state, echo } = onMasterReply({ ...before, term: Math.max(before.term, this.#deps.store.term) }, reply, this.#now(), this.#deps.leaseMs)
    this.#state = state
    if (state.term >= before.term && (echo || reply.released)) this.#masterUrl = masterUrl
    if (state.isrEpoch !== before.isrEpoch || state.isrTerm !== before.isrTerm) await this.#persist()
    return echo ? { instanceId: reply.instanceId, term: reply.term, sentAtMs: reply.sentAtMs, isrEpoch: state.isrTerm === reply.term ? state.isrEpoch : 0 } : null
  }

  // POST /vote: granted (and on disk) or a GranaryError with the refusal's stable code.
  async vote (request: VoteRequest): Promise<{ term: number }> {
    const current = { ...this.#state, term: Math.max(this.#state.term, this.#deps.store.term) }
    let view = request.force === true && !current.isr.includes(request.candidateId) ? { ...current, isr: [...current.isr, request.candidateId] } : current
    // A planned hand-over: the master of this server's current term released its lease to this candidate.
    const release = request.release === undefined ? null : verifyRelease(this.#deps.secret, request.release)
    if (release !== null && release.term === current.term && release.shadowId === request.candidateId) view = { ...view, noVoteBeforeMs: 0 }
    const decision = decideVote(view, { term: request.term, candidateId: request.candidateId }, this.#now(), this.#deps.leaseMs)
    if (!decision.granted) throw new GranaryError(decision.code, [decision.reason], { term: current.term, votedTerm: current.votedTerm })
    if (decision.repeat) { await this.#write; return { term: request.term } }   // answered once the first grant is on disk
    // Keep the real in-sync set (a forced vote does not add the candidate to it).
    this.#state = { ...decision.state, isr: current.isr }
    await this.#persist()
    this.#deps.onVoted?.(request.candidateUrl, request.term)
    this.#deps.log.warn({ term: request.term, candidateId: request.candidateId, candidateUrl: request.candidateUrl, forced: request.force === true }, 'voted')
    return { term: request.term }
  }

  // Chained so two writes never race on the file; each writes the state as it is when it runs.
  async #persist (): Promise<void> {
    const run = this.#write.catch(() => {}).then(async () => {
      const { votedTerm, votedFor, isrTerm, isrEpoch, isr } = this.#state
      await writeFileDurably(join(this.#deps.store.dataDir, 'vote.json'), JSON.stringify({ votedTerm, votedFor, isrTerm, isrEpoch, isr } satisfies Persisted) + '\n')
    })
    this.#write = run
    await run
  }
}
