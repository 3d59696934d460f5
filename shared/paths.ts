// Namespace paths: absolute, '/'-separated, normalised. Refused with GRN_INVALID_PATH: relative paths,
// '.' or '..' segments, NUL or other control bytes, names over 255 bytes, paths over 4096 bytes, too deep.
// Repeated and trailing slashes are folded ('/a//b/' → '/a/b'); empty segments between them are refused
// only where they carry meaning (none do), so the rule is: split, drop empties, check each name.
import { GranaryError } from './errors.js'
import { nameLengthBytesMax, pathLengthBytesMax, pathDepthMax } from './limits.js'

// eslint-disable-next-line no-control-regex
const controlBytes = /[\u0000-\u001f\u007f]/

export function normalizePath (input: unknown): string {
  return '/' + splitPath(input).join('/')
}

export function splitPath (input: unknown): string[] {
  if (typeof input !== 'string') throw new GranaryError('GRN_INVALID_PATH', [String(input), 'not a string'])
  if (!input.startsWith('/')) throw new GranaryError('GRN_INVALID_PATH', [JSON.stringify(input), 'must be absolute (start with /)'])
  if (Buffer.byteLength(input) > pathLengthBytesMax) throw new GranaryError('GRN_INVALID_PATH', [shorten(input), `longer than ${pathLengthBytesMax} bytes`])
  if (controlBytes.test(input)) throw new GranaryError('GRN_INVALID_PATH', [JSON.stringify(shorten(input)), 'contains NUL or a control character'])
  const names = input.split('/').filter((name) => name.length > 0)
  if (names.length > pathDepthMax) throw new GranaryError('GRN_INVALID_PATH', [shorten(input), `deeper than ${pathDepthMax}`])
  for (const name of names) {
    if (name === '.' || name === '..') throw new GranaryError('GRN_INVALID_PATH', [JSON.stringify(input), `'${name}' segments are not allowed`])
    if (Buffer.byteLength(name) > nameLengthBytesMax) throw new GranaryError('GRN_INVALID_PATH', [shorten(input), `a name is longer than ${nameLengthBytesMax} bytes`])
  }
  return names
}

export function parentPath (path: string): string {
  const names = splitPath(path)
  names.pop()
  return '/' + names.join('/')
}

export function baseName (path: string): string {
  const names = splitPath(path)
  return names[names.length - 1] ?? ''
}

export function joinPath (dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`
}

function shorten (s: string): string { return s.length > 80 ? `${s.slice(0, 77)}...` : s }
