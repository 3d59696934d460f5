// Prometheus metrics, shared by every HTTP server (master, shadow, chunkserver, and the S3 gateway): one
// registry per server (a test process builds several), the request count and latency of every route, and
// GET /metrics in the Prometheus text format. prom-client writes the format (escaping, histogram buckets,
// HELP/TYPE lines) and the process metrics (CPU, memory, event-loop lag, GC) that every exporter is expected
// to have; the role-specific collectors live beside their role (master/metrics.ts, chunkserver/metrics.ts).
//
// Cost per request: one Map lookup on a string key and two in-place increments (the label children are
// cached, so prom-client never hashes label objects on the request path). Everything else is read when
// Prometheus scrapes (gauges with collect()), not kept up to date on every change.
//
// registerOperatorRoutes is the ONE place where /metrics and the status page are put on a server: the access
// rule for them (readable without a key on a loopback-only server, an admin key elsewhere) goes there.
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client'
import { metricsPath, statusPagePath } from './protocol.js'

// Route labels are route patterns (/fs/:inodeId/chunks), never raw URLs, so the label sets are bounded by the
// route table; this caps them anyway (methods × routes × status codes), past it a request counts as 'other'.
export const requestLabelSetsMax = 1_024
// Request latency buckets, seconds: a metadata call takes well under a ms, a chunk PUT up to seconds, an
// oplog long poll up to its wait (limits.oplogPollWaitMsMax).
export const requestSecondsBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export type ServerRole = 'master' | 'shadow' | 'chunkserver' | 'gateway'

interface RequestChildren { count: Counter.Internal, seconds: Histogram.Internal<'method' | 'route'> }

export class ServerMetrics {
  readonly registry = new Registry()
  readonly #requests: Counter<'method' | 'route' | 'code'>
  readonly #requestSeconds: Histogram<'method' | 'route'>
  readonly #children = new Map<string, RequestChildren>()

  constructor () {
    this.#requests = new Counter({
      name: 'granary_http_requests_total', help: 'HTTP requests answered, by method, route pattern and status code',
      labelNames: ['method', 'route', 'code'], registers: [this.registry]
    })
    this.#requestSeconds = new Histogram({
      name: 'granary_http_request_duration_seconds', help: 'Time from a request\'s arrival to its reply being sent, by method and route pattern',
      labelNames: ['method', 'route'], buckets: requestSecondsBuckets, registers: [this.registry]
    })
  }

  // route: the pattern (request.routeOptions.url), or undefined for a request no route matched.
  observeRequest (method: string, route: string | undefined, statusCode: number, seconds: number): void {
    const key = `${method} ${route ?? ''} ${statusCode}`
    let children = this.#children.get(key)
    if (children === undefined) {
      const bounded = this.#children.size < requestLabelSetsMax
      const routeLabel = route === undefined ? 'unmatched' : bounded ? route : 'other'
      const methodLabel = bounded ? method : 'other'
      children = {
        count: this.#requests.labels(methodLabel, routeLabel, String(statusCode)),
        seconds: this.#requestSeconds.labels(methodLabel, routeLabel)
      }
      if (bounded) this.#children.set(key, children)
    }
    children.count.inc()
    children.seconds.observe(seconds)
  }

  // The process metrics first (one registry per process), then this server's.
  async text (): Promise<string> {
    const [own, shared] = await Promise.all([this.registry.metrics(), processRegistry().metrics()])
    return shared + own
  }
}

let processMetrics: Registry | null = null
// CPU, memory, handles, event-loop lag and GC: once per process however many servers it runs.
function processRegistry (): Registry {
  if (processMetrics === null) {
    processMetrics = new Registry()
    collectDefaultMetrics({ register: processMetrics })
  }
  return processMetrics
}

export interface OperatorRoutesOptions {
  metrics: ServerMetrics
  statusPage?: () => string         // the HTML of GET / (master and shadow: master/status-page.ts)
}

// Counts every request (onResponse, after the reply went out) and serves GET /metrics (and GET / when a status
// page is given). Call once per server, before listen().
export function registerOperatorRoutes (app: FastifyInstance, options: OperatorRoutesOptions): void {
  const { metrics } = options
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeRequest(request.method, request.routeOptions.url, reply.statusCode, reply.elapsedTime / 1000)
    done()
  })
  app.get(metricsPath, async (_request, reply) => {
    void reply.header('content-type', metrics.registry.contentType).header('cache-control', 'no-store')
    return await metrics.text()
  })
  const page = options.statusPage
  if (page !== undefined) {
    app.get(statusPagePath, async (_request, reply) => {
      void reply.header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store')
      return page()
    })
  }
}
