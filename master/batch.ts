// POST /fs/batch: several client calls in one exchange (protocol.batchPath; the client side is client/batch.ts).
// Each op runs exactly as its own route would run it, in the same order of checks: the route's schema, the
// key's right on the op's own paths, the route's gate (a read's or a mutation's preHandler), then its handler
// (a mutation's wrapped in its ack). Ops run concurrently, as the requests they replace would have: reads answer
// from the database at once, mutations meet in the commit queue's next group. One op's failure is its own
// result and never fails the batch; an assertion still stops the master, as it does on any route.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { GranaryError } from '../shared/errors.js'
import * as limits from '../shared/limits.js'
import type * as p from '../shared/protocol.js'
import { normalizePath } from '../shared/paths.js'
import { permitsAnyPath, requireRight } from '../shared/auth.js'
import { principalOf, type RouteAccess } from '../shared/auth-server.js'

export interface BatchRoute {
  kind: 'read' | 'mutation'                          // a read takes a querystring (GET), a mutation a body (POST)
  schema: object                                     // the route's schema for that part
  handle: (request: FastifyRequest) => Promise<unknown>   // for a mutation: acked, as the route registers it
}

export interface BatchDeps {
  routes: ReadonlyMap<string, BatchRoute>
  access: ReadonlyMap<string, RouteAccess>
  gates: { read: (request: FastifyRequest) => Promise<void>, mutation: () => Promise<void> }
  readPosition: (request: FastifyRequest) => string  // taken when the batch arrived (server.ts's onRequest)
  position: () => string                             // now: a mutation's, after its ack
  toError: (err: unknown, request: FastifyRequest) => GranaryError   // the server's error mapping (assertions stop the master)
  // Counts each op under its own route (shared/metrics.ts), so /metrics shows mkdirs and stats whether or not
  // they came in a batch; the batch itself counts too, as /fs/batch.
  observe?: (method: string, route: string | undefined, statusCode: number, seconds: number) => void
}

type Validate = ((data: unknown) => boolean) & { errors?: Array<{ instancePath?: string, message?: string }> | null }

export function batchHandler (deps: BatchDeps) {
  return async function batch (request: FastifyRequest, reply: FastifyReply): Promise<string> {
    const { ops } = request.body as p.BatchRequest
    const readPosition = deps.readPosition(request)
    const parts = await Promise.all(ops.map(async (op) => await runOp(deps, request, op, readPosition)))
    // Read replies past batchReplyBytesMax go back unanswered ({ single: true }): the client asks for them alone.
    // Mutation replies are small and always sent: the mutation has happened.
    let replyBytes = 0
    const results = parts.map(({ kind, json }) => {
      replyBytes += json.length
      return kind === 'read' && replyBytes > limits.batchReplyBytesMax ? '{"single":true}' : json
    })
    void reply.type('application/json')
    return `{"results":[${results.join(',')}]}`
  }
}

async function runOp (deps: BatchDeps, request: FastifyRequest, op: p.BatchOp, readPosition: string): Promise<{ kind: 'read' | 'mutation' | null, json: string }> {
  const route = deps.routes.get(op.route)
  const startedMs = performance.now()
  const observe = (statusCode: number): void => {
    deps.observe?.(route?.kind === 'read' ? 'GET' : 'POST', route === undefined ? undefined : op.route, statusCode, (performance.now() - startedMs) / 1000)
  }
  try {
    if (route === undefined) throw new GranaryError('GRN_INVALID_ARGUMENT', [`route ${op.route.slice(0, 64)} cannot be batched (see protocol.batchReadRoutes and batchMutationRoutes)`])
    const input = (route.kind === 'read' ? op.query : op.body) ?? {}
    // Compiled as a body's schema whatever the part: a batch's query values are JSON, typed, so nothing is
    // coerced ("7" is not taken for 7, nor 7 for "7"), as no JSON body is.
    const validate = request.compileValidationSchema(route.schema as Record<string, unknown>, 'body') as Validate
    if (!validate(input)) {
      const first = validate.errors?.[0]
      throw new GranaryError('GRN_INVALID_ARGUMENT', [`${op.route}: ${route.kind === 'read' ? 'querystring' : 'body'}${first?.instancePath ?? ''} ${first?.message ?? 'is invalid'}`])
    }
    // What the route's own request would look like to its handler: handlers read only body or query (and the
    // read gate the stale-ok header, which is the batch's).
    const inner = { body: route.kind === 'read' ? undefined : input, query: route.kind === 'read' ? input : {}, headers: request.headers } as unknown as FastifyRequest
    const access = deps.access.get(op.route)
    if (access?.who !== 'key') throw new GranaryError('GRN_INTERNAL', [`batched route ${op.route} has no key access rule`])
    const principal = principalOf(request)
    if (principal !== undefined && !permitsAnyPath(principal, access.right)) {
      const paths = (access.paths?.(inner) ?? []).filter((path): path is string => typeof path === 'string').map((path) => normalizePath(path))
      requireRight(principal, access.right, paths)
    }
    if (route.kind === 'read') await deps.gates.read(inner)
    else await deps.gates.mutation()
    const result = await route.handle(inner)
    observe(200)
    return { kind: route.kind, json: JSON.stringify({ reply: result, position: route.kind === 'read' ? readPosition : deps.position() }) }
  } catch (err) {
    const failure = deps.toError(err, request)
    observe(failure.statusCode)
    return { kind: route?.kind ?? null, json: JSON.stringify({ error: failure.toBody(), position: route?.kind === 'read' ? readPosition : deps.position() }) }
  }
}
