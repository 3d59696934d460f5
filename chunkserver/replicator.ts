// Re-replication, the target's side: a `replicate` command from the heartbeat reply (master/replicator.ts)
// copies one chunk from a live source. The source verifies every block's CRC as it serves (chunk-reader.ts);
// this server computes its own block CRCs while writing a temp file, checks the length and whole-chunk CRC
// against what the master committed, then fsyncs, renames and indexes the chunk, so the next heartbeat
// reports it `added` and the master adds the replica row (onCopied asks for that heartbeat at once, so the
// master counts the replica and its reply brings the next command without waiting for the interval). Copies run
// in the background, never inside the heartbeat loop (a 64 MiB copy must not make this server look dead),
// bounded in number and queue length. A command naming a good copy this server already holds is answered
// the same way, by reporting that copy `added` again: the master asks only because it has no row for it.
import { Agent, request } from 'undici'
import { caConnectOptions } from '../shared/tls.js'
import { GranaryError, isGranaryError } from '../shared/errors.js'
import type { Logger } from '../shared/log.js'
import { dataIdleTimeoutMs, diskQueueBytesMax, replicationsInFlightPerServerMax, replicationsQueuedPerServerMax } from '../shared/limits.js'
import { tokenHeader, type ChunkserverAddress, type ReplicateCommand } from '../shared/protocol.js'
import { BlockCrcs } from '../shared/checksum.js'
import { encodeTrailer } from './chunk-format.js'
import { ChunkWriter } from './chunk-writer.js'
import type { ChunkStore } from './store.js'

export interface ReplicatorDeps {
  store: ChunkStore
  syncEveryBytes: number
  log: Logger
  onCopied?: () => void      // a chunk was copied and stored (main.ts: Heartbeats.beatSoon)
  ca?: Buffer                // --ca-file: trusted for https:// source chunkservers (default: the system's CAs)
}

export class ChunkReplicator {
  readonly #deps: ReplicatorDeps
  readonly #agent: Agent
  readonly #waiting: ReplicateCommand[] = []          // bounded by replicationsQueuedPerServerMax
  readonly #active = new Set<string>()                // chunk handles being copied
  #running = 0
  #stopped = false
  #idle: Array<() => void> = []

  constructor (deps: ReplicatorDeps) {
    this.#deps = deps
    this.#agent = new Agent({ connectTimeout: 10_000, headersTimeout: dataIdleTimeoutMs, bodyTimeout: dataIdleTimeoutMs, keepAliveTimeout: 4_000, ...caConnectOptions(deps.ca) })
  }

  get activeCount (): number { return this.#running }
  get queuedCount (): number { return this.#waiting.length }

  // Takes a command from a heartbeat reply. A repeat of one already queued or running, or one past the queue
  // bound, is dropped: the master plans the copy again after its in-flight timeout.
  enqueue (command: ReplicateCommand): void {
    if (this.#stopped || this.#active.has(command.chunkHandle) || this.#waiting.some((c) => c.chunkHandle === command.chunkHandle)) return
    if (this.#waiting.length >= replicationsQueuedPerServerMax) {
      this.#deps.log.warn({ chunkHandle: command.chunkHandle }, 'replicate command dropped: queue full')
      return
    }
    this.#waiting.push(command)
    this.#pump()
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#waiting.length = 0
    while (this.#running > 0) await new Promise<void>((resolve) => this.#idle.push(resolve))
    await this.#agent.close().catch(() => {})
  }

  #pump (): void {
    while (!this.#stopped && this.#running < replicationsInFlightPerServerMax && this.#waiting.length > 0) {
      const command = this.#waiting.shift() as ReplicateCommand
      this.#running++
      this.#active.add(command.chunkHandle)
      void this.#copy(command).finally(() => {
        this.#running--
        this.#active.delete(command.chunkHandle)
        if (this.#running === 0) for (const wake of this.#idle.splice(0)) wake()
        this.#pump()
      })
    }
  }

  async #copy (command: ReplicateCommand): Promise<void> {
    const { store, log } = this.#deps
    const { chunkHandle, version } = command
    const stored = store.get(chunkHandle)
    if (stored !== undefined && stored.version > version) return
    if (stored !== undefined && stored.version === version) {
      const corrupt = store.corruptChunks().some((c) => c.chunkHandle === chunkHandle && c.version === version)
      if (!corrupt && stored.lengthBytes === command.lengthBytes && (stored.crc32 === undefined || stored.crc32 === command.crc32)) {
        // A good copy is here, but the master has no row for it (or it would not ask): report it the way a
        // finished copy is reported, or the master plans this copy again every in-flight timeout.
        store.announce(chunkHandle, version)
        log.info({ chunkHandle, version, lengthBytes: stored.lengthBytes }, 'replicate command for a copy held here; reported again')
        this.#deps.onCopied?.()
        return
      }
      // A copy that failed its checksum, or is not the length or CRC the master committed, is replaced.
      // A failing disk (EIO, EPERM, EROFS) can refuse the unlink: this copy fails like any other, logged and
      // not reported, and the master plans it again after its in-flight timeout. The index entry is gone
      // already (store.delete), so the file left is the orphan a crash would leave: indexed again at the next
      // start, where a read or the scrubber meets its bad block again.
      try {
        await store.delete(chunkHandle, version)
      } catch (err) {
        log.error({ chunkHandle, version, code: (err as { code?: string }).code, err: (err as Error).message }, 'corrupt replica not deleted; copy abandoned')
        return
      }
    }
    const startedMs = Date.now()
    for (const source of command.sources) {
      try {
        await this.#copyFrom(source, command)
        log.info({ chunkHandle, version, source: source.url, lengthBytes: command.lengthBytes, durationMs: Date.now() - startedMs }, 'chunk replicated from a peer')
        this.#deps.onCopied?.()
        return
      } catch (err) {
        log.warn({ chunkHandle, version, source: source.url, code: isGranaryError(err) ? err.code : (err as { code?: string }).code, err: (err as Error).message }, 'replication source failed')
        if (isGranaryError(err) && (err.code === 'GRN_CHUNK_MISMATCH' || err.code === 'GRN_STALE_VERSION' || err.code === 'GRN_DISK_FULL')) return
      }
    }
  }

  // One attempt from one source; the temp file is removed on any failure.
  async #copyFrom (source: ChunkserverAddress, command: ReplicateCommand): Promise<void> {
    const { store, syncEveryBytes } = this.#deps
    const { chunkHandle, version, lengthBytes } = command
    const slot = await store.beginWrite(chunkHandle, version, lengthBytes)
    let writer: ChunkWriter | null = null
    try {
      writer = ChunkWriter.start(slot.tempPath, syncEveryBytes, lengthBytes)   // opens while the GET goes out
      const res = await request(`${source.url}/chunks/${chunkHandle}?version=${version}`, {
        method: 'GET', dispatcher: this.#agent, headers: { [tokenHeader]: command.token }
      })
      if (res.statusCode !== 200) {
        const body = await res.body.text().catch(() => '')
        throw new GranaryError('GRN_UNAVAILABLE', [source.url, `HTTP ${res.statusCode} ${body.slice(0, 200)}`])
      }
      const sums = new BlockCrcs()
      let receivedBytes = 0
      for await (const piece of res.body) {
        const buf = piece as Buffer
        receivedBytes += buf.length
        if (receivedBytes > lengthBytes) throw new GranaryError('GRN_INTEGRITY', [chunkHandle, `source sent more than ${lengthBytes} bytes`])
        writer.push(buf)
        sums.update(buf)
        if (writer.queuedBytes > diskQueueBytesMax) await drained(writer)
        if (writer.error !== null) throw writer.error
      }
      const { blockCrcs, chunkCrc32 } = sums.finish()
      if (receivedBytes !== lengthBytes) throw new GranaryError('GRN_INTEGRITY', [chunkHandle, `got ${receivedBytes} of ${lengthBytes} bytes`])
      if (chunkCrc32 !== command.crc32) throw new GranaryError('GRN_INTEGRITY', [chunkHandle, `CRC ${chunkCrc32} differs from the committed ${command.crc32}`])
      await writer.finish(encodeTrailer(blockCrcs, lengthBytes, chunkCrc32), lengthBytes, store.chunkPathOf(chunkHandle, version))
      writer = null
      await store.commit({ chunkHandle, version, lengthBytes, crc32: chunkCrc32 })
    } finally {
      await writer?.abort().catch(() => {})
      slot.release()
    }
  }
}

function drained (writer: ChunkWriter): Promise<void> {
  return new Promise((resolve) => {
    writer.drainBelowBytes = diskQueueBytesMax
    writer.onDrain = () => { writer.onDrain = null; resolve() }
    writer.onError = () => { writer.onError = null; resolve() }
    if (writer.queuedBytes <= diskQueueBytesMax || writer.error !== null) resolve()
  })
}
