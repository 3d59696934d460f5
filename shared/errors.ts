// One table of every error Granary reports across the wire. Codes are stable: never reuse a retired one.
// The wire body is fastify's shape { statusCode, code, error, message }; clients rebuild a GranaryError from
// `code` and decide retries from `retryable`, never from the message. docs/ERRORS.md lists each code
// (test/unit/shared/errors.test.ts checks both ways).
import { format } from 'node:util'

export const errorSpecs = {
  GRN_INVALID_PATH:        { statusCode: 400, retryable: false, message: 'invalid path %s: %s' },
  GRN_INVALID_ARGUMENT:    { statusCode: 400, retryable: false, message: 'invalid argument: %s' },
  GRN_NOT_FOUND:           { statusCode: 404, retryable: false, message: 'no such file or directory: %s' },
  GRN_EXISTS:              { statusCode: 409, retryable: false, message: 'already exists: %s' },
  GRN_NOT_DIR:             { statusCode: 409, retryable: false, message: 'not a directory: %s' },
  GRN_IS_DIR:              { statusCode: 409, retryable: false, message: 'is a directory: %s' },
  GRN_NOT_EMPTY:           { statusCode: 409, retryable: false, message: 'directory not empty: %s' },
  GRN_RENAME_INTO_SELF:    { statusCode: 409, retryable: false, message: 'cannot move %s into itself (%s)' },
  GRN_LEASE_HELD:          { statusCode: 409, retryable: true,  message: 'file %s is being written by another client' },
  GRN_LEASE_EXPIRED:       { statusCode: 409, retryable: false, message: 'the write lease on %s has expired or is not yours' },
  GRN_STALE_VERSION:       { statusCode: 409, retryable: false, message: 'chunk %s: version %d is older than %d' },
  GRN_STALE_TERM:          { statusCode: 409, retryable: false, message: 'term %d is older than %d' },
  GRN_CHUNK_MISMATCH:      { statusCode: 409, retryable: false, message: 'chunk %s: %s' },
  GRN_UNAUTHENTICATED:     { statusCode: 401, retryable: false, message: 'not authenticated: %s' },
  GRN_PERMISSION_DENIED:   { statusCode: 403, retryable: false, message: '%s may not %s %s' },
  GRN_NO_SUCH_KEY:         { statusCode: 404, retryable: false, message: 'no such access key: %s' },
  GRN_TOKEN_INVALID:       { statusCode: 403, retryable: false, message: 'chunk token refused: %s' },
  GRN_TOKEN_EXPIRED:       { statusCode: 403, retryable: false, message: 'chunk token for %s expired at %d' },
  GRN_CHECKSUM_MISMATCH:   { statusCode: 502, retryable: true,  message: 'chunk %s block %d failed its checksum' },
  GRN_CHUNK_NOT_FOUND:     { statusCode: 404, retryable: true,  message: 'chunk %s version %d is not stored here' },
  GRN_REPLICA_FAILED:      { statusCode: 502, retryable: true,  message: 'pipeline write to %s failed: %s' },
  GRN_NO_CHUNKSERVERS:     { statusCode: 503, retryable: true,  message: 'need %d live chunkservers, have %d' },
  GRN_DISK_FULL:           { statusCode: 507, retryable: true,  message: 'chunkserver %s has %d bytes free, needs %d' },
  GRN_LIMIT_EXCEEDED:      { statusCode: 413, retryable: false, message: '%s is over its limit of %d' },
  GRN_NOT_MASTER:          { statusCode: 503, retryable: true,  message: 'this server is a %s and does not take mutations; the master is %s' },
  GRN_VOTE_TAKEN:          { statusCode: 409, retryable: false, message: 'no vote: %s' },
  GRN_NOT_IN_SYNC:         { statusCode: 409, retryable: false, message: 'no vote: %s' },
  GRN_MASTER_LEASE_HELD:   { statusCode: 409, retryable: true,  message: 'no vote: %s' },
  GRN_VOTE_LOST:           { statusCode: 409, retryable: false, message: 'this shadow lost the election: %s' },
  GRN_UNAVAILABLE:         { statusCode: 503, retryable: true,  message: 'cannot reach %s: %s' },
  GRN_TIMEOUT:             { statusCode: 504, retryable: true,  message: '%s did not answer within %d ms' },
  GRN_DEADLINE_EXCEEDED:   { statusCode: 504, retryable: false, message: '%s gave up after %d ms and %d attempts: %s' },
  GRN_ABORTED:             { statusCode: 499, retryable: false, message: 'operation aborted: %s' },
  GRN_INTEGRITY:           { statusCode: 502, retryable: true,  message: 'data integrity check failed for %s: %s' },
  GRN_INTERNAL:            { statusCode: 500, retryable: true,  message: 'internal error: %s' },
  GRN_SNAPSHOT_REQUIRED:   { statusCode: 410, retryable: false, message: 'the oplog after seq %d is not available here (%s): bootstrap from a snapshot' },
  GRN_STALE:               { statusCode: 503, retryable: true,  message: 'stale read refused: %s' },
  GRN_NOT_CAUGHT_UP:       { statusCode: 409, retryable: false, message: 'this shadow is not caught up with its master (%s); promote with force to accept losing what it lacks' },
  GRN_DATA_AT_RISK:        { statusCode: 500, retryable: false, message: 'data at risk under %s: %d chunks under-replicated, %d missing' },
} as const

export type ErrorCode = keyof typeof errorSpecs
export const errorCodes = Object.keys(errorSpecs) as ErrorCode[]

export interface ErrorBody { statusCode: number, code: string, error: string, message: string, details?: unknown }

export class GranaryError extends Error {
  override name = 'GranaryError'
  readonly code: ErrorCode
  readonly statusCode: number
  readonly retryable: boolean
  readonly details: unknown

  constructor (code: ErrorCode, args: readonly unknown[] = [], details?: unknown, message?: string) {
    const spec = errorSpecs[code]
    super(message ?? format(spec.message, ...args))
    this.code = code
    this.statusCode = spec.statusCode
    this.retryable = spec.retryable
    this.details = details
  }

  toBody (): ErrorBody {
    const body: ErrorBody = { statusCode: this.statusCode, code: this.code, error: httpReason(this.statusCode), message: this.message }
    if (this.details !== undefined) body.details = this.details
    return body
  }
}

// Builds the error a client or peer should see from a wire body. An unknown code (a newer server) keeps its
// message and becomes GRN_INTERNAL, retryable only when the status says the server side failed.
export function errorFromBody (body: Partial<ErrorBody> | undefined, statusCode: number): GranaryError {
  const code = body?.code
  const message = typeof body?.message === 'string' ? body.message : `HTTP ${statusCode}`
  if (typeof code === 'string' && isErrorCode(code)) return new GranaryError(code, [], body?.details, message)
  if (statusCode === 400 && typeof code === 'string' && code.startsWith('FST_')) {
    return new GranaryError('GRN_INVALID_ARGUMENT', [], body?.details, message)
  }
  if (statusCode === 413) return new GranaryError('GRN_LIMIT_EXCEEDED', [], body?.details, message)
  return new GranaryError('GRN_INTERNAL', [], { statusCode, code }, message)
}

export function isErrorCode (code: string): code is ErrorCode {
  return Object.hasOwn(errorSpecs, code)
}

export function isGranaryError (err: unknown): err is GranaryError {
  // Match on code, not instanceof: two copies of the library may be loaded at once (undici's advice).
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' &&
    isErrorCode((err as { code: string }).code) && typeof (err as { retryable?: unknown }).retryable === 'boolean'
}

function httpReason (statusCode: number): string {
  const reasons: Record<number, string> = {
    400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 410: 'Gone', 413: 'Payload Too Large',
    499: 'Client Closed Request', 500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
    504: 'Gateway Timeout', 507: 'Insufficient Storage'
  }
  return reasons[statusCode] ?? 'Error'
}
