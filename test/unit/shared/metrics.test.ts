// shared/metrics.ts on a bare fastify server: requests are counted under their route pattern, never the raw
// URL; 404s under 'unmatched'; past requestLabelSetsMax label sets, new ones count as 'other'; /metrics is
// valid Prometheus text. And the strict reader the cluster tests rely on (test/helpers/prometheus.ts) refuses
// what Prometheus would refuse.
import t from 'tap'
import Fastify from 'fastify'
import { registerOperatorRoutes, requestLabelSetsMax, ServerMetrics } from '../../../shared/metrics.js'
import { parsePrometheusText, sampleValue } from '../../helpers/prometheus.js'

t.test('route patterns as labels, unmatched 404s, a page when given', async (t) => {
  const app = Fastify()
  const metrics = new ServerMetrics()
  registerOperatorRoutes(app, { metrics, statusPage: () => '<!doctype html><title>x</title>' })
  app.get('/things/:id', async () => ({ ok: true }))
  t.teardown(() => app.close())
  for (const id of ['a', 'b', 'c']) t.equal((await app.inject({ url: `/things/${id}?q=${id}` })).statusCode, 200)
  t.equal((await app.inject({ url: '/nothing/here' })).statusCode, 404)
  const page = await app.inject({ url: '/' })
  t.match(page.headers['content-type'], /^text\/html/)
  const res = await app.inject({ url: '/metrics' })
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  const families = parsePrometheusText(res.body)
  t.equal(sampleValue(families, 'granary_http_requests_total', { method: 'GET', route: '/things/:id', code: '200' }), 3)
  t.equal(sampleValue(families, 'granary_http_requests_total', { method: 'GET', route: 'unmatched', code: '404' }), 1)
  t.equal(sampleValue(families, 'granary_http_request_duration_seconds_count', { method: 'GET', route: '/things/:id' }), 3)
  const routes = new Set(families.get('granary_http_requests_total')?.samples.map((s) => s.labels.route))
  t.same([...routes].sort(), ['/', '/things/:id', 'unmatched'], 'no raw URL among the labels')
  t.ok(families.has('process_cpu_seconds_total'), 'process metrics')
})

t.test('label sets are bounded', async (t) => {
  const metrics = new ServerMetrics()
  for (let i = 0; i < requestLabelSetsMax + 10; i++) metrics.observeRequest('GET', `/r${i}`, 200, 0.001)
  const families = parsePrometheusText(await metrics.text())
  const samples = families.get('granary_http_requests_total')?.samples ?? []
  t.equal(samples.length, requestLabelSetsMax + 1, 'the first ones, then one "other"')
  t.equal(sampleValue(families, 'granary_http_requests_total', { method: 'other', route: 'other', code: '200' }), 10)
})

t.test('the reader refuses malformed exposition text', async (t) => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total 1\n'
  t.equal(parsePrometheusText(ok).get('a_total')?.samples[0]?.value, 1)
  const bad: Array<[string, RegExp]> = [
    ['a_total 1\n', /without HELP and TYPE/],
    ['# HELP a_total A.\n# TYPE a_total counter\na_total -1\n', /non-negative/],
    ['# HELP 1a A.\n', /bad metric name/],
    ['# HELP a A.\n# TYPE a gauge\na{1x="y"} 1\n', /bad label name/],
    ['# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n', /not contiguous|duplicate/],
    ['# HELP a A.\n# TYPE a gauge\na one\n', /bad value/],
    ['# HELP a A.\n# TYPE a gauge\na 1', /newline/],
    ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n', /cumulative/],
    ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', /differs from _count/],
    ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="2"} 1\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /not increasing/],
    ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 1\nh_count 1\n', /no _sum/]
  ]
  for (const [text, error] of bad) t.throws(() => parsePrometheusText(text), error, JSON.stringify(text))
})
