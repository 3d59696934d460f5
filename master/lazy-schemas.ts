// Fastify compiles every route's JSON Schema with ajv while the server gets ready, and loads ajv and
// fast-json-stringify when the instance is made. For the master that was ~200 ms of a ~650 ms restart on a
// 2-core machine: time a restarted master spends not answering. Here each route's validator is compiled
// on that route's first request instead (a few ms, once), with fastify's own compiler and the options the
// server passed (the `ajv` option): the same checks, only later. The compilers are resolved from fastify's
// own dependencies, so no other copy of ajv is involved. test/unit/master/lazy-schemas.test.ts checks that
// every master schema compiles and validates exactly as eagerly compiled.
//
// One difference from fastify's defaults, by request part: fastify's ajv coerces types ('array'), which a
// querystring needs (every value in it is a string) but a JSON body does not: there it turned "1" and null
// into numbers and "true" into a boolean, and the coerced mutation was applied and logged. So body validators
// come from a second compiler with coercion off (bodyAjvCustomOptions); the other parts keep the server's options.
import { createRequire } from 'node:module'
import type { FastifyServerOptions } from 'fastify'

type ValidateFn = ((data: unknown) => unknown) & { errors?: unknown }
type RouteSchema = { schema: unknown, method: string, url: string, httpPart?: string }
type ValidatorCompiler = (route: RouteSchema) => ValidateFn
type BuildValidator = (externalSchemas: unknown, ajvOptions: unknown) => ValidatorCompiler
type BuildSerializer = (externalSchemas: unknown, serializerOptions: unknown) => (route: RouteSchema) => (data: unknown) => string

const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'))

let defaultBuildValidator: BuildValidator | undefined
let defaultBuildSerializer: BuildSerializer | undefined

function loadValidatorBuilder (): BuildValidator {
  defaultBuildValidator ??= (requireFromFastify('@fastify/ajv-compiler') as () => BuildValidator)()
  return defaultBuildValidator
}

function loadSerializerBuilder (): BuildSerializer {
  defaultBuildSerializer ??= (requireFromFastify('@fastify/fast-json-stringify-compiler') as () => BuildSerializer)()
  return defaultBuildSerializer
}

// The validator of one route part, compiled on its first call. Fastify reads `.errors` after a false return.
export function lazyValidator (compile: () => ValidateFn): ValidateFn {
  let compiled: ValidateFn | undefined
  const validate: ValidateFn = (data: unknown) => {
    compiled ??= compile()
    const outcome = compiled(data)
    validate.errors = compiled.errors
    return outcome
  }
  return validate
}

// A JSON body carries its own types: a wrong one is refused (GRN_INVALID_ARGUMENT), never converted.
export const bodyAjvCustomOptions = { coerceTypes: false } as const

// The ajv options for one request part: the server's, with coercion off for the body.
export function ajvOptionsFor (httpPart: string | undefined, ajvOptions: unknown): unknown {
  if (httpPart !== 'body') return ajvOptions
  const given = ajvOptions as { customOptions?: Record<string, unknown> }
  return { ...given, customOptions: { ...given.customOptions, ...bodyAjvCustomOptions } }
}

const buildValidator: BuildValidator = (externalSchemas, ajvOptions) => {
  const compilers = new Map<boolean, ValidatorCompiler>()   // body or not: two ajv instances at most
  return (route) => lazyValidator(() => {
    const isBody = route.httpPart === 'body'
    let compiler = compilers.get(isBody)
    if (compiler === undefined) {
      compiler = loadValidatorBuilder()(externalSchemas, ajvOptionsFor(route.httpPart, ajvOptions))
      compilers.set(isBody, compiler)
    }
    return compiler(route)
  })
}

const buildSerializer: BuildSerializer = (externalSchemas, serializerOptions) => {
  let compiler: ((route: RouteSchema) => (data: unknown) => string) | undefined
  return (route) => {
    let serialize: ((data: unknown) => string) | undefined
    return (data) => {
      compiler ??= loadSerializerBuilder()(externalSchemas, serializerOptions)
      serialize ??= compiler(route)
      return serialize(data)
    }
  }
}

// Fastify's `schemaController` option. (Fastify's types model ajv's own compile signature; the factory
// contract at run time is the one above: (externalSchemas, options) → (route) → validate.)
export function lazySchemaController (): FastifyServerOptions['schemaController'] {
  return { compilersFactory: { buildValidator, buildSerializer } } as unknown as FastifyServerOptions['schemaController']
}

// A warm spare (master/standby.ts) loads ajv and compiles one throwaway schema before it is needed, so the
// first requests after it takes over pay a few ms per route instead of ajv's ~200 ms first-use cost.
export function warmSchemaCompilers (): void {
  const ajvOptions = { customOptions: { removeAdditional: false }, plugins: [] }
  const schema = { type: 'object', properties: { path: { type: 'string', maxLength: 8 } }, required: ['path'] }
  for (const httpPart of ['querystring', 'body']) {
    const compile = loadValidatorBuilder()({}, ajvOptionsFor(httpPart, ajvOptions))
    compile({ schema, method: 'GET', url: '/warm', httpPart })({ path: '/' })
  }
  loadSerializerBuilder()
}
