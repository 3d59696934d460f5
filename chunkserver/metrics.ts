// The chunkserver's metrics (shared/metrics.ts serves them): bytes in and out of its HTTP server (sockets,
// headers included: client writes, pipeline forwards it receives, reads and copies it serves), chunk bytes
// committed to disk and served by reads, the store (chunks, space, writes in progress, term), corrupt replicas
// found, re-replication queue, scrubber progress. Counted where they happen by the store and the routes; read
// when Prometheus scrapes. Nothing is added to a request's path but one addition per chunk read.
import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import { Counter, Gauge } from 'prom-client'
import { ServerMetrics } from '../shared/metrics.js'
import type { ChunkStore } from './store.js'
import type { ChunkReplicator } from './replicator.js'
import type { Scrubber } from './scrubber.js'

export interface ChunkserverMetricSources {
  store: ChunkStore
  replicator?: ChunkReplicator
  scrubber?: Scrubber
}

export class ChunkserverMetrics {
  readonly server = new ServerMetrics()
  #sources: ChunkserverMetricSources | null = null
  #readBytes = 0
  // Socket bytes: closed sockets' totals, plus the open ones' (bounded by the server's connections).
  readonly #sockets = new Set<Socket>()
  #closedReceivedBytes = 0
  #closedSentBytes = 0

  constructor () {
    const registers = [this.server.registry]
    const self = this
    const counter = (name: string, help: string, read: () => number | null): void => {
      // eslint-disable-next-line no-new
      new Counter({ name, help, registers, collect () { this.reset(); this.inc(read() ?? 0) } })
    }
    const gauge = (name: string, help: string, read: (s: ChunkserverMetricSources) => number | Promise<number> | undefined): void => {
      // eslint-disable-next-line no-new
      new Gauge({
        name, help, registers,
        async collect () {
          const value = self.#sources === null ? undefined : await read(self.#sources)
          this.set(value ?? Number.NaN)
        }
      })
    }
    counter('granary_chunkserver_received_bytes_total', 'Bytes received by this chunkserver\'s HTTP server (chunk writes, forwards, copies asked; headers included)', () => {
      let bytes = this.#closedReceivedBytes
      for (const socket of this.#sockets) bytes += socket.bytesRead
      return bytes
    })
    counter('granary_chunkserver_sent_bytes_total', 'Bytes sent by this chunkserver\'s HTTP server (reads, copies served, replies; headers included)', () => {
      let bytes = this.#closedSentBytes
      for (const socket of this.#sockets) bytes += socket.bytesWritten
      return bytes
    })
    counter('granary_chunkserver_chunk_written_bytes_total', 'Chunk bytes committed to disk here (pipeline writes and re-replication copies)', () => this.#sources?.store.committedBytes ?? null)
    counter('granary_chunkserver_chunk_read_bytes_total', 'Chunk bytes served by reads (clients, and other chunkservers copying from here)', () => this.#readBytes)
    counter('granary_chunkserver_corrupt_replicas_found_total', 'Replicas found failing a checksum (by a read or the scrubber) since start', () => this.#sources?.store.corruptFoundCount ?? null)
    gauge('granary_chunkserver_corrupt_replicas', 'Replicas reported corrupt to the masters until deleted or replaced', (s) => s.store.corruptChunks().length)
    gauge('granary_chunkserver_chunks', 'Chunks stored', (s) => s.store.chunkCount)
    gauge('granary_chunkserver_used_bytes', 'Bytes the stored chunk files take', (s) => s.store.usedBytes)
    gauge('granary_chunkserver_free_bytes', 'Free bytes for chunks (capacity or disk, whichever is less)', async (s) => await s.store.freeBytes())
    gauge('granary_chunkserver_capacity_bytes', 'Capacity for chunks', async (s) => await s.store.capacityBytes())
    gauge('granary_chunkserver_active_writes', 'Chunk writes in progress', (s) => s.store.activeWrites)
    gauge('granary_chunkserver_term', 'The newest master term this chunkserver has seen', (s) => s.store.term)
    gauge('granary_chunkserver_replication_queued', 'Copies ordered by the master and waiting to start', (s) => s.replicator?.queuedCount)
    gauge('granary_chunkserver_replication_active', 'Copies under way', (s) => s.replicator?.activeCount)
    counter('granary_chunkserver_scrubbed_bytes_total', 'Bytes the scrubber verified', () => this.#sources?.scrubber?.stats.scrubbedBytes ?? null)
    counter('granary_chunkserver_scrub_passes_total', 'Scrubber passes over every chunk completed', () => this.#sources?.scrubber?.stats.passes ?? null)
  }

  bind (sources: ChunkserverMetricSources): void { this.#sources = { ...this.#sources, ...sources } }

  // Counts the HTTP server's socket bytes (call once, on the server the routes are served from).
  watch (server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket)
      socket.once('close', () => {
        this.#sockets.delete(socket)
        this.#closedReceivedBytes += socket.bytesRead
        this.#closedSentBytes += socket.bytesWritten
      })
    })
  }

  chunkBytesRead (bytes: number): void { this.#readBytes += bytes }
}
