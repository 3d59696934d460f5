// Shared bits of the client tests: a URL nothing listens on, a tiny programmable HTTP server, the client
// options every test uses (small chunks, short timeouts, sockets that do not hold the run open). Not a test file.
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createHash } from 'node:crypto'
import type { Test } from 'tap'

export const chunkSizeBytes = 64 * 1024

export function clientOptions (masters: string | string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { masters, chunkSizeBytes, keepAliveTimeoutMs: 10, deadlineMs: 3000, requestTimeoutMs: 1000, retryDelayMsMin: 5, retryDelayMsMax: 50, ...extra }
}

export async function deadUrl (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  return `http://127.0.0.1:${port}`
}

export async function serve (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string, server: Server }> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => { resolve() })) })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

export function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

// Deterministic bytes that differ at every offset, so a misplaced range shows up.
export function pattern (lengthBytes: number, seed = 1): Buffer {
  const data = Buffer.alloc(lengthBytes)
  let x = seed >>> 0 || 1
  for (let i = 0; i < lengthBytes; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    data[i] = x & 0xff
  }
  return data
}

export async function codeOf (promise: Promise<unknown>): Promise<string | undefined> {
  try { await promise; return undefined } catch (err) { return (err as { code?: string }).code }
}
