// node:fs-shaped views of a Granary FileStat: GranaryStats (what stat/lstat return) and GranaryDirent (what
// readdir({ withFileTypes: true }) returns). Granary keeps permission bits but no owners, links or access times:
// mode is the type bits | the stored bits (FileStat.mode), uid/gid are 0, nlink is 1, and atime, ctime
// and birthtime all equal mtime (docs/API.md lists these differences).
import { constants as fsConstants } from 'node:fs'
import type { FileStat } from '../shared/protocol.js'

export { fileModeDefault, dirModeDefault } from '../shared/protocol.js'
const blockSizeBytes = 4096   // what st_blksize reports; Granary's real unit is the chunk (FileStat.chunkSizeBytes)

export class GranaryStats {
  readonly dev = 0
  readonly ino: number
  readonly mode: number
  readonly nlink = 1
  readonly uid = 0
  readonly gid = 0
  readonly rdev = 0
  readonly size: number
  readonly blksize = blockSizeBytes
  readonly blocks: number
  readonly atimeMs: number
  readonly mtimeMs: number
  readonly ctimeMs: number
  readonly birthtimeMs: number
  readonly atime: Date
  readonly mtime: Date
  readonly ctime: Date
  readonly birthtime: Date
  readonly #type: 'file' | 'dir'
  readonly granary: FileStat   // the master's own record: replication, chunk size and count, inode id

  constructor (stat: FileStat) {
    this.#type = stat.type
    this.granary = stat
    this.ino = stat.inodeId
    this.mode = (stat.type === 'dir' ? fsConstants.S_IFDIR : fsConstants.S_IFREG) | (stat.mode & 0o7777)
    this.size = stat.sizeBytes
    this.blocks = Math.floor((stat.sizeBytes + 511) / 512)
    this.atimeMs = this.mtimeMs = this.ctimeMs = this.birthtimeMs = stat.mtimeMs
    this.atime = new Date(stat.mtimeMs)
    this.mtime = new Date(stat.mtimeMs)
    this.ctime = new Date(stat.mtimeMs)
    this.birthtime = new Date(stat.mtimeMs)
  }

  isFile (): boolean { return this.#type === 'file' }
  isDirectory (): boolean { return this.#type === 'dir' }
  isSymbolicLink (): boolean { return false }
  isBlockDevice (): boolean { return false }
  isCharacterDevice (): boolean { return false }
  isFIFO (): boolean { return false }
  isSocket (): boolean { return false }
}

export class GranaryDirent {
  readonly name: string
  readonly parentPath: string
  readonly path: string        // Node 20 still names the parent folder `path` as well (deprecated there)
  readonly #type: 'file' | 'dir'

  constructor (name: string, parentPath: string, type: 'file' | 'dir') {
    this.name = name
    this.parentPath = parentPath
    this.path = parentPath
    this.#type = type
  }

  isFile (): boolean { return this.#type === 'file' }
  isDirectory (): boolean { return this.#type === 'dir' }
  isSymbolicLink (): boolean { return false }
  isBlockDevice (): boolean { return false }
  isCharacterDevice (): boolean { return false }
  isFIFO (): boolean { return false }
  isSocket (): boolean { return false }
}
