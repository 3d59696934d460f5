// A pipelined chunk write (GFS data flow): each Buffer that arrives from upstream is forwarded to the next
// chunkserver and queued for the local temp file — the same Buffer, no copies — and checksummed incrementally.
// The upstream socket is paused only when more than forwardQueueBytesMax waits on the next hop or more than
// diskQueueBytesMax on the disk (Node's 16 KiB defaults, obeyed literally, cost a third of the throughput:
// PERF-NOTES; the disk gets more room because a thread-pool write on a busy 2-core box can stall for ms).
// The reply goes out only when this copy is durable under its final name AND the next hop said 200 for the
// rest; on any failure the local copy is removed and nothing half-written stays visible.
import type { Agent, IncomingMessage } from 'node:http'
import type { Agent as HttpsAgent } from 'node:https'
import { unlink } from 'node:fs/promises'
import { BlockCrcs } from '../shared/checksum.js'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import { assert, AssertionError } from '../shared/assert.js'
import { blockSizeBytes, chunkSizeBytesMax, diskQueueBytesMax, forwardQueueBytesMax } from '../shared/limits.js'
import type { ReplicaAck, WriteChunkReply } from '../shared/protocol.js'
import type { ChunkHandle } from '../shared/ids.js'
import type { Logger } from '../shared/log.js'
import type { ChunkStore } from './store.js'
import { ChunkWriter } from './chunk-writer.js'
import { encodeTrailer } from './chunk-format.js'
import { NextHop } from './next-hop.js'

export interface PipelineDeps {
  store: ChunkStore
  agent: Agent                // keep-alive connections to the next hops
  tlsAgent?: HttpsAgent       // the same for next hops with https:// URLs (it carries --ca-file)
  url: () => string           // this server's advertised URL
  syncEveryBytes: number
  log: Logger
}

export interface ChunkWrite {
  source: IncomingMessage     // the upstream request body
  chunkHandle: ChunkHandle
  version: number
  token: string
  rest: string[]              // the pipeline after this server, in order
  contentLength: number | null
}

// Runs one write to the end. Resolves with the acks of this server and everything downstream; rejects with
// a GranaryError (GRN_REPLICA_FAILED, GRN_DISK_FULL, GRN_LIMIT_EXCEEDED, GRN_ABORTED, ...).
export async function writeChunk (deps: PipelineDeps, write: ChunkWrite): Promise<WriteChunkReply> {
  const { store, log } = deps
  const { chunkHandle, version } = write
  if (write.contentLength !== null && write.contentLength > chunkSizeBytesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['chunk body', chunkSizeBytesMax])
  const slot = await store.beginWrite(chunkHandle, version, write.contentLength ?? blockSizeBytes)
  const finalPath = store.chunkPathOf(chunkHandle, version)
  let writer: ChunkWriter | null = null
  let hop: NextHop | null = null
  let renamed = false
  try {
    // The temp file opens while the body is already being forwarded: the next hop does not wait for it.
    writer = ChunkWriter.start(slot.tempPath, deps.syncEveryBytes, write.contentLength)
    const [next, ...rest] = write.rest
    if (next !== undefined) hop = new NextHop({ url: next, rest, chunkHandle, version, token: write.token, contentLength: write.contentLength }, deps.agent, deps.tlsAgent)
    const sums = new BlockCrcs()
    await receive(write.source, writer, hop, sums)
    const { blockCrcs, chunkCrc32, lengthBytes } = sums.finish()
    hop?.end()
    const local = writer.finish(encodeTrailer(blockCrcs, lengthBytes, chunkCrc32), lengthBytes, finalPath).then(() => { renamed = true })
    const [, downstream] = await Promise.all([local.catch(diskError), hop?.outcome])
    if (downstream !== undefined && !downstream.ok) throw downstream.error
    const self: ReplicaAck = { serverId: store.serverId, url: deps.url(), lengthBytes, crc32: chunkCrc32 }
    const replicas = [self, ...checkAcks(downstream?.reply.replicas ?? [], self, write.rest)]
    await store.commit({ chunkHandle, version, lengthBytes, crc32: chunkCrc32 })
    log.debug({ chunkHandle, version, lengthBytes, replicas: replicas.length }, 'chunk written')
    return { replicas }
  } catch (err) {
    hop?.abort()
    await writer?.abort().catch(() => {})
    if (renamed) await unlink(finalPath).catch(() => {})
    throw isGranaryError(err) || err instanceof AssertionError ? err : diskErrorOf(err)
  } finally {
    slot.release()
  }
}

// Feeds the upstream body to the next hop, the disk and the checksummer until it ends. A failure of the next
// hop or the disk stops the copying but keeps reading to the end of the body, so the upstream sees our error
// reply rather than a reset connection; an over-limit or aborted body rejects at once.
function receive (source: IncomingMessage, writer: ChunkWriter, hop: NextHop | null, sums: BlockCrcs): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: GranaryError | null = null
    let paused = false
    let receivedBytes = 0
    const resumeIfClear = (): void => {
      if (!paused) return
      // After a failure nothing is copied any more: resume to read the rest of the body and throw it away.
      if (failure === null && (writer.queuedBytes > diskQueueBytesMax || (hop !== null && hop.queuedBytes > forwardQueueBytesMax))) return
      paused = false
      source.resume()
    }
    const stopCopying = (err: GranaryError): void => {
      if (failure === null) failure = err
      resumeIfClear()
    }
    writer.drainBelowBytes = diskQueueBytesMax
    writer.onDrain = resumeIfClear
    writer.onError = (err) => stopCopying(diskErrorOf(err))
    if (hop !== null) {
      hop.onDrain = resumeIfClear
      void hop.outcome.then((outcome) => { if (!outcome.ok) stopCopying(outcome.error) })
    }
    const onData = (buf: Buffer): void => {
      receivedBytes += buf.length
      if (receivedBytes > chunkSizeBytesMax) { cleanup(); reject(new GranaryError('GRN_LIMIT_EXCEEDED', ['chunk body', chunkSizeBytesMax])); return }
      if (failure !== null) return
      hop?.write(buf)
      writer.push(buf)
      sums.update(buf)
      if (writer.queuedBytes > diskQueueBytesMax || (hop !== null && hop.queuedBytes > forwardQueueBytesMax)) {
        paused = true
        source.pause()
      }
    }
    const onEnd = (): void => {
      cleanup()
      if (failure !== null) reject(failure)
      else resolve()
    }
    const onClose = (): void => {
      if (source.complete) return
      cleanup()
      reject(new GranaryError('GRN_ABORTED', ['upstream closed the connection mid-body']))
    }
    const cleanup = (): void => {
      source.off('data', onData)
      source.off('end', onEnd)
      source.off('close', onClose)
      source.off('error', onClose)
      writer.onDrain = null
      if (hop !== null) hop.onDrain = null
    }
    source.on('data', onData)
    source.on('end', onEnd)
    source.on('close', onClose)
    source.on('error', onClose)
  })
}

// The next hop must have stored exactly what this server stored, in the order the pipeline named.
function checkAcks (acks: ReplicaAck[], self: ReplicaAck, rest: string[]): ReplicaAck[] {
  if (acks.length !== rest.length) {
    throw new GranaryError('GRN_REPLICA_FAILED', [rest[0], `${acks.length} acks for ${rest.length} replicas`], { failedUrl: rest[0] })
  }
  for (const [index, ack] of acks.entries()) {
    if (ack.lengthBytes !== self.lengthBytes || ack.crc32 !== self.crc32) {
      throw new GranaryError('GRN_REPLICA_FAILED', [ack.url, 'stored bytes differ from upstream'], { failedUrl: rest[index] ?? ack.url, serverId: ack.serverId })
    }
  }
  assert(acks.length === rest.length, 'one ack per downstream replica')
  return acks
}

async function diskError (err: unknown): Promise<never> {
  throw diskErrorOf(err)
}

function diskErrorOf (err: unknown): GranaryError {
  if (isGranaryError(err)) return err
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOSPC') return new GranaryError('GRN_DISK_FULL', ['this chunkserver', 0, 0], undefined, 'chunkserver disk is full')
  return new GranaryError('GRN_INTERNAL', [`chunk write failed: ${code ?? (err as Error | undefined)?.message ?? String(err)}`])
}
