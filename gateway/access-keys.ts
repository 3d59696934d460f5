// Granary access keys for S3 (issue 12: "the S3 gateway uses the same pair"): an S3 request signed with a Granary
// access key id and secret is checked with the SigV4 signing key the master derives for that one day, region
// and service (GET /admin/keys/signing-key, an admin call made with the gateway's own key), so the gateway never
// holds a secret. Cached briefly and boundedly: a revoked key stops working within keyCacheTtlMs.
import { isGranaryError } from '../shared/errors.js'
import type { GranaryClient } from '../client/index.js'
import type { KeyResolver, KeyScope, ResolvedKey } from './sigv4.js'

export const keyCacheTtlMs = 1_000        // a revoke reaches S3 requests within this (plus the shadow's lag)
export const keyCacheEntriesMax = 1_024   // (key id, scope) pairs kept; past it the cache starts over
const accessKeyIdShape = /^GK[0-9A-Z]{18}$/

export class AccessKeyResolver implements KeyResolver {
  readonly #client: GranaryClient
  readonly #fallback: KeyResolver | null
  readonly #cache = new Map<string, { atMs: number, key: ResolvedKey | null }>()

  constructor (client: GranaryClient, fallback: KeyResolver | null) {
    this.#client = client
    this.#fallback = fallback
  }

  async resolve (accessKeyId: string, scope: KeyScope): Promise<ResolvedKey | null> {
    if (!accessKeyIdShape.test(accessKeyId)) return await this.#fallback?.resolve(accessKeyId, scope) ?? null
    const id = `${accessKeyId} ${scope.date} ${scope.region} ${scope.service}`
    const nowMs = Date.now()
    const cached = this.#cache.get(id)
    if (cached !== undefined && nowMs - cached.atMs < keyCacheTtlMs) return cached.key
    let key: ResolvedKey | null
    try {
      const got = await this.#client.accessKeySigningKey(accessKeyId, scope)
      key = { signingKey: got.signingKey, readOnly: got.readOnly, prefix: got.prefix }
    } catch (err) {
      if (!isGranaryError(err) || err.code !== 'GRN_NO_SUCH_KEY') throw err   // the master unreachable: a 503, not "no such key"
      key = null
    }
    if (this.#cache.size >= keyCacheEntriesMax) this.#cache.clear()
    this.#cache.set(id, { atMs: nowMs, key })
    return key
  }
}
