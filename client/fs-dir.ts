// `client.fs.opendir()`: node's fs.Dir over Granary. Entries come a page at a time from the master
// (client.entries), so a folder of any size is walked in bounded memory: `for await (const dirent of dir)`,
// or read() until null, then close(). Like node: opendir fails at once on a missing path (ENOENT) or a file
// (ENOTDIR); read() after close() and a second close() fail with ERR_DIR_CLOSED; the iterator closes the Dir.
import type { GranaryClient } from './index.js'
import type { FileStat } from '../shared/protocol.js'
import { GranaryDirent } from './fs-stats.js'
import { toFsError } from './fs-errors.js'

export interface FsOpendirOptions { bufferSize?: number, recursive?: boolean, encoding?: BufferEncoding | null, signal?: AbortSignal, deadlineMs?: number }

export class GranaryDir implements AsyncIterable<GranaryDirent> {
  readonly path: string
  readonly #entries: AsyncGenerator<FileStat, void, undefined>
  #closed = false

  constructor (client: GranaryClient, path: string, normalised: string, options: FsOpendirOptions = {}) {
    this.path = path
    const { bufferSize, recursive, encoding: _encoding, ...call } = options
    this.#entries = client.entries(normalised, { ...call, recursive: recursive === true, pageSize: bufferSize })
  }

  // The next entry, or null at the end.
  async read (): Promise<GranaryDirent | null> {
    if (this.#closed) throw dirClosed()
    let next: IteratorResult<FileStat, void>
    try {
      next = await this.#entries.next()
    } catch (err) {
      throw toFsError(err, { syscall: 'scandir', path: this.path })
    }
    if (next.done === true) return null
    const entry = next.value
    const slash = entry.path.lastIndexOf('/')
    return new GranaryDirent(entry.path.slice(slash + 1), slash === 0 ? '/' : entry.path.slice(0, slash), entry.type)
  }

  async close (): Promise<void> {
    if (this.#closed) throw dirClosed()
    this.#closed = true
    await this.#entries.return(undefined)
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<GranaryDirent, void, undefined> {
    try {
      for (let dirent = await this.read(); dirent !== null; dirent = await this.read()) yield dirent
    } finally {
      if (!this.#closed) await this.close()
    }
  }

  async [Symbol.asyncDispose] (): Promise<void> {
    if (!this.#closed) await this.close()
  }
}

// node's own error for a closed Dir (an Error with code ERR_DIR_CLOSED).
function dirClosed (): Error & { code: string } {
  const error = new Error('Directory handle was closed') as Error & { code: string }
  error.code = 'ERR_DIR_CLOSED'
  return error
}
