// TLS on every hop (issue 12 item 4): master, shadow and three chunkservers all started with --tls-cert and
// --tls-key from a CA made at run time (test/helpers/tls.ts), each trusting it with --ca-file. A client given the
// CA puts and gets a multi-chunk file (pipelines forwarded chunkserver to chunkserver over TLS), every URL the
// master hands out is https, a client without the CA is refused at once with the certificate named, and plain
// http to a TLS server gets nothing; the CLI takes --ca-file and GRANARY_CA_FILE. Then the master is killed and the shadow, elected by the chunkservers over
// TLS, takes writes.
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startCluster, signedRequest } from '../../testing/cluster.js'
import { makeTestCa } from '../helpers/tls.js'
import { granary } from '../helpers/cli.js'
import { connect, isGranaryError } from '../../client/index.js'
import { healthPath, openPath, type OpenReply } from '../../shared/protocol.js'

const sha256 = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex')

t.test('a cluster with TLS everywhere', async (t) => {
  const certDir = mkdtempSync(join(tmpdir(), 'granary-tls-'))
  t.teardown(() => { rmSync(certDir, { recursive: true, force: true }) })
  const ca = makeTestCa(certDir)
  const tlsArgs = (name: string): string[] => {
    const { cert, key } = ca.issue(name)
    return ['--tls-cert', cert, '--tls-key', key, '--ca-file', ca.caFile]
  }
  const cluster = await startCluster({
    test: t, shadow: true, caFile: ca.caFile,
    masterArgs: tlsArgs('master'), shadowArgs: tlsArgs('shadow'),
    chunkservers: [{ args: tlsArgs('cs0') }, { args: tlsArgs('cs1') }, { args: tlsArgs('cs2') }]
  })
  for (const p of cluster.processes) t.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/, `${p.name} advertises https`)

  const client = cluster.client()
  const data = randomBytes(3 * 1024 * 1024 + 12_345)   // 4 chunks of the kit's 1 MiB, each through a 3-server pipeline
  await client.writeFile('/tls/blob', data)
  t.equal(sha256(await client.readFile('/tls/blob')), sha256(data), 'the bytes come back over TLS')

  const dispatcher = new Agent({ connect: { ca: readFileSync(ca.caFile) } })
  t.teardown(() => dispatcher.close())
  const openTarget = `${openPath}?path=${encodeURIComponent('/tls/blob')}`
  const res = await signedRequest(`${cluster.master.url}${openTarget}`, { dispatcher })
  t.equal(res.statusCode, 200)
  const opened = await res.body.json() as OpenReply
  t.equal(opened.chunks.length, 4)
  const urls = opened.chunks.flatMap((c) => c.replicas.map((r) => r.url))
  t.equal(urls.length, 12, 'three replicas of each chunk')
  t.ok(urls.every((u) => u.startsWith('https://')), `every replica URL is https (${[...new Set(urls)].join(' ')})`)
  const report = await cluster.report()
  t.ok(report.servers.every((s) => s.url.startsWith('https://')), 'the report lists https chunkservers')

  // The shadow followed over TLS and serves the file (its reads use its own copy of the namespace).
  const shadowOnly = cluster.client({ masters: [cluster.shadow?.url as string], staleReads: true })
  await cluster.waitFor(async () => await shadowOnly.stat('/tls/blob').then(() => true, () => false), { what: 'the shadow to have the file' })
  t.equal(sha256(await shadowOnly.readFile('/tls/blob')), sha256(data), 'read through the shadow, over TLS')

  await t.test('a client without the CA is refused at once, naming the certificate problem', async (t) => {
    const stranger = connect({ masters: cluster.masters, caFile: '', deadlineMs: 30_000 })
    t.teardown(() => stranger.close())
    const err = await stranger.readFile('/tls/blob').then(() => null, (e: unknown) => e)
    t.ok(isGranaryError(err), `a GranaryError (${String(err)})`)
    t.equal((err as { code?: string }).code, 'GRN_UNAVAILABLE')
    t.match((err as Error).message, /TLS (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY).*certificate is not trusted.*--ca-file/)
  })

  await t.test('the CLI: --ca-file or GRANARY_CA_FILE, and without either a clear refusal (exit 4)', async (t) => {
    const master = ['--master', cluster.masters.join(',')]
    const withFlag = await granary(['stat', '/tls/blob', '--json', '--ca-file', ca.caFile, ...master], { GRANARY_CA_FILE: '' })
    t.equal(withFlag.code, 0, withFlag.stderr)
    t.match(withFlag.stdout.toString(), new RegExp(`\\b${data.length}\\b`), '--ca-file: the stat names the file\'s size')
    const withEnv = await granary(['stat', '/tls/blob', ...master], { GRANARY_CA_FILE: ca.caFile })
    t.equal(withEnv.code, 0, `GRANARY_CA_FILE ${withEnv.stderr}`)
    const without = await granary(['stat', '/tls/blob', ...master], { GRANARY_CA_FILE: '' })
    t.equal(without.code, 4, 'unreachable: exit 4')
    t.match(without.stderr, /GRN_UNAVAILABLE: .*TLS UNABLE_TO_VERIFY_LEAF_SIGNATURE.*--ca-file/, without.stderr)
    const fsck = await granary(['fsck', '/', '--ca-file', ca.caFile, ...master], { GRANARY_CA_FILE: '' })
    t.equal(fsck.code, 0, `fsck over TLS ${fsck.stderr}`)
  })

  await t.test('plain http to a TLS server gets no answer', async (t) => {
    for (const p of [cluster.master, cluster.chunkservers[0]]) {
      const plain = (p?.url as string).replace(/^https:/, 'http:')
      const outcome = await request(`${plain}${healthPath}`, { headersTimeout: 10_000, bodyTimeout: 10_000 }).then(
        async (r) => { await r.body.dump(); return `answered ${r.statusCode}` }, (e: { code?: string }) => `failed ${e.code ?? '?'}`)
      t.match(outcome, /^failed /, `${p?.name as string}: ${outcome}`)
    }
  })

  // The shadow's votes go to the chunkservers and their heartbeats then go to it: all over TLS.
  await t.test('a failover over TLS: the shadow wins the chunkservers\' votes and takes writes', async (t) => {
    await cluster.master.kill()
    const after = randomBytes(1024 * 1024 + 7)
    await cluster.waitFor(async () => await client.writeFile('/tls/after', after, { deadlineMs: 3_000 }).then(() => true, () => false),
      { timeoutMs: 30_000, what: 'a write through the promoted shadow' })
    t.equal(sha256(await client.readFile('/tls/after')), sha256(after), 'written and read through the new master')
    t.equal(sha256(await client.readFile('/tls/blob')), sha256(data), 'the old file is still there')
  })
})
