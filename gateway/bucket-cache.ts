// Which buckets exist, remembered for a moment: every PutObject checks its bucket (a write would otherwise
// create the folder), and a stat per small PUT is a master call the cache saves. A bucket deleted through this
// gateway is forgotten at once; one deleted elsewhere is seen within bucketCacheTtlMs.
import type { GranaryClient } from '../client/index.js'
import { isGranaryError } from '../shared/errors.js'
import { S3Error } from './errors.js'

export const bucketCacheTtlMs = 1_000
export const bucketCacheEntriesMax = 1_000

export class BucketCache {
  readonly #client: GranaryClient
  readonly #seen = new Map<string, number>()   // bucket → known to exist until (epoch ms)

  constructor (client: GranaryClient) { this.#client = client }

  // Throws NoSuchBucket unless /bucket is a folder.
  async require (bucket: string): Promise<void> {
    const until = this.#seen.get(bucket)
    if (until !== undefined && until > Date.now()) return
    try {
      const stat = await this.#client.stat(`/${bucket}`)
      if (stat.type !== 'dir') throw new S3Error('NoSuchBucket', 'The specified bucket does not exist')
    } catch (err) {
      if (isGranaryError(err) && err.code === 'GRN_NOT_FOUND') throw new S3Error('NoSuchBucket', 'The specified bucket does not exist', err.code)
      throw err
    }
    if (this.#seen.size >= bucketCacheEntriesMax) this.#seen.clear()
    this.#seen.set(bucket, Date.now() + bucketCacheTtlMs)
  }

  forget (bucket: string): void { this.#seen.delete(bucket) }
}
