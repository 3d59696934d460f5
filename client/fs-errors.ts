// Errors of the fs.promises-shaped API (client/fs.ts) look like node:fs's own: `code` is Node's (ENOENT,
// EEXIST...), with `errno`, `syscall` and `path` (and `dest` for rename), so code written against node:fs
// that checks `err.code === 'ENOENT'` works unchanged. Granary's stable code stays on `granaryCode`
// (GRN_NOT_FOUND...), with `retryable` and the original GranaryError as `cause`. docs/API.md lists the mapping.
import { constants as osConstants } from 'node:os'
import { isGranaryError, type ErrorCode, type GranaryError } from '../shared/errors.js'

// Granary code → Node code. Codes not listed become EIO: the operation failed for a reason node:fs has no
// word for (a chunk that failed its checksum on every replica, a lease lost...); granaryCode says which.
export const nodeCodeOf: Readonly<Partial<Record<ErrorCode, string>>> = {
  GRN_NOT_FOUND: 'ENOENT',
  GRN_EXISTS: 'EEXIST',
  GRN_NOT_DIR: 'ENOTDIR',
  GRN_IS_DIR: 'EISDIR',
  GRN_NOT_EMPTY: 'ENOTEMPTY',
  GRN_RENAME_INTO_SELF: 'EINVAL',
  GRN_INVALID_PATH: 'EINVAL',
  GRN_INVALID_ARGUMENT: 'EINVAL',
  GRN_LEASE_HELD: 'EBUSY',
  GRN_LIMIT_EXCEEDED: 'EFBIG',
  GRN_DISK_FULL: 'ENOSPC',
  GRN_TOKEN_INVALID: 'EACCES',
  GRN_TOKEN_EXPIRED: 'EACCES',
  GRN_TIMEOUT: 'ETIMEDOUT',
  GRN_DEADLINE_EXCEEDED: 'ETIMEDOUT',
  GRN_UNAVAILABLE: 'ECONNREFUSED',
  GRN_NO_CHUNKSERVERS: 'EAGAIN',
  GRN_NOT_MASTER: 'EAGAIN',
  GRN_ABORTED: 'ABORT_ERR',
}

// Node's own sentences for the codes above (util.getSystemErrorMap() words some of them for sockets).
const descriptions: Record<string, string> = {
  ENOENT: 'no such file or directory', EEXIST: 'file already exists', ENOTDIR: 'not a directory',
  EISDIR: 'illegal operation on a directory', ENOTEMPTY: 'directory not empty', EINVAL: 'invalid argument',
  EBUSY: 'resource busy or locked', EFBIG: 'file too large', ENOSPC: 'no space left on device', EACCES: 'permission denied',
  ETIMEDOUT: 'operation timed out', ECONNREFUSED: 'connection refused', EAGAIN: 'resource temporarily unavailable',
  EIO: 'i/o error', ENOTSUP: 'operation not supported',
}

export type Syscall = 'open' | 'read' | 'write' | 'stat' | 'lstat' | 'scandir' | 'mkdir' | 'rename' | 'unlink' | 'rmdir' | 'rm' | 'access' |
  'opendir' | 'copyfile' | 'cp' | 'mkdtemp' | 'realpath' | 'readlink' | 'symlink' | 'link' | 'chmod' | 'lchmod' | 'chown' | 'lchown' |
  'utime' | 'lutime' | 'statfs' | 'watch' | 'glob'

// The shape of a Node SystemError, plus Granary's code.
export interface GranaryFsError extends Error {
  code: string                 // Node's: ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EINVAL, ..., ABORT_ERR
  errno?: number               // negative, like node:fs (-2 for ENOENT); absent for ABORT_ERR and ERR_* codes
  syscall?: Syscall
  path?: string
  dest?: string
  granaryCode: ErrorCode       // GRN_NOT_FOUND, ...
  retryable: boolean
}

export interface ErrorPlace { syscall: Syscall, path?: string, dest?: string }

// A GranaryError in node:fs's shape. An error that is already an fs error, or is not Granary's (a bug),
// passes unchanged.
export function toFsError (err: unknown, place: ErrorPlace): unknown {
  if (isFsError(err) || !isGranaryError(err)) return err
  const code = nodeCodeOf[err.code] ?? 'EIO'
  if (code === 'ABORT_ERR') return abortError(err)
  return fsError(code, err.code, place, err)
}

// Builds one error. `cause` is the GranaryError it came from, when there was one.
export function fsError (code: string, granaryCode: ErrorCode, place: ErrorPlace, cause?: GranaryError, detail?: string): GranaryFsError {
  const target = place.path === undefined ? '' : place.dest === undefined ? ` '${place.path}'` : ` '${place.path}' -> '${place.dest}'`
  const reason = detail ?? cause?.message
  const message = `${code}: ${descriptions[code] ?? 'error'}, ${place.syscall}${target}${reason === undefined ? '' : ` (${granaryCode}: ${reason})`}`
  const error = new Error(message, cause === undefined ? undefined : { cause }) as GranaryFsError
  const errno = (osConstants.errno as Record<string, number | undefined>)[code]
  error.code = code
  if (errno !== undefined) error.errno = -errno
  error.syscall = place.syscall
  if (place.path !== undefined) error.path = place.path
  if (place.dest !== undefined) error.dest = place.dest
  error.granaryCode = granaryCode
  error.retryable = cause?.retryable ?? false
  return error
}

// What node:fs throws for an AbortSignal: name 'AbortError', code 'ABORT_ERR'.
function abortError (cause: GranaryError): GranaryFsError {
  const error = new Error('The operation was aborted', { cause }) as GranaryFsError
  error.name = 'AbortError'
  error.code = 'ABORT_ERR'
  error.granaryCode = cause.code
  error.retryable = false
  return error
}

export function isFsError (err: unknown): err is GranaryFsError {
  return typeof err === 'object' && err !== null && typeof (err as { granaryCode?: unknown }).granaryCode === 'string' &&
    typeof (err as { code?: unknown }).code === 'string'
}

// Runs one call and rethrows its failure in node:fs's shape.
export async function asFs<T> (place: ErrorPlace, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw toFsError(err, place)
  }
}
