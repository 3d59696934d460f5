// A `granary up` cluster in the test's own folder, stopped BEFORE tap removes that folder. tap removes a test's
// folder (t.testdir()) after the teardowns registered before the testdir() call but before those registered
// after it (@tapjs/after hooks the end of a test at its first teardown). A cluster stopped by a later teardown
// was still running while its folder was removed: a member writing into it (a chunkserver recording its vote as
// the shadow took over from a master whose files were gone) failed the removal with ENOTEMPTY, the rejection
// skipped the teardown that would have stopped the cluster, and the test hung until tap's timeout.
import type { Test } from 'tap'
import { UpCluster, type UpOptions } from '../../client/cluster/chaos-cluster.js'

export function upClusterIn (t: Test, options: Omit<UpOptions, 'dataDir'>): { cluster: UpCluster, dataDir: string } {
  let cluster: UpCluster | undefined
  t.teardown(async () => await cluster?.stop())   // first: every teardown registered from here on runs before the removal
  const dataDir = t.testdir()
  cluster = new UpCluster({ ...options, dataDir })
  return { cluster, dataDir }
}
