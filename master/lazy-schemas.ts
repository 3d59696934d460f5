// Fastify compiles every route's JSON Schema with ajv while the server gets ready, and loads ajv and
// fast-json-stringify when the instance is made. For the master that was ~200 ms of a ~650 ms restart on a
// 2-core machine: time a restarted master spends not answering. Here each route's validator is compiled
// on that route's first request instead (a few ms, once), with fastify's own compiler and the options the
// server passed (the `ajv` option): the same checks, only later. The compilers are resolved from fastify's
// own dependencies, so no other copy of ajv is involved. test/unit/master/lazy-schemas.test.ts checks that
// every master schema compiles and validates exactly as eagerly compiled.
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

const buildValidator: BuildValidator = (externalSchemas, ajvOptions) => {
  let compiler: ValidatorCompiler | undefined
  return (route) => lazyValidator(() => {
    compiler ??= loadValidatorBuilder()(externalSchemas, ajvOptions)
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
  const compile = loadValidatorBuilder()({}, { customOptions: { removeAdditional: false }, plugins: [] })
  const validate = compile({ schema: { type: 'object', properties: { path: { type: 'string', maxLength: 8 } }, required: ['path'] }, method: 'GET', url: '/warm', httpPart: 'querystring' })
  validate({ path: '/' })
  loadSerializerBuilder()
}
