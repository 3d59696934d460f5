// Remote globs for ls, cp, rm, get and du: `*` and `?` within one name, `[abc]`/`[a-z]`/`[!x]` classes, and
// `**` for any number of folders (zero included). A shell cannot expand them (the names are on the cluster),
// so the CLI expands them by listing: only the folders a pattern reaches are listed, page by page, and both
// the matches and the folders walked are bounded. A pattern that matches nothing is GRN_NOT_FOUND (exit 3),
// like a missing path. A backslash makes the next character literal (`/a/\*.txt` names the file `*.txt`).
// Written here rather than taken from minimatch/picomatch: matching is one name at a time against a listing,
// about 40 lines, and the client library keeps its dependency list short.
import { GranaryError, isGranaryError } from '../../shared/errors.js'
import type { FileStat } from '../../shared/protocol.js'
import { joinPath } from '../../shared/paths.js'
import type { GranaryClient } from '../index.js'

export const globMatchesMax = 100_000         // entries one pattern may match before the command is refused
export const globFoldersWalkedMax = 10_000    // folders one pattern may list while looking (a `**` over a big tree)

export function hasGlob (path: string): boolean {
  return /(^|[^\\])[*?[]/.test(path)
}

// One segment ('*.txt', 'a?c', '[!x]*') as an anchored RegExp; '**' is handled by the walker, not here.
export function segmentPattern (segment: string): RegExp {
  let source = ''
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i] as string
    if (c === '\\' && i + 1 < segment.length) { source += escape(segment[++i] as string); continue }
    if (c === '*') { source += '[^/]*'; continue }
    if (c === '?') { source += '[^/]'; continue }
    if (c === '[') {
      const close = segment.indexOf(']', i + 2)
      if (close !== -1) {
        let body = segment.slice(i + 1, close)
        const negated = body.startsWith('!') || body.startsWith('^')
        if (negated) body = body.slice(1)
        source += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`
        i = close
        continue
      }
    }
    source += escape(c)
  }
  return new RegExp(`^${source}$`, 'u')
}

function escape (c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

// A literal segment with its backslashes removed ('a\*b' → 'a*b').
function unescapeSegment (segment: string): string {
  return segment.replace(/\\(.)/g, '$1')
}

interface Step { folder: string, index: number }

// Every entry matching `pattern` (an absolute path, normalised apart from its glob characters), sorted by
// path. A pattern without glob characters is stat'ed: the one entry, or GRN_NOT_FOUND.
export async function expandRemote (client: GranaryClient, pattern: string, signal?: AbortSignal): Promise<FileStat[]> {
  if (!hasGlob(pattern)) return [await client.stat(unescapeSegment(pattern), { signal })]
  const segments = pattern.split('/').filter((s) => s.length > 0)
  const found = new Map<string, FileStat>()
  // Breadth-first over (folder, next segment) steps: no recursion over the namespace, and a bounded walk.
  const queue: Step[] = [{ folder: '/', index: 0 }]
  const seen = new Set<string>()
  let walked = 0
  for (let step = queue.shift(); step !== undefined; step = queue.shift()) {
    if (queue.length > globFoldersWalkedMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders queued to expand ${pattern}`, globFoldersWalkedMax])
    const key = `${step.index}\u0000${step.folder}`
    if (seen.has(key)) continue
    seen.add(key)
    const segment = segments[step.index] as string
    const last = step.index === segments.length - 1
    if (segment !== '**' && !hasGlob(segment)) {
      // A literal segment needs no listing: step into it (the last one is checked with stat).
      const path = joinPath(step.folder, unescapeSegment(segment))
      if (!last) { queue.push({ folder: path, index: step.index + 1 }); continue }
      const stat = await statOrNull(client, path, signal)
      if (stat !== null) add(found, stat, pattern)
      continue
    }
    if (++walked > globFoldersWalkedMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`folders listed to expand ${pattern}`, globFoldersWalkedMax])
    const entries = await listOrEmpty(client, step.folder, signal)
    if (segment === '**') {
      // '**' matches zero folders (go on with the next segment here) or one more (stay on '**' in each child).
      if (last) for (const entry of entries) add(found, entry, pattern)
      else queue.push({ folder: step.folder, index: step.index + 1 })
      for (const entry of entries) if (entry.type === 'dir') queue.push({ folder: entry.path, index: step.index })
      continue
    }
    const match = segmentPattern(segment)
    for (const entry of entries) {
      const name = entry.path.slice(entry.path.lastIndexOf('/') + 1)
      if (!match.test(name)) continue
      if (last) add(found, entry, pattern)
      else if (entry.type === 'dir') queue.push({ folder: entry.path, index: step.index + 1 })
    }
  }
  if (found.size === 0) throw new GranaryError('GRN_NOT_FOUND', [`${pattern} (the pattern matches nothing)`])
  return [...found.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}

function add (found: Map<string, FileStat>, entry: FileStat, pattern: string): void {
  found.set(entry.path, entry)
  if (found.size > globMatchesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', [`matches of ${pattern}`, globMatchesMax])
}

async function statOrNull (client: GranaryClient, path: string, signal: AbortSignal | undefined): Promise<FileStat | null> {
  try {
    return await client.stat(path, { signal })
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return null
    throw err
  }
}

// A folder's entries, page by page (bounded by readdirEntriesMax); a missing folder or a file lists nothing.
async function listOrEmpty (client: GranaryClient, folder: string, signal: AbortSignal | undefined): Promise<FileStat[]> {
  try {
    return await client.readdir(folder, { withStats: true, signal })
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return []
    throw err
  }
}

// Several arguments, each a path or a pattern: every entry once, in argument order.
export async function expandAll (client: GranaryClient, patterns: readonly string[], signal?: AbortSignal): Promise<FileStat[]> {
  const out = new Map<string, FileStat>()
  for (const pattern of patterns) {
    for (const entry of await expandRemote(client, pattern, signal)) {
      out.set(entry.path, entry)
      if (out.size > globMatchesMax) throw new GranaryError('GRN_LIMIT_EXCEEDED', ['paths named by the arguments', globMatchesMax])
    }
  }
  return [...out.values()]
}
