// One chunk of a write: allocate → stream to the pipeline → check the acks → commit. A pipeline that fails
// (a dead or full chunkserver, a cut connection, an ack that does not match our own CRC) is retried on a new
// allocation that excludes the failed server, resending the chunk's kept Buffers from the first byte. The
// retries share one budget (deadlineMs), which starts at the first failure: streaming a chunk from a slow
// source is not a failure and must not eat the budget.
import { setTimeout as sleep } from 'node:timers/promises'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import type { AllocateReply, BindArgs, ChunkserverAddress, FileAttrs, FileStat, WriteChunkReply } from '../shared/protocol.js'
import type { InodeId, LeaseId, ServerId } from '../shared/ids.js'
import { assert } from '../shared/assert.js'
import type { ChunkBuffer } from './chunk-buffer.js'
import { Deadline, backoffDelayMs, deadlineExceeded, abortedError, throwIfAborted, type RetryPolicy } from './retry.js'
import type { MasterLink } from './master-link.js'
import type { Transport } from './transport.js'
import { publish, describeError } from './diagnostics.js'

export interface ChunkWriterContext {
  link: MasterLink
  transport: Transport
  policy: RetryPolicy
  path: string
  inodeId: InodeId
  leaseId: LeaseId
  deadlineMs: number
  requestTimeoutMs: number
  signal: AbortSignal
  onAllocate: (reply: AllocateReply) => void
  // Chunk 0's allocation made by create (allocateFirstChunk), while still fresh: used for the first attempt
  // instead of an allocate.
  preallocated?: () => AllocateReply | undefined
  // Asked just before the commit: when this is the file's last chunk and nothing else is in flight, the
  // completion to send with it (one round trip for commit + complete); onCompleted gets the completed file.
  completion?: (chunkIndex: number) => { sizeBytes: number, chunkCount: number, mtimeMs?: number, attrs?: FileAttrs, bind?: BindArgs } | undefined
  onCompleted?: (stat: FileStat) => void
  // The master allocates chunk indexes in order (no holes): the first allocation of this chunk waits for the
  // previous chunk's, and opens the way for the next one's when done (or failed).
  previousAllocated: Promise<void>
  allocated: () => void
}

// Resolves with the lease expiry from the commit reply once the chunk is committed.
export async function writeChunk (context: ChunkWriterContext, chunk: ChunkBuffer): Promise<number> {
  const exclude = new Set<ServerId>()
  let deadline: Deadline | undefined
  let allocation = await firstAllocation(context, chunk, exclude)
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(context.signal)
    if (attempt > 1) allocation = await allocate(context, chunk, exclude)
    let stored = false
    try {
      const reply = await context.transport.putChunk({
        url: firstUrl(allocation.pipeline),
        chunkHandle: allocation.chunkHandle,
        version: allocation.version,
        token: allocation.token,
        downstreamUrls: allocation.pipeline.slice(1).map((server) => server.url),
        body: chunk.openReader(),
        lengthBytes: chunk.ended ? chunk.lengthBytes : undefined,
        timeoutMs: context.requestTimeoutMs,
        signal: context.signal,
      })
      checkAcks(reply, allocation.pipeline, chunk)
      stored = true
      const completion = context.completion?.(chunk.chunkIndex)
      const committed = await context.link.commit({
        inodeId: context.inodeId, leaseId: context.leaseId, chunkIndex: chunk.chunkIndex,
        chunkHandle: allocation.chunkHandle, version: allocation.version,
        lengthBytes: chunk.lengthBytes, crc32: chunk.crc32, serverIds: allocation.pipeline.map((server) => server.serverId),
        ...(completion === undefined ? {} : { complete: completion })
      }, { deadlineMs: context.deadlineMs, signal: context.signal })
      if (completion !== undefined) {
        if (committed.stat === undefined) throw new GranaryError('GRN_INTERNAL', [`the master committed chunk ${chunk.chunkIndex} of ${context.path} without completing the file`])
        context.onCompleted?.(committed.stat)
      }
      return committed.leaseExpiresAtMs
    } catch (err) {
      if (context.signal.aborted) throw abortedError(context.signal)
      // A write token signed before a failover (create's chunk 0, a reserved file's) is refused by chunkservers
      // that have heard from the new master: no server is at fault, and an allocation from the master of now
      // (same handle, version + 1, a token of its term) writes.
      const staleToken = !stored && isGranaryError(err) && err.code === 'GRN_STALE_TERM'
      if (!staleToken && (!isGranaryError(err) || !err.retryable)) throw err
      deadline ??= new Deadline(context.deadlineMs)
      const delayMs = backoffDelayMs(attempt, context.policy)
      if (attempt >= context.policy.attemptsMax || deadline.remainingMs() <= delayMs + context.policy.retryDelayMsMin) {
        throw deadlineExceeded(`write chunk ${chunk.chunkIndex} of ${context.path}`, deadline, attempt, err)
      }
      const failed = staleToken ? undefined : failedServerId(err, allocation.pipeline)
      if (failed !== undefined) exclude.add(failed)
      publish('pipelineRetry', () => ({ path: context.path, chunkIndex: chunk.chunkIndex, excludeServerIds: [...exclude], ...describeError(err) }))
      await sleep(delayMs, undefined, { signal: context.signal }).catch(() => { throw abortedError(context.signal) })
    }
  }
}

async function firstAllocation (context: ChunkWriterContext, chunk: ChunkBuffer, exclude: Set<ServerId>): Promise<AllocateReply> {
  try {
    await context.previousAllocated
    throwIfAborted(context.signal)
    const preallocated = chunk.chunkIndex === 0 ? context.preallocated?.() : undefined
    if (preallocated !== undefined && preallocated.pipeline.length > 0) {
      context.onAllocate(preallocated)
      return preallocated
    }
    return await allocate(context, chunk, exclude)
  } finally {
    context.allocated()
  }
}

// Allocates (again) with the servers that failed excluded. When the exclusions leave too few live servers,
// they are dropped: a server that failed once may well work now, and a write that cannot be placed at all
// helps nobody.
async function allocate (context: ChunkWriterContext, chunk: ChunkBuffer, exclude: Set<ServerId>): Promise<AllocateReply> {
  const request = { inodeId: context.inodeId, leaseId: context.leaseId, chunkIndex: chunk.chunkIndex }
  const options = { deadlineMs: context.deadlineMs, signal: context.signal }
  let reply: AllocateReply
  if (exclude.size === 0) {
    reply = await context.link.allocate(request, options)
  } else {
    try {
      reply = await context.link.allocate({ ...request, excludeServerIds: [...exclude] }, { ...options, giveUpOn: ['GRN_NO_CHUNKSERVERS'] })
    } catch (err) {
      if (!isGranaryError(err) || err.code !== 'GRN_NO_CHUNKSERVERS') throw err
      exclude.clear()
      reply = await context.link.allocate(request, options)
    }
  }
  if (reply.pipeline.length === 0) throw new GranaryError('GRN_NO_CHUNKSERVERS', [1, 0])
  context.onAllocate(reply)
  return reply
}

// Every server of the pipeline must ack exactly the bytes we sent: our length and our CRC32. Anything else
// names the server to leave out of the next pipeline.
export function checkAcks (reply: WriteChunkReply, pipeline: ChunkserverAddress[], chunk: ChunkBuffer): void {
  const what = `chunk ${chunk.chunkIndex}`
  if (!chunk.ended) throw new GranaryError('GRN_INTEGRITY', [what, 'the pipeline acknowledged a chunk that was not finished'], { failedUrl: firstUrl(pipeline) })
  const acks = Array.isArray(reply?.replicas) ? reply.replicas : []
  for (const server of pipeline) {
    const ack = acks.find((candidate) => candidate.serverId === server.serverId)
    const failure = { failedUrl: server.url, serverId: server.serverId }
    if (ack === undefined) throw new GranaryError('GRN_INTEGRITY', [what, `no ack from ${server.url}`], failure)
    if (ack.lengthBytes !== chunk.lengthBytes) {
      throw new GranaryError('GRN_INTEGRITY', [what, `${server.url} stored ${ack.lengthBytes} bytes, the client sent ${chunk.lengthBytes}`], failure)
    }
    if (ack.crc32 !== chunk.crc32) {
      throw new GranaryError('GRN_INTEGRITY', [what, `${server.url} stored CRC32 ${ack.crc32}, the client sent ${chunk.crc32}`], failure)
    }
  }
}

// Which server broke the pipeline: the one the error's details name (by serverId or URL), else the head —
// a connection error, a timeout or an error without details is about the server we talk to.
export function failedServerId (err: GranaryError, pipeline: ChunkserverAddress[]): ServerId | undefined {
  const details = (typeof err.details === 'object' && err.details !== null ? err.details : {}) as Record<string, unknown>
  for (const key of ['serverId', 'failedServerId']) {
    const value = details[key]
    const match = pipeline.find((server) => server.serverId === value)
    if (match !== undefined) return match.serverId
  }
  for (const key of ['failedUrl', 'url']) {
    const value = details[key]
    if (typeof value !== 'string') continue
    const match = pipeline.find((server) => sameOrigin(server.url, value))
    if (match !== undefined) return match.serverId
  }
  return pipeline[0]?.serverId
}

function sameOrigin (a: string, b: string): boolean {
  try { return new URL(a).origin === new URL(b).origin } catch { return a === b }
}

function firstUrl (pipeline: ChunkserverAddress[]): string {
  const head = pipeline[0]
  assert(head !== undefined, 'a pipeline has a head')
  return head.url
}
