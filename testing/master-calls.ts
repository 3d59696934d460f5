// Counts this process's calls to the master by route while fn runs, from undici's diagnostics channel (every
// client in the process, the library's own included): a test or a bench can check how many master calls an
// operation costs. A batch (POST /fs/batch, client/batch.ts) counts as the calls it carries; requests counts
// the HTTP requests that carried them.
import { subscribe, unsubscribe } from 'node:diagnostics_channel'

export interface MasterCalls { calls: Map<string, number>, requests: number }

export async function masterCallsDuring (fn: () => Promise<void>): Promise<MasterCalls> {
  const calls = new Map<string, number>()
  let requests = 0
  const onCreate = (message: unknown): void => {
    const request = (message as { request: { path: string, body?: unknown } }).request
    const path = request.path.split('?')[0] as string
    if (!path.startsWith('/fs/')) return
    requests++
    const body = Buffer.isBuffer(request.body) ? request.body.toString('utf8') : request.body   // undici keeps a string body as a Buffer
    const routes = path === '/fs/batch' && typeof body === 'string'
      ? (JSON.parse(body) as { ops: Array<{ route: string }> }).ops.map((op) => op.route)
      : [path]
    for (const route of routes) calls.set(route, (calls.get(route) ?? 0) + 1)
  }
  subscribe('undici:request:create', onCreate)
  try { await fn() } finally { unsubscribe('undici:request:create', onCreate) }
  return { calls, requests }
}
