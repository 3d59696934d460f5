// A bucket's keys in S3's order (bytewise on the whole key) from a tree of folders listed in name order. The two
// orders differ where a name is a prefix of another: folder "a" holds keys "a/…", which sort AFTER a file
// "a-b" ('-' < '/'), though "a" lists first. So each folder is read page by page from the master and its
// sub-folders are held back (a short, bounded list) until an entry that sorts after "name/" arrives.
// Resuming after a key (continuation token, start-after, marker) starts each level's listing just below the
// key's own segment rather than at the start, so a page costs about one master call per level it crosses.
import type { FileStat } from '../shared/protocol.js'
import { isGranaryError } from '../shared/errors.js'
import { listPageSizeDefault } from '../shared/limits.js'
import type { GranaryClient } from '../client/index.js'
import { walkHeldDirsMax } from './limits.js'
import { S3Error } from './errors.js'

export interface WalkEntry { key: string, stat: FileStat, isDir: boolean }   // a folder's key ends with '/'
export interface WalkOptions {
  prefix: string               // only keys starting with this
  startAfter: string           // only keys after this ('' = from the start)
  descend: boolean             // false: yield folders (as 'name/') instead of the keys inside them
}

export async function * walkBucket (client: GranaryClient, bucket: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const slash = options.prefix.lastIndexOf('/')
  const dirKey = options.prefix.slice(0, slash + 1)
  const namePrefix = options.prefix.slice(slash + 1)
  const dirPath = dirKey === '' ? `/${bucket}` : `/${bucket}/${dirKey.slice(0, -1)}`
  if (dirKey !== '' && !isPathable(dirKey)) return
  if (options.startAfter !== '' && options.startAfter >= dirKey && !options.startAfter.startsWith(dirKey)) return
  yield * walkDir(client, dirPath, dirKey, namePrefix, options)
}

// A prefix with an empty or dot segment names no folder: nothing is listed under it.
function isPathable (dirKey: string): boolean {
  return dirKey.slice(0, -1).split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..')
}

interface Held { sortKey: string, stat: FileStat, name: string }

async function * walkDir (client: GranaryClient, dirPath: string, dirKey: string, namePrefix: string, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const startAfter = options.startAfter
  const segment = startAfter !== '' && startAfter.startsWith(dirKey) ? startAfter.slice(dirKey.length).split('/')[0] as string : undefined
  let after: string | undefined
  for (const candidate of [segment?.slice(0, -1), namePrefix.slice(0, -1)]) {
    if (candidate !== undefined && candidate !== '' && (after === undefined || candidate > after)) after = candidate
  }
  const held: Held[] = []
  const hold = (item: Held): void => {
    if (held.length >= walkHeldDirsMax) throw new S3Error('InternalError', `a listing held more than ${walkHeldDirsMax} folders back`)
    let at = held.length
    while (at > 0 && (held[at - 1] as Held).sortKey > item.sortKey) at--
    held.splice(at, 0, item)
  }
  // Folders named by a proper prefix of the resume segment that sort after it ("a" when resuming after "a-b":
  // "a/…" > "a-b") are skipped by the listing's `after`: look them up one by one.
  if (segment !== undefined && after !== undefined) {
    for (let length = 1; length < segment.length; length++) {
      const name = segment.slice(0, length)
      if (segment[length] as string >= '/' || !name.startsWith(namePrefix) || name > after) continue
      const stat = await statOrNull(client, `${dirPath}/${name}`)
      if (stat?.type === 'dir') hold({ sortKey: `${name}/`, stat, name })
    }
  }
  const emitHeld = async function * (upTo: string | null): AsyncGenerator<WalkEntry> {
    while (held.length > 0 && (upTo === null || (held[0] as Held).sortKey < upTo)) {
      const dir = held.shift() as Held
      yield * emitDir(client, dirPath, dirKey, dir, options)
    }
  }
  let pageAfter = after
  let done = false
  while (!done) {
    let page
    try {
      page = await client.list(dirPath, { after: pageAfter, limit: listPageSizeDefault })
    } catch (err) {
      if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return
      throw err
    }
    for (const stat of page.entries) {
      const name = stat.path.slice(stat.path.lastIndexOf('/') + 1)
      if (namePrefix !== '' && !name.startsWith(namePrefix)) {
        if (name > namePrefix) { done = true; break }
        continue
      }
      const sortKey = stat.type === 'dir' ? `${name}/` : name
      yield * emitHeld(sortKey)
      if (stat.type === 'dir') { hold({ sortKey, stat, name }); continue }
      const key = dirKey + name
      if (key > startAfter) yield { key, stat, isDir: false }
    }
    if (page.nextAfter === null) break
    pageAfter = page.nextAfter
  }
  yield * emitHeld(null)
}

async function * emitDir (client: GranaryClient, dirPath: string, dirKey: string, dir: Held, options: WalkOptions): AsyncGenerator<WalkEntry> {
  const key = `${dirKey}${dir.name}/`
  const inside = options.startAfter.startsWith(key)
  if (!inside && key <= options.startAfter) return
  if (options.descend) {
    yield * walkDir(client, `${dirPath === '/' ? '' : dirPath}/${dir.name}`, key, '', options)
  } else if (!inside) {
    yield { key, stat: dir.stat, isDir: true }
  }
}

async function statOrNull (client: GranaryClient, path: string): Promise<FileStat | null> {
  try {
    return await client.stat(path)
  } catch (err) {
    if (isGranaryError(err) && (err.code === 'GRN_NOT_FOUND' || err.code === 'GRN_NOT_DIR')) return null
    throw err
  }
}
