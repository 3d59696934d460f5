// The server side of HTTP timeouts, for every fastify server (master and shadow: master/server.ts; chunkserver:
// chunkserver/server.ts). Fastify's defaults leave a request without a deadline (requestTimeout 0) and keep idle
// connections 72 s, so a client that sends its headers and half a body holds a connection, a socket and its
// parser for as long as it likes. Node enforces requestTimeout and headersTimeout from a periodic check
// (connectionsCheckingInterval), which can only be set when the http.Server is made: hence the `http` option.
// A timed-out request gets 408 and its connection is closed. Both timeouts end once the request has been read,
// so they do not limit a long poll's wait or a reply's streaming.
import { assert } from './assert.js'
import * as limits from './limits.js'

export interface ServerTimeouts {
  requestTimeoutMs: number     // the whole request, headers and body, from its first byte
  headersTimeoutMs: number     // the request line and headers
  keepAliveTimeoutMs: number   // an idle connection between requests
  checkIntervalMs: number      // how often node looks for requests past their timeouts
}

export const masterServerTimeouts: ServerTimeouts = {
  requestTimeoutMs: limits.httpRequestTimeoutMs, headersTimeoutMs: limits.httpHeadersTimeoutMs,
  keepAliveTimeoutMs: limits.httpKeepAliveTimeoutMs, checkIntervalMs: limits.httpTimeoutCheckIntervalMs
}

export const chunkserverServerTimeouts: ServerTimeouts = { ...masterServerTimeouts, requestTimeoutMs: limits.chunkRequestTimeoutMs }

// Fastify's server options for these timeouts. Fastify copies keepAliveTimeout and requestTimeout onto the
// server after making it, so they are given both ways.
export function fastifyTimeoutOptions (timeouts: ServerTimeouts) {
  const { requestTimeoutMs, headersTimeoutMs, keepAliveTimeoutMs, checkIntervalMs } = timeouts
  for (const [name, value] of Object.entries(timeouts)) assert(Number.isSafeInteger(value) && value > 0, `server timeout ${name} is a positive integer`)
  assert(headersTimeoutMs <= requestTimeoutMs, 'headers come within the request timeout')   // node refuses the reverse
  return {
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: keepAliveTimeoutMs,
    http: { requestTimeout: requestTimeoutMs, headersTimeout: headersTimeoutMs, keepAliveTimeout: keepAliveTimeoutMs, connectionsCheckingInterval: checkIntervalMs }
  } as const
}
