// An S3 gateway in the test process beside a test cluster (gateway/main.ts startGateway on a free port), and
// an AWS SDK v3 client pointed at it (path-style, the gateway's static key pair).
import { S3Client } from '@aws-sdk/client-s3'
import type { Cluster, TestContextLike } from '../../testing/cluster.js'
import { startGateway, resolveGatewayConfig, type RunningGateway } from '../../gateway/main.js'
import type { KeyResolver } from '../../gateway/sigv4.js'

export const testKeys = Object.freeze({ accessKeyId: 'GRANARYTESTKEY', secretAccessKey: 'granary-test-secret-key' })

export interface S3Harness { gateway: RunningGateway, url: string, s3: (options?: Record<string, unknown>) => S3Client }

export async function startS3 (cluster: Cluster, t: TestContextLike & { teardown: (fn: () => unknown) => void }, options: { now?: () => number, chunkSizeBytes?: number, resolver?: KeyResolver } = {}): Promise<S3Harness> {
  const config = resolveGatewayConfig({
    port: 0, masters: cluster.masters.join(','), accessKeyId: testKeys.accessKeyId, secretAccessKey: testKeys.secretAccessKey, logLevel: 'warn',
    chunkSizeBytes: options.chunkSizeBytes ?? 1024 * 1024, replication: 3,
  }, {})
  const gateway = await startGateway(config, { now: options.now, resolver: options.resolver })
  const clients: S3Client[] = []
  t.teardown(async () => {
    for (const client of clients) client.destroy()
    await gateway.close()
  })
  return {
    gateway,
    url: gateway.url,
    s3: (extra = {}) => {
      const client = new S3Client({ endpoint: gateway.url, region: 'us-east-1', forcePathStyle: true, credentials: { ...testKeys }, ...extra })
      clients.push(client)
      return client
    }
  }
}
