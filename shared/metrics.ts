// Prometheus metrics, shared by every HTTP server (master, shadow, chunkserver, and the S3 gateway): one
// registry per server (a test process builds several), the request count and latency of every route, and
// GET /metrics in the Prometheus text format. prom-client writes the format (escaping, histogram buckets,
// HELP/TYPE lines) and the process metrics (CPU, memory, event-loop lag, GC) that every exporter is expected
// to have; the role-specific collectors live beside their role (master/metrics.ts, chunkserver/metrics.ts).
//
// Cost per request: two Map lookups, a short bucket scan and a few additions (≈ 0.1 µs; prom-client's own
// labelled histogram would hash the labels on every observe, ≈ 1 µs). Everything else is read when Prometheus
// scrapes (gauges with collect()), not kept up to date on every change.
//
// registerOperatorRoutes is the ONE place where /metrics and the status page are put on a server: the access
// rule for them (readable without a key on a loopback-only server, an admin key elsewhere) goes there.
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, type Counter, Registry } from 'prom-client'
import { metricsPath, statusPagePath } from './protocol.js'

// Route labels are route patterns (/chunks/:chunkHandle), never raw URLs, so the label sets are bounded by the
// route table; this caps the (method, route) pairs anyway: past it a new pair counts as method and route 'other'.
export const requestLabelSetsMax = 1_024
// Request latency buckets, seconds: a metadata call takes well under a ms, a chunk PUT up to seconds, an
// oplog long poll up to its wait (limits.oplogPollWaitMsMax).
export const requestSecondsBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

// One method on one route: its count per status code and its latency histogram (per-bucket counts; made
// cumulative when scraped).
interface RouteStats { method: string, route: string, codes: Map<number, number>, buckets: Float64Array, sum: number, count: number }

type MetricValues = Array<{ metricName?: string, labels: Record<string, string | number>, value: number }>

export class ServerMetrics {
  readonly registry = new Registry()
  // route → method → stats. Kept here as plain numbers rather than in prom-client's labelled children:
  // prom-client hashes the label object on every observe (≈ 1 µs a request, measured); this is a two-level
  // Map lookup, a short bucket scan and three additions (≈ 0.1 µs). prom-client still writes the text.
  readonly #routes = new Map<string, Map<string, RouteStats>>()
  #labelSets = 0

  constructor () {
    const custom = (name: string, help: string, type: 'counter' | 'histogram', values: () => MetricValues): void => {
      const metric = { name, help, type, aggregator: 'sum', get: async () => ({ name, help, type, aggregator: 'sum', values: values() }), reset: () => {} }
      this.registry.registerMetric(metric as unknown as Counter)
    }
    custom('granary_http_requests_total', 'HTTP requests answered, by method, route pattern and status code', 'counter', () => {
      const values: MetricValues = []
      for (const stats of this.#all()) {
        for (const [code, count] of stats.codes) values.push({ labels: { method: stats.method, route: stats.route, code: String(code) }, value: count })
      }
      return values
    })
    custom('granary_http_request_duration_seconds', 'Time from a request\'s arrival to its reply being sent, by method and route pattern', 'histogram', () => {
      const values: MetricValues = []
      const name = 'granary_http_request_duration_seconds'
      for (const stats of this.#all()) {
        const labels = { method: stats.method, route: stats.route }
        let cumulative = 0
        for (const [i, le] of requestSecondsBuckets.entries()) {
          cumulative += stats.buckets[i] as number
          values.push({ metricName: `${name}_bucket`, labels: { ...labels, le }, value: cumulative })
        }
        values.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: stats.count })
        values.push({ metricName: `${name}_sum`, labels, value: stats.sum })
        values.push({ metricName: `${name}_count`, labels, value: stats.count })
      }
      return values
    })
  }

  * #all (): Iterable<RouteStats> {
    for (const methods of this.#routes.values()) yield * methods.values()
  }

  // route: the pattern (request.routeOptions.url), or undefined for a request no route matched.
  observeRequest (method: string, route: string | undefined, statusCode: number, seconds: number): void {
    const routeLabel = route ?? 'unmatched'
    let stats = this.#routes.get(routeLabel)?.get(method)
    if (stats === undefined) stats = this.#add(method, routeLabel)
    stats.codes.set(statusCode, (stats.codes.get(statusCode) ?? 0) + 1)
    stats.count += 1
    stats.sum += seconds
    const buckets = requestSecondsBuckets
    for (let i = 0; i < buckets.length; i++) {
      if (seconds <= (buckets[i] as number)) { (stats.buckets[i] as number)++; break }
    }
  }

  // A new (method, route) pair; past requestLabelSetsMax they all count as one 'other' pair.
  #add (method: string, route: string): RouteStats {
    const full = this.#labelSets >= requestLabelSetsMax
    const key = full ? { method: 'other', route: 'other' } : { method, route }
    let methods = this.#routes.get(key.route)
    if (methods === undefined) { methods = new Map(); this.#routes.set(key.route, methods) }
    let stats = methods.get(key.method)
    if (stats === undefined) {
      stats = { ...key, codes: new Map(), buckets: new Float64Array(requestSecondsBuckets.length), sum: 0, count: 0 }
      methods.set(key.method, stats)
      this.#labelSets += 1
    }
    return stats
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
