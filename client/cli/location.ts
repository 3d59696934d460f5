// Where a CLI argument points: a local path, or a Granary path written `gr:/path` or `granary://host:port/path`
// (the way `hdfs dfs` takes hdfs://, `aws s3` s3://, `gsutil` gs://). Commands that only ever name Granary
// paths (ls, rm, du, ...) also take a plain `/path`; cp and sync need the prefix, since there a plain path
// is local. A granary:// URL names the cluster too: its master becomes the one the command talks to.
// Pure: no I/O, so parsing stays a usage check (exit 2) before anything is contacted.
import { GranaryError } from '../../shared/errors.js'
import { normalizePath } from '../../shared/paths.js'

export type Location =
  | { kind: 'local', path: string, arg: string }
  | { kind: 'remote', path: string, arg: string, origin?: string, dirHint: boolean }  // dirHint: written with a trailing /

export const remotePrefix = 'gr:'
export const remoteScheme = 'granary://'

// True for an argument written as a Granary path with a prefix (gr:/x, granary://h:p/x).
export function isMarkedRemote (arg: string): boolean {
  return arg.startsWith(remotePrefix) || arg.startsWith(remoteScheme)
}

// `plainIsRemote`: whether an unprefixed '/path' names Granary (ls, rm, ...) or the local disk (cp, sync).
// The remote path keeps glob characters as typed; normalizePath checks the rest ('..', control bytes, length).
export function parseLocation (arg: string, plainIsRemote: boolean): Location {
  if (arg.startsWith(remoteScheme)) return fromUrl(arg)
  if (arg.startsWith(remotePrefix)) return remote(arg, arg.slice(remotePrefix.length), undefined)
  if (plainIsRemote) {
    if (!arg.startsWith('/')) throw new GranaryError('GRN_INVALID_ARGUMENT', [`'${arg}' is not a Granary path: Granary paths start with / (or gr:/)`])
    return remote(arg, arg, undefined)
  }
  return { kind: 'local', path: arg, arg }
}

function fromUrl (arg: string): Location {
  let url: URL
  try { url = new URL('http://' + arg.slice(remoteScheme.length)) } catch {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`'${arg}' is not a granary://host:port/path URL`])
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`'${arg}': a granary:// URL is host, port and path only`])
  }
  const afterHost = arg.slice(remoteScheme.length).replace(/^[^/]*/, '')
  return remote(arg, afterHost === '' ? '/' : afterHost, url.origin)
}

function remote (arg: string, path: string, origin: string | undefined): Location {
  if (!path.startsWith('/')) throw new GranaryError('GRN_INVALID_ARGUMENT', [`'${arg}': the Granary path must start with / (e.g. gr:/data/x)`])
  const normal = normalizePath(path)   // GRN_INVALID_PATH for '..', control bytes, over-long names
  return origin === undefined
    ? { kind: 'remote', path: normal, arg, dirHint: path.endsWith('/') }
    : { kind: 'remote', path: normal, arg, origin, dirHint: path.endsWith('/') }
}

// The masters a command talks to: the configured list, unless the arguments name a cluster by URL. A URL
// that is already in the list keeps the whole list (its shadows stay reachable); arguments naming two
// different clusters are refused (one command talks to one cluster).
export function mastersFor (locations: readonly Location[], configured: readonly string[]): string[] {
  const origins = new Set<string>()
  for (const location of locations) if (location.kind === 'remote' && location.origin !== undefined) origins.add(location.origin)
  if (origins.size === 0) return [...configured]
  if (origins.size > 1) throw new GranaryError('GRN_INVALID_ARGUMENT', [`the arguments name ${origins.size} clusters (${[...origins].join(', ')}); one command talks to one`])
  const origin = [...origins][0] as string
  return configured.includes(origin) ? [...configured] : [origin]
}
