// The numbers that are part of the design. Names end in Max/Min/Default; the relations between them are
// checked when this module loads (TigerBeetle's comptime blocks), so a bad edit fails at start-up, not in production.
import { assert } from './assert.js'

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

// Data
export const blockSizeBytes = 64 * KiB                 // checksum unit: one CRC32 per block on every replica
export const chunkSizeBytesDefault = 64 * MiB
export const chunkSizeBytesMin = blockSizeBytes         // tests use small chunks; a chunk is a whole number of blocks
export const chunkSizeBytesMax = 256 * MiB
export const chunkCountPerFileMax = 65_536
export const fileSizeBytesMax = chunkSizeBytesMax * chunkCountPerFileMax
export const replicationMin = 1
export const replicationMax = 8
export const replicationDefault = 3

// Namespace
export const pathLengthBytesMax = 4096
export const nameLengthBytesMax = 255
export const pathDepthMax = 256
export const fileAttrsBytesMax = 4 * KiB               // a file's attrs as JSON (the S3 gateway's 2 KiB of x-amz-meta-* plus its headers and ETag)
export const concatSourcesMax = 10_000                 // files one concat joins (S3's part count)
export const listPageSizeMax = 10_000
export const listPageSizeDefault = 1000
export const deleteEntriesPerOpMax = 100_000           // a recursive delete of more entries is refused; delete subtrees first
export const trashRetentionMsMax = 3650 * 24 * 60 * 60_000   // keeps (now - retention) a valid Date for checkpoint names
export const trashPurgeEntriesPerOpMax = 10_000        // entries one trash-purge op deletes (a bigger checkpoint takes several)
export const trashPurgeOpsPerTickMax = 10              // purge ops the master's tick submits per round
export const trashNameAttemptsMax = 100                // checkpoint-name variants tried when a trashed path is taken
export const trashCheckpointsSearchedMax = 100_000     // checkpoints restore looks through for a deleted path (newest first)

// Wire
export const jsonBodyBytesMax = 1 * MiB                // every JSON body; chunk bodies are raw and bounded by chunkSizeBytesMax
export const heartbeatBodyBytesMax = 64 * MiB          // a full chunk report: ~100 bytes per chunk, 500k chunks
export const leaseIdLengthMax = 64
export const requestIdLengthMax = 64
export const tokenLengthMax = 4096                     // a write token names its pipeline: up to replicationMax (server id, URL ≤ 256) pairs
export const wireIntegerMax = Number.MAX_SAFE_INTEGER  // any integer on the wire (ids, versions, terms, seqs, byte counts): past it a JS number
                                                       // loses precision, and 1e308 is an "integer" to JSON Schema
export const pipelineLengthMax = replicationMax
export const commandsPerHeartbeatMax = 1000
export const commandFollowUpBeatsMax = 100             // heartbeats in a row sent at once because the reply said moreCommands; then one interval's rest
export const reportedChunksPerHeartbeatMax = 500_000

// HTTP servers (every fastify server: master, shadow, chunkserver; shared/server-timeouts.ts). Node checks the request
// and headers timeouts every httpTimeoutCheckIntervalMs, so a connection is cut between a timeout and one interval later.
export const httpHeadersTimeoutMs = 10_000             // request line and headers (a few KiB), from the request's first byte
export const httpRequestTimeoutMs = 60_000             // a whole request to a master or shadow (JSON): the largest body, a 64 MiB full
                                                       // chunk report, fits at 9 Mbit/s; a client body (1 MiB) at 140 kbit/s
export const chunkRequestTimeoutMs = 20 * 60_000       // a whole request to a chunkserver: a 256 MiB chunk upload fits at 1.8 Mbit/s.
                                                       // An upload that stalls is cut sooner, by dataIdleTimeoutMs; this bounds one
                                                       // that trickles, which the idle timeout never sees
export const httpKeepAliveTimeoutMs = 5_000            // an idle keep-alive connection; undici clients read the server's Keep-Alive
                                                       // hint and close theirs first (chunkserver/main.ts sets its node Agent below it)
export const httpTimeoutCheckIntervalMs = 1_000        // node's connectionsCheckingInterval (its default, 30 s, would add up to 30 s)

// Master
export const groupCommitOpsMax = 1000                  // ops in one transaction (one fsync)
export const groupCommitQueueMax = 50_000              // queued mutations before new ones are refused
export const requestIdsKeptMax = 200_000               // idempotency table bound (oldest pruned first)
// Records kept for a lagging shadow; one further behind bootstraps from a snapshot instead. ~375 bytes each
// (measured, bench restart): 600k ≈ 225 MB, so a 1M-file namespace (~115 MB) with a full oplog stays under
// issue 13's 400 MB database (1M records made it ~500 MB).
export const oplogRecordsKeptMax = 600_000           // trimmed in bounded batches
export const oplogTrimBatchMax = 10_000
export const expiredLeasesPerTickMax = 100
export const chunkserversMax = 10_000                  // registry entries; heartbeats from more servers are refused
export const commandsQueuedPerServerMax = 100_000      // pending delete commands per chunkserver; past it, ask for a full report instead

// Re-replication and fsck (master/replication.ts, master/fsck.ts, chunkserver/replicator.ts, chunkserver/scrubber.ts)
export const replicationsPerTickMax = 32               // replicate or over-replication delete commands decided per master tick
export const replicationScanChunksMax = 10_000         // chunks needing work looked at per tick (fewest live replicas first)
export const replicationsInFlightPerServerMax = 2      // copies a chunkserver runs at once as their target. HDFS's default too; on 2
                                                       // cores 1, 2 and 4 copied equally fast, and a second stream covers one's fsync
export const replicationsAssignedPerServerMax = 12     // copies the master has handed a server (as source or target) and not yet seen
                                                       // reported: deeper than a target runs, so its next copy is already queued there
                                                       // when one ends instead of a heartbeat round trip later (all queued copies must
                                                       // still finish within replicationInFlightMsMax)
export const replicationInFlightMsMax = 60_000         // a copy not reported by then is given up and planned again
export const replicationsQueuedPerServerMax = 1000     // replicate commands a chunkserver holds waiting to run
export const fsckFilesMax = 100_000                    // files one fsck request examines (the reply says when truncated)
export const fsckProblemsMax = 10_000                  // chunks with problems listed in one fsck reply

// Shadows (master/shadow.ts follows, master/shadow-tracker.ts + routes-shadow.ts serve; oplog retention in oplog.ts)
export const shadowsMax = 16                           // shadows a master remembers; a poll from one more is refused
export const oplogRecordsKeptMin = 10_000              // always kept, so a restarted shadow resumes without a snapshot
export const oplogRecordAgeMsMax = 60 * 60_000         // older records go even if a shadow still needs them (it re-bootstraps); a shadow silent this long is forgotten
export const oplogRecordsPerPollMax = 10_000           // records in one /oplog reply
export const oplogPollBytesMax = 8 * MiB               // ... and their JSON (a reply always carries at least one record)
export const oplogPollWaitMsMax = 30_000               // a long poll waits at most this long for a commit
export const oplogPollersMax = 64                      // long polls parked at once; more are answered at once
export const snapshotsInFlightMax = 2                  // online backups streaming at once
export const lagSamplesKeptMax = 10_000                // a shadow's per-record lag samples (newest kept)

// Failover (shared/failover.ts: the master lease, the vote, the in-sync set)
export const clockRateErrorMax = 0.05                  // any process's monotonic clock runs within ±5% of real time (NTP-free
                                                       // hosts drift ~1e-4; 5% also covers a VM's stolen time)
export const leaseMsDefault = 1_000                    // a chunkserver's promise to its master; the master trusts a renewal
                                                       // masterLeaseMs(leaseMs) = 904 ms of it (see failover.ts)
export const leaseMsMin = 100
export const isrConfirmWaitMsMax = 1_000               // an ack waits this long for the in-sync shadows, then proposes dropping
                                                       // the silent ones (they leave once a chunkserver majority echoed it)
export const isrChangeWaitMsMax = 5_000                // an ack waits at most this long in all; then GRN_UNAVAILABLE (retryable)
export const isrMembersMax = 16                        // = shadowsMax: every shadow may be in sync
export const voteRoundMsMax = 500                      // a candidate's vote requests are answered within this or count as refused
export const electionBackoffMsMax = 500                // a candidate that lost waits a random 0..this before the next term
export const handOverDrainMsMax = 2_000                // a planned hand-over waits this long for queued mutations to be acked
// A shadow that has not heard from its master for longer than this refuses reads with GRN_STALE (retryable; a
// caller may ask for stale reads). Longer than an automatic promotion takes (about a lease and a vote round), so
// a frozen or dead master is replaced before its shadow stops serving; short enough that a cut-off shadow the
// master dropped from its in-sync set serves at most this much staleness.
export const shadowReadStaleMsMax = 10_000

// Chunkserver
export const forwardQueueBytesMax = 1 * MiB            // pause the upstream source when the next hop has more than this queued
export const diskQueueBytesMax = 8 * MiB               // ... or when the disk has more than this queued (absorbs thread-pool stalls)
export const syncEveryBytesDefault = 8 * MiB           // fdatasync while streaming so the final fsync is short
export const readBufferBytes = 1 * MiB                 // blocks read, verified and sent per step
export const corruptChunksKeptMax = 10_000             // chunks remembered as failing a checksum (oldest forgotten first)
export const deletesInFlightMax = 8                    // chunk files unlinked at once while running delete commands (measured: 1 → 8 is ~4× faster)
export const dataIdleTimeoutMs = 30_000                // a data connection (client or pipeline hop) silent this long is cut

// Client
export const chunksInFlightMax = 2                     // chunks a writer streams at once; memory ≈ chunkSize × this
export const metadataCacheEntriesMax = 1000
export const metadataCacheTtlMs = 30_000
export const connectionsPerOriginMax = 16
export const retryAttemptsMax = 50
export const readFileRestartsMax = 5                   // readFile of a file replaced mid-read starts again at most this often
export const readdirEntriesMax = 1_000_000             // readdir() gathers at most this many entries (page by page)
// Hedged reads: a metadata read the first URL has not answered within the hedge delay (a multiple of its recent
// latency, within these bounds) is also sent to the next URL; the first good answer wins.
export const hedgeDelayMsMin = 20
export const hedgeDelayMsMax = 100
export const hedgeAbandonMs = 1_000                    // a pass whose other URLs failed gives up a request out this long
export const hedgeLatencyFactor = 4                    // hedge after this many times the recent (smoothed) latency
export const chunkHedgeDelayMs = 150                   // a replica that has not answered a chunk GET this soon, and whose server has sent this client nothing since it was asked, is raced by the next
export const chunkHedgeWaitMsMax = 1_000               // ... and one whose server is busy answering this client's other reads, this late (a wait there is the client's own pool queue: a 150 ms hedge regardless fired on 48 readers sharing 16 sockets)
export const chunkServerHungMs = 5_000                 // a chunkserver raced as hung is asked last, after the other replicas, for this long (or until it sends again)
export const chunkServersHeardMax = 4_096              // chunkservers whose last byte to this client is remembered (for the hedge); past it the memory starts over
export const replicaStallMs = 1_000                    // a chunk body silent this long (while waited on) moves to the next replica
export const membersRefreshMs = 30_000                 // a client asks for the cluster's metadata servers at most this often
// Reserved files (a small file in one master call, protocol.ts reservePath)
export const reservationsPerCallMax = 32                // files one reserve call creates ahead
export const reservationsPooledMax = 64                 // unused reservations a client holds per replication and chunk size
// Metadata batches (client/batch.ts, POST /fs/batch): calls to one server that queue up behind the ones already
// out go together, up to these bounds.
export const batchOpsMax = 64                          // calls in one batch
export const batchBodyBytesMax = 256 * KiB             // a batch's request body (its calls' JSON); within jsonBodyBytesMax
export const batchReplyBytesMax = 4 * MiB              // read replies a batch carries; a read past it is sent back to be asked alone
export const batchesInFlightMax = 2                    // batches (or lone calls) out per server and kind (reads, mutations): one being
                                                       // answered while the next is handled, so client and master CPU overlap
export const batchQueuedOpsMax = 100_000               // calls waiting for a batch per server and kind; past it a call goes alone
export const jsonReplyBytesMax = 64 * MiB             // a JSON reply the client will read (list pages, reports)
export const tarFileBytesBufferedMax = 1 * MiB         // tar pack/unpack: files up to this size move whole, several at once ...
export const tarFilesInFlightMax = 16                  // ... at most this many (memory ≈ the product); larger files stream one at a time

assert(chunkSizeBytesDefault % blockSizeBytes === 0, 'a chunk is a whole number of blocks')
assert(chunkSizeBytesMax % blockSizeBytes === 0, 'the chunk limit is a whole number of blocks')
assert(chunkSizeBytesMin <= chunkSizeBytesDefault && chunkSizeBytesDefault <= chunkSizeBytesMax, 'default chunk size within bounds')
assert(Number.isSafeInteger(fileSizeBytesMax), 'file sizes fit in a JS number')
assert(replicationMin <= replicationDefault && replicationDefault <= replicationMax, 'default replication within bounds')
assert(nameLengthBytesMax < pathLengthBytesMax, 'a name fits in a path')
assert(listPageSizeDefault <= listPageSizeMax, 'default page within max')
assert(groupCommitOpsMax <= groupCommitQueueMax, 'a group fits in the queue')
assert(readBufferBytes % blockSizeBytes === 0, 'reads step in whole blocks')
assert(syncEveryBytesDefault % blockSizeBytes === 0, 'sync points on block boundaries')
assert(commandsPerHeartbeatMax <= commandsQueuedPerServerMax, 'one reply drains at most the queued commands')
assert(oplogRecordsKeptMin >= 1 && oplogRecordsKeptMin <= oplogRecordsKeptMax, 'the newest record is always kept, within the count bound')
assert(replicationsInFlightPerServerMax >= 1 && replicationsPerTickMax <= replicationScanChunksMax, 'replication makes progress within its scan')
assert(replicationsAssignedPerServerMax >= replicationsInFlightPerServerMax, 'a server is handed at least as many copies as it runs at once')
assert(oplogPollersMax >= shadowsMax, 'every remembered shadow can park a long poll')
assert(isrMembersMax >= shadowsMax, 'every shadow may be in sync')
assert(batchBodyBytesMax <= jsonBodyBytesMax && batchReplyBytesMax <= jsonReplyBytesMax, 'a batch fits where one call fits')
assert(hedgeDelayMsMin <= hedgeDelayMsMax && hedgeDelayMsMax * 3 <= 300, 'a read raced past a frozen server still answers within 300 ms')
assert(shadowReadStaleMsMax > isrChangeWaitMsMax, 'a shadow serves reads for longer than a silent one takes to leave the in-sync set')
assert(isrConfirmWaitMsMax < isrChangeWaitMsMax, 'a silent shadow is proposed out before the ack gives up')
assert(clockRateErrorMax > 0 && clockRateErrorMax < 0.5, 'a lease survives the clock bound')
assert(httpHeadersTimeoutMs <= httpRequestTimeoutMs && httpRequestTimeoutMs <= chunkRequestTimeoutMs, 'headers come within the request, a JSON request within a chunk upload')
assert(heartbeatBodyBytesMax * 8 <= 10e6 * (httpRequestTimeoutMs / 1000), 'a full chunk report fits in the request timeout at 10 Mbit/s')
assert(chunkSizeBytesMax * 8 <= 2e6 * (chunkRequestTimeoutMs / 1000), 'a whole chunk fits in the chunkserver request timeout at 2 Mbit/s')
assert(httpTimeoutCheckIntervalMs < httpHeadersTimeoutMs, 'the check interval is small next to the timeouts it enforces')

// Admin access keys the master tells chunkservers about (heartbeat replies' operatorKeys, for their /metrics).
export const operatorKeysMax = 64
