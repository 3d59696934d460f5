// Writer leases: one writer per file, like HDFS. create() takes the lease; allocate, commit and renew push its
// expiry to now + leaseTtlMs (the new expiry is decided by the route and carried in the op). The tick finds
// expired leases with an indexed query, at most expiredLeasesPerTickMax per tick, and submits expireLease.
//
// An abandoned or expired upload is removed, never made visible: its unlinked 'writing' inode, its chunk
// rows and its replica rows are deleted in one transaction, and the replica holders are sent delete
// commands. Only complete() ever links a file under its name.
import type { Logger } from 'pino'
import type { InodeId } from '../shared/ids.js'
import type { CommitQueue } from './commit-queue.js'
import { sql, type Db } from './db.js'

export function expiredLeases (db: Db, nowMs: number, countMax: number): InodeId[] {
  return sql(db, "SELECT id FROM inodes WHERE state = 'writing' AND leaseExpiresAtMs <= ? ORDER BY leaseExpiresAtMs LIMIT ?")
    .pluck().all(nowMs, countMax) as InodeId[]
}

// Returns how many uploads were dropped. A lease renewed between the query and the commit survives:
// apply() checks the expiry again against the same nowMs.
export async function expireLeases (db: Db, queue: CommitQueue, nowMs: number, countMax: number, log: Logger): Promise<number> {
  const inodeIds = expiredLeases(db, nowMs, countMax)
  const outcomes = await Promise.allSettled(inodeIds.map((inodeId) => queue.submit({ type: 'expireLease', inodeId, nowMs })))
  let expiredCount = 0
  for (const [i, outcome] of outcomes.entries()) {
    if (outcome.status === 'fulfilled' && outcome.value.expired) {
      expiredCount += 1
      log.info({ inodeId: inodeIds[i] }, 'write lease expired; unfinished (or unused reserved) file dropped')
    } else if (outcome.status === 'rejected') {
      log.warn({ inodeId: inodeIds[i], err: outcome.reason }, 'lease expiry failed')
    }
  }
  return expiredCount
}
