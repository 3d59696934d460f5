// Proves the error table, docs/ERRORS.md and the wire round trip agree: every code is documented with its
// status and retry flag, no documented code is missing from the table, and a wire body rebuilds the same error.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { errorSpecs, errorCodes, GranaryError, errorFromBody, isGranaryError } from '../../../shared/errors.js'

const doc = readFileSync(new URL('../../../docs/ERRORS.md', import.meta.url), 'utf8')

t.test('every code is in docs/ERRORS.md with its status and retry flag, and vice versa', async (t) => {
  for (const code of errorCodes) {
    const spec = errorSpecs[code]
    const row = doc.split('\n').find((line) => line.startsWith(`| \`${code}\` |`))
    t.ok(row, `${code} documented`)
    t.match(row ?? '', `| ${spec.statusCode} | ${spec.retryable ? 'yes' : 'no'} |`, `${code} status and retryable match`)
  }
  const documented = [...doc.matchAll(/^\| `(GRN_[A-Z_]+)` \|/gm)].map((m) => m[1])
  t.same(documented.sort(), [...errorCodes].sort(), 'the doc lists exactly the codes in the table')
})

t.test('a GranaryError survives the wire', async (t) => {
  const err = new GranaryError('GRN_NOT_FOUND', ['/a/b'])
  t.equal(err.message, 'no such file or directory: /a/b')
  const body = JSON.parse(JSON.stringify(err.toBody()))
  t.same(body, { statusCode: 404, code: 'GRN_NOT_FOUND', error: 'Not Found', message: 'no such file or directory: /a/b' })
  const back = errorFromBody(body, 404)
  t.equal(back.code, 'GRN_NOT_FOUND')
  t.equal(back.retryable, false)
  t.equal(back.message, err.message)
  t.ok(isGranaryError(back))
  t.notOk(isGranaryError(new Error('plain')))
})

t.test('unknown or foreign codes become stable Granary codes', async (t) => {
  t.equal(errorFromBody({ code: 'FST_ERR_VALIDATION', message: 'body must have x' }, 400).code, 'GRN_INVALID_ARGUMENT')
  t.equal(errorFromBody({ message: 'too big' }, 413).code, 'GRN_LIMIT_EXCEEDED')
  const unknown = errorFromBody({ code: 'GRN_FROM_THE_FUTURE', message: 'hm' }, 500)
  t.equal(unknown.code, 'GRN_INTERNAL')
  t.equal(unknown.retryable, true)
  t.equal(errorFromBody(undefined, 502).message, 'HTTP 502')
})
