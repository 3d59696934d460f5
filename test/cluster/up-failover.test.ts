// granary up follows failovers (issue 10, item 5): after a hand-over the supervisor names the promoted shadow as
// master in cluster.json and restarts the deposed master as its shadow; the promoted shadow SIGKILLed comes back
// (as master, or another member takes over) and a mkdir succeeds inside the client's budget; and stopping the
// cluster and starting it again on the same folder brings the same roles back, with everything written.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { signedRequest as request } from '../../testing/cluster.js'
import { UpCluster, type ClusterMember } from '../../client/cluster/chaos-cluster.js'
import { upClusterIn } from '../helpers/up-cluster.js'
import { readCredentialsFile } from '../../client/credentials.js'
import { connect } from '../../client/index.js'
import type * as p from '../../shared/protocol.js'

function members (dataDir: string): ClusterMember[] {
  return (JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as { processes: ClusterMember[] }).processes
}

async function until (predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadlineMs = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadlineMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

async function role (url: string): Promise<string | undefined> {
  try {
    const res = await request(`${url}/healthz`, { headersTimeout: 1000, bodyTimeout: 1000 })
    const body = await res.body.json() as p.HealthReply
    return body.fencedByTerm === undefined ? body.role : 'deposed'
  } catch {
    return undefined
  }
}

t.test('granary up follows a failover, restarts members in their current roles, and brings them back after a stop', async (t) => {
  const { cluster, dataDir } = upClusterIn(t, { chunkservers: 3, shadows: 1, heartbeatIntervalMs: 200, restartDelayMs: 0, startTimeoutMs: 60_000 })
  await cluster.start()
  const meta = (): ClusterMember[] => members(dataDir).filter((m) => m.role !== 'chunkserver')
  const urls = meta().map((m) => m.url)
  const fs = connect({ masters: urls, deadlineMs: 15_000, keepAliveTimeoutMs: 10, credentials: cluster.credentialsFile })
  t.teardown(() => fs.close())
  await fs.mkdir('/before')
  const shadowUrl = meta().find((m) => m.name === 'shadow0')?.url as string
  await until(async () => ((await (await request(`${meta()[0]?.url as string}/cluster/report`, {}, readCredentialsFile(cluster.credentialsFile))).body.json() as p.ClusterReport).isr?.length ?? 0) === 1, 20_000, 'the shadow in sync')

  // A planned hand-over: shadow0 becomes master; the supervisor sees it and restarts the old master as its shadow.
  const promoted = await request(`${shadowUrl}/admin/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }, readCredentialsFile(cluster.credentialsFile))
  t.equal(promoted.statusCode, 200, JSON.stringify(await promoted.body.json()))
  await until(() => meta().find((m) => m.name === 'shadow0')?.role === 'master' && meta().find((m) => m.name === 'master')?.role === 'shadow', 20_000, 'cluster.json: shadow0 master, master its shadow')
  const oldMasterUrl = meta().find((m) => m.name === 'master')?.url as string
  await until(async () => (await role(oldMasterUrl)) === 'shadow', 30_000, 'the old master running as a shadow')
  await fs.mkdir('/after-hand-over')

  // The promoted shadow SIGKILLed: the supervisor restarts it (as master, its role now) or the other member
  // takes over; either way exactly one master answers and a mkdir succeeds within the client's deadline.
  const victim = meta().find((m) => m.name === 'shadow0') as ClusterMember
  process.kill(victim.pid, 'SIGKILL')
  await fs.mkdir('/after-kill')
  await until(async () => {
    const roles = await Promise.all(urls.map(async (url) => await role(url)))
    return roles.filter((r) => r === 'master').length === 1 && roles.filter((r) => r === 'shadow').length === 1
  }, 30_000, 'one master and one shadow again')
  await until(() => meta().every((m) => m.state === 'running'), 30_000, 'every member running')
    .catch((err: Error) => { throw new Error(`${err.message}: ${JSON.stringify(meta().map((m) => [m.name, m.role, m.state, m.lastExit]))}`) })
  const masterName = meta().find((m) => m.role === 'master')?.name as string
  t.ok(masterName === 'shadow0' || masterName === 'master', `cluster.json names ${masterName} as master`)

  // Ctrl-C, then start again on the same folder: the same member is master.
  await cluster.stop()
  const again = new UpCluster({ dataDir, chunkservers: 3, shadows: 1, heartbeatIntervalMs: 200, restartDelayMs: 0, startTimeoutMs: 60_000 })
  t.teardown(async () => await again.stop())
  await again.start()
  t.equal(meta().find((m) => m.role === 'master')?.name, masterName, 'the same member is master after a restart of the cluster')
  const fs2 = connect({ masters: meta().map((m) => m.url), deadlineMs: 15_000, keepAliveTimeoutMs: 10, credentials: cluster.credentialsFile })
  t.teardown(() => fs2.close())
  await fs2.mkdir('/after-restart')
  for (const dir of ['/before', '/after-hand-over', '/after-kill', '/after-restart']) t.match(await fs2.stat(dir), { type: 'dir' }, `${dir} is there`)
})
