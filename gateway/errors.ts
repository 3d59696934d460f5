// S3's error codes, their HTTP statuses, and the one map from a Granary error to the S3 code a client is told
// (docs/S3.md lists the pairs). An S3Error remembers the GRN_* code behind it, for the logs.
import { isGranaryError, type ErrorCode } from '../shared/errors.js'

export const s3Statuses: Record<string, number> = {
  AccessDenied: 403,
  AccessForbidden: 403,
  AuthorizationHeaderMalformed: 400,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  IncompleteBody: 400,
  InternalError: 500,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketName: 400,
  InvalidDigest: 400,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  InvalidURI: 400,
  KeyTooLongError: 400,
  MalformedXML: 400,
  MetadataTooLarge: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NoSuchVersion: 404,
  NotImplemented: 501,
  OperationAborted: 409,
  PreconditionFailed: 412,
  RequestTimeTooSkewed: 403,
  ServiceUnavailable: 503,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
}

export class S3Error extends Error {
  override name = 'S3Error'
  readonly code: string
  readonly statusCode: number
  readonly granaryCode: ErrorCode | undefined
  resource: string | undefined

  constructor (code: string, message: string, granaryCode?: ErrorCode) {
    super(message)
    this.code = code
    this.statusCode = s3Statuses[code] ?? 500
    this.granaryCode = granaryCode
  }
}

export type Subject = 'bucket' | 'object' | 'upload' | 'write'

// A Granary failure as S3 says it. `subject` says what the request named: a missing path is NoSuchBucket for a
// bucket request, NoSuchKey for an object, NoSuchUpload for a multipart upload's parts.
export function fromGranary (err: unknown, subject: Subject): S3Error {
  if (err instanceof S3Error) return err
  if (!isGranaryError(err)) return new S3Error('InternalError', err instanceof Error ? err.message : String(err))
  const as = (code: string, message = err.message): S3Error => new S3Error(code, message, err.code)
  switch (err.code) {
    case 'GRN_NOT_FOUND':
      return as(subject === 'bucket' ? 'NoSuchBucket' : subject === 'upload' ? 'NoSuchUpload' : subject === 'write' ? 'NoSuchBucket' : 'NoSuchKey')
    case 'GRN_NOT_DIR':
      // A key below a name that is an object: nothing stored there to read; a write cannot map to a path.
      return subject === 'write' ? as('InvalidRequest', `a prefix of this key is an object: ${err.message}`) : as('NoSuchKey')
    case 'GRN_IS_DIR':
    case 'GRN_EXISTS':
      return subject === 'write' ? as('InvalidRequest', `this key is also a prefix of other keys: ${err.message}`) : as('NoSuchKey')
    case 'GRN_NOT_EMPTY': return as('BucketNotEmpty', 'The bucket you tried to delete is not empty')
    case 'GRN_INVALID_PATH': return as(/longer than|deeper than/.test(err.message) ? 'KeyTooLongError' : 'InvalidArgument')
    case 'GRN_INVALID_ARGUMENT': return as('InvalidArgument')
    case 'GRN_LIMIT_EXCEEDED': return as('EntityTooLarge')
    case 'GRN_LEASE_HELD': return as('OperationAborted', `A conflicting operation is in progress on this key: ${err.message}`)
    case 'GRN_ABORTED': return as('IncompleteBody')
    case 'GRN_NO_CHUNKSERVERS':
    case 'GRN_DISK_FULL':
    case 'GRN_UNAVAILABLE':
    case 'GRN_NOT_MASTER':
    case 'GRN_STALE':
    case 'GRN_TIMEOUT':
    case 'GRN_DEADLINE_EXCEEDED':
      return as('ServiceUnavailable')
    default:
      return as('InternalError')
  }
}
