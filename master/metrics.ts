// The master's and the shadow's metrics (shared/metrics.ts serves them). Two kinds:
// - events, counted as they happen: group-commit batches (size, transaction and COMMIT time) and the failovers
//   this process won (kind, measured duration);
// - state, read when Prometheus scrapes (collect()): role, term, oplog seq, commit queue depth, lease, in-sync
//   set, shadows and their lag, chunkservers, re-replication and corrupt replicas. Nothing on the request path.
// One MasterMetrics per process: a shadow that re-bootstraps opens a new node and bind()s the same metrics to
// it, so counters survive. Label values are bounded by the cluster: a server id per registered chunkserver,
// a shadow id per shadow the master tracks.
import { Counter, Gauge, Histogram } from 'prom-client'
import { ServerMetrics } from '../shared/metrics.js'
import { groupCommitOpsMax } from '../shared/limits.js'
import type { FailoverEvent } from '../shared/protocol.js'
import type { CommitQueue } from './commit-queue.js'
import type { Db } from './db.js'
import type { InSyncSet } from './isr.js'
import type { MasterLease } from './lease.js'
import type { Registry } from './registry.js'
import type { Replicator } from './replicator.js'
import type { SafeMode } from './safe-mode.js'
import type { Follower } from './shadow.js'
import type { ShadowTracker } from './shadow-tracker.js'

export interface MasterMetricSources {
  db: Db
  queue: CommitQueue
  lease: MasterLease
  isr: InSyncSet
  registry: Registry
  shadows: ShadowTracker
  replicator: Replicator
  safeMode: SafeMode
  follower: Follower | null
  now: () => number
}

// Batch sizes: powers of two up to the largest batch.
const batchOpsBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, groupCommitOpsMax]
const commitSecondsBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
const failoverSecondsBuckets = [0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60]
const roles = ['master', 'shadow', 'deposed'] as const

export class MasterMetrics {
  readonly server = new ServerMetrics()
  #sources: MasterMetricSources | null = null
  readonly #batchOps: Histogram
  readonly #transactionSeconds: Histogram
  readonly #commitSeconds: Histogram
  readonly #failovers: Counter<'kind'>
  readonly #failoverSeconds: Histogram<'kind'>

  constructor () {
    const registers = [this.server.registry]
    const self = this
    const gauge = (name: string, help: string, read: (s: MasterMetricSources) => number | null): void => {
      // eslint-disable-next-line no-new
      new Gauge({
        name, help, registers,
        collect () {
          const s = self.#sources
          const value = s === null ? null : read(s)
          this.set(value ?? Number.NaN)   // NaN: unknown, or not kept by this role (a shadow has no lease)
        }
      })
    }
    const counter = (name: string, help: string, read: (s: MasterMetricSources) => number): void => {
      // eslint-disable-next-line no-new
      new Counter({
        name, help, registers,
        collect () {
          this.reset()
          if (self.#sources !== null) this.inc(read(self.#sources))
        }
      })
    }
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'granary_master_role', help: 'This process\'s role: 1 on the current one of master, shadow, deposed', labelNames: ['role'], registers,
      collect () {
        const mode = self.#sources?.queue.mode
        for (const role of roles) this.set({ role }, role === mode ? 1 : 0)
      }
    })
    gauge('granary_master_term', 'The master term this process is in', (s) => s.queue.term)
    gauge('granary_master_oplog_seq', 'The last oplog seq committed (a master) or applied (a shadow)', (s) => s.queue.seq)
    gauge('granary_master_commit_queue_depth', 'Mutations waiting for the next group commit', (s) => s.queue.queuedCount)
    gauge('granary_master_safe_mode', '1 while in safe mode (nothing deleted or copied until the chunkservers reported)', (s) => s.safeMode.active(s.now()) ? 1 : 0)
    this.#batchOps = new Histogram({ name: 'granary_master_commit_batch_ops', help: 'Mutations per group commit (one transaction, one fsync)', buckets: batchOpsBuckets, registers })
    this.#transactionSeconds = new Histogram({ name: 'granary_master_commit_transaction_seconds', help: 'A group commit\'s whole transaction: applying its ops, then COMMIT', buckets: commitSecondsBuckets, registers })
    this.#commitSeconds = new Histogram({ name: 'granary_master_commit_fsync_seconds', help: 'A group commit\'s COMMIT alone: the WAL write and its fsync', buckets: commitSecondsBuckets, registers })
    // lease and in-sync set (a master; absent on a shadow)
    const asMaster = (read: (s: MasterMetricSources) => number | null) => (s: MasterMetricSources): number | null => s.queue.mode === 'master' ? read(s) : null
    gauge('granary_master_lease_held', '1 while this master holds its lease from a chunkserver majority and a majority echoed its term', asMaster((s) => s.lease.held() && s.lease.heardByMajority(s.queue.term) ? 1 : 0))
    gauge('granary_master_lease_remaining_seconds', 'Until the lease lapses unless renewed', asMaster((s) => Number.isFinite(s.lease.endsAtMs) ? Math.max(0, s.lease.endsAtMs - s.lease.now()) / 1000 : 0))
    gauge('granary_master_lease_voters', 'Chunkservers that vote (the lease needs a majority of them)', asMaster((s) => s.lease.voterCount))
    gauge('granary_master_isr_shadows', 'Shadows in the in-sync set (every acknowledgement waits for them)', asMaster((s) => s.isr.members.length))
    gauge('granary_master_isr_epoch', 'The in-sync set\'s epoch as announced to the chunkservers', asMaster((s) => s.isr.announced().epoch))
    gauge('granary_master_shadows', 'Shadows that polled this master lately', asMaster((s) => s.shadows.count))
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'granary_master_shadow_lag_records', help: 'Oplog records a shadow has not applied, as of its last poll', labelNames: ['shadow_id'], registers,
      collect () { self.#shadowLag(this, 'records') }
    })
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'granary_master_shadow_lag_seconds', help: 'Age of the oldest record a shadow lacks (0 when caught up)', labelNames: ['shadow_id'], registers,
      collect () { self.#shadowLag(this, 'seconds') }
    })
    // a shadow's view of its master
    const following = (read: (f: Follower, s: MasterMetricSources) => number | null) => (s: MasterMetricSources): number | null =>
      s.queue.mode === 'shadow' && s.follower !== null ? read(s.follower, s) : null
    gauge('granary_shadow_lag_records', 'Records the master had at the last poll that this shadow has not applied', following((f) => f.lagRecords()))
    gauge('granary_shadow_master_contact_age_seconds', 'Since this shadow last heard from its master', following((f, s) => {
      const ageMs = f.report(s.now()).lastContactAgeMs
      return ageMs === null ? null : ageMs / 1000
    }))
    gauge('granary_shadow_in_sync', '1 when the master\'s last reply named this shadow in sync (it may stand for election)', following((f) => f.inSync ? 1 : 0))
    // chunkservers as this process sees them
    // eslint-disable-next-line no-new
    new Gauge({
      name: 'granary_chunkservers', help: 'Chunkservers this process heard from since it started, alive or dead', labelNames: ['state'], registers,
      collect () {
        const s = self.#sources
        if (s === null) return
        const nowMs = s.now()
        const all = s.registry.all()
        const alive = all.filter((server) => s.registry.isAlive(server.serverId, nowMs)).length
        this.set({ state: 'alive' }, alive)
        this.set({ state: 'dead' }, all.length - alive)
      }
    })
    const perServer = (name: string, help: string, read: (server: ReturnType<Registry['all']>[number], nowMs: number) => number): void => {
      // eslint-disable-next-line no-new
      new Gauge({
        name, help, labelNames: ['server_id'], registers,
        collect () {
          this.reset()
          const s = self.#sources
          if (s === null) return
          const nowMs = s.now()
          for (const server of s.registry.all()) this.set({ server_id: server.serverId }, read(server, nowMs))
        }
      })
    }
    perServer('granary_chunkserver_free_bytes_reported', 'Free bytes a chunkserver reported in its last heartbeat', (server) => server.freeBytes)
    perServer('granary_chunkserver_capacity_bytes_reported', 'Capacity a chunkserver reported in its last heartbeat', (server) => server.capacityBytes)
    perServer('granary_chunkserver_heartbeat_age_seconds', 'Since a chunkserver\'s last heartbeat reached this process', (server, nowMs) => Math.max(0, nowMs - server.lastHeartbeatMs) / 1000)
    // re-replication (a master) and corrupt replicas
    gauge('granary_master_replication_in_flight', 'Chunk copies ordered and not yet reported done', asMaster((s) => s.replicator.stats().inFlight))
    gauge('granary_master_replication_commands_queued', 'Commands waiting to ride on a chunkserver\'s next heartbeat reply', asMaster((s) =>
      s.registry.all().reduce((sum, server) => sum + s.registry.queuedCommandCount(server.serverId), 0)))
    gauge('granary_master_replication_needed_chunks', 'Chunks the last re-replication scan found with too few or too many live replicas (capped by its scan limit)', asMaster((s) => s.replicator.neededCount))
    counter('granary_master_replicated_total', 'Chunk copies that completed', (s) => s.replicator.stats().replicated)
    counter('granary_master_replicas_trimmed_total', 'Extra replicas deleted', (s) => s.replicator.stats().trimmed)
    gauge('granary_master_corrupt_replicas', 'Replicas the live chunkservers\' last heartbeats reported failing a checksum', (s) => {
      const nowMs = s.now()
      return s.registry.all().reduce((sum, server) => sum + (s.registry.isAlive(server.serverId, nowMs) ? server.corruptCount : 0), 0)
    })
    // failovers this process won
    this.#failovers = new Counter({ name: 'granary_failovers_total', help: 'Failovers this process won as a shadow, by kind', labelNames: ['kind'], registers })
    this.#failoverSeconds = new Histogram({
      name: 'granary_failover_duration_seconds', help: 'A won failover\'s measured time without a master: the old one\'s silence (elections) plus the election', labelNames: ['kind'], buckets: failoverSecondsBuckets, registers
    })
  }

  // The node whose state the gauges read (a shadow's re-bootstrap binds the new one).
  bind (sources: MasterMetricSources): void { this.#sources = sources }

  observeBatch (opCount: number, transactionSeconds: number, commitSeconds: number): void {
    this.#batchOps.observe(opCount)
    this.#transactionSeconds.observe(transactionSeconds)
    this.#commitSeconds.observe(commitSeconds)
  }

  observeFailover (event: FailoverEvent): void {
    this.#failovers.inc({ kind: event.kind })
    this.#failoverSeconds.observe({ kind: event.kind }, event.totalMs / 1000)
  }

  #shadowLag (gauge: Gauge<'shadow_id'>, unit: 'records' | 'seconds'): void {
    gauge.reset()
    const s = this.#sources
    if (s === null || s.queue.mode !== 'master') return
    for (const shadow of s.shadows.report(s.db, s.queue.seq, s.now())) {
      if (unit === 'records') gauge.set({ shadow_id: shadow.shadowId }, shadow.lagRecords)
      else if (shadow.lagMs !== null) gauge.set({ shadow_id: shadow.shadowId }, shadow.lagMs / 1000)
    }
  }
}
