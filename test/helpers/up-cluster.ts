// A `granary up` cluster in the test's own folder, stopped BEFORE tap removes that folder. Whether tap removes a
// test's folder (t.testdir()) before or after that test's teardowns depends on which came first: @tapjs/after hooks
// the end of a test at its first teardown, testdir() at its call, and the hook installed later does its own work
// last. So in a test that made its folder before its first teardown, the folder went while the cluster still ran:
// a member writing into it (a chunkserver recording its vote as the shadow took over from a master whose files were
// gone) failed the removal with ENOTEMPTY, the rejection skipped the teardown that would have stopped the cluster,
// and the test hung until tap's timeout.
import type { Test } from 'tap'
import { UpCluster, type UpOptions } from '../../client/cluster/chaos-cluster.js'

export function upClusterIn (t: Test, options: Omit<UpOptions, 'dataDir'>): { cluster: UpCluster, dataDir: string } {
  let cluster: UpCluster | undefined
  t.teardown(async () => await cluster?.stop())   // first: every teardown registered from here on runs before the removal
  const dataDir = t.testdir()
  cluster = new UpCluster({ ...options, dataDir })
  return { cluster, dataDir }
}
