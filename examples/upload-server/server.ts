// An upload/download server that keeps its files in Granary, written the way an app would use node:fs —
// through client.fs — so the whole storage layer is a handful of calls:
//   PUT    /files/<path>   streams the request body into fs.createWriteStream (nothing is visible until the
//                          upload completes; a cut upload leaves nothing behind). ?exclusive=1 refuses to replace.
//   GET    /files/<path>   streams fs.createReadStream; honours `Range: bytes=a-b | a- | -n` with 206 and
//                          Content-Range, 416 when the range starts past the end; a folder lists its entries.
//   HEAD   /files/<path>   the same headers, no body
//   DELETE /files/<path>   fs.rm (recursive for folders)
// Errors keep node's codes: ENOENT → 404, EEXIST/ENOTEMPTY → 409, EISDIR/ENOTDIR/EINVAL → 400.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { pipeline } from 'node:stream/promises'
import type { GranaryClient } from '../../client/index.js'

export interface ServerOptions {
  prefix?: string             // where files live in Granary (default /uploads)
  logger?: boolean
}

interface FilesParams { '*': string }

export function buildServer (client: GranaryClient, options: ServerOptions = {}): FastifyInstance {
  const fs = client.fs
  const prefix = options.prefix ?? '/uploads'
  const app = Fastify({ logger: options.logger ?? false })
  // Bodies stream straight to Granary: no parser may buffer them, whatever their content type.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  const storagePath = (request: FastifyRequest<{ Params: FilesParams }>): string => {
    const name = request.params['*'].replace(/\/+$/, '')
    return name === '' ? prefix : `${prefix}/${name}`
  }

  app.put<{ Params: FilesParams, Querystring: { exclusive?: string } }>('/files/*', async (request, reply) => {
    const path = storagePath(request)
    await fs.mkdir(path.slice(0, path.lastIndexOf('/')) || '/', { recursive: true })
    const output = fs.createWriteStream(path, { flags: request.query.exclusive === '1' ? 'wx' : 'w' })
    await pipeline(request.raw, output)
    return await reply.code(201).send({ path: request.params['*'], sizeBytes: output.bytesWritten })
  })

  // HEAD before GET: fastify's automatic HEAD route would read the whole file only to throw it away.
  app.head<{ Params: FilesParams }>('/files/*', async (request, reply) => await download(request, reply, false))
  app.get<{ Params: FilesParams }>('/files/*', async (request, reply) => await download(request, reply, true))

  const download = async (request: FastifyRequest<{ Params: FilesParams }>, reply: FastifyReply, withBody: boolean): Promise<unknown> => {
    const path = storagePath(request)
    const stat = await fs.stat(path)
    if (stat.isDirectory()) {
      const entries = await fs.readdir(path, { withFileTypes: true })
      return entries.map((entry) => ({ name: entry.name, type: entry.isDirectory() ? 'dir' : 'file' }))
    }
    reply.header('accept-ranges', 'bytes').header('last-modified', stat.mtime.toUTCString()).header('etag', `"${stat.ino}-${stat.mtimeMs}"`)
      .type('application/octet-stream')
    const range = parseRange(request.headers.range, stat.size)
    if (range === 'unsatisfiable') {
      return await reply.code(416).header('content-range', `bytes */${stat.size}`).send()
    }
    if (range === undefined) {
      reply.header('content-length', stat.size)
      return await reply.send(withBody ? fs.createReadStream(path) : undefined)
    }
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${stat.size}`).header('content-length', range.end - range.start + 1)
    return await reply.send(withBody ? fs.createReadStream(path, range) : undefined)
  }

  app.delete<{ Params: FilesParams }>('/files/*', async (request, reply) => {
    await fs.rm(storagePath(request), { recursive: true })
    return await reply.code(204).send()
  })

  app.setErrorHandler(async (error: Error & { code?: string, statusCode?: number }, _request, reply: FastifyReply) => {
    const statusCode = statusOf(error)
    return await reply.code(statusCode).send({ statusCode, code: error.code ?? 'EIO', message: error.message })
  })
  return app
}

// One `bytes=` range (the first, when a client sends several): undefined when absent or malformed (the whole
// file is sent, as RFC 9110 allows), 'unsatisfiable' when it starts at or past the end.
export function parseRange (header: string | undefined, sizeBytes: number): { start: number, end: number } | 'unsatisfiable' | undefined {
  const match = header === undefined ? null : /^bytes=(\d*)-(\d*)(?:,|$)/.exec(header.trim())
  if (match === null) return undefined
  const [, first = '', last = ''] = match
  if (first === '' && last === '') return undefined
  if (first === '') {
    const suffixBytes = Number(last)
    if (suffixBytes === 0 || sizeBytes === 0) return 'unsatisfiable'
    return { start: Math.max(0, sizeBytes - suffixBytes), end: sizeBytes - 1 }
  }
  const start = Number(first)
  const end = last === '' ? sizeBytes - 1 : Math.min(Number(last), sizeBytes - 1)
  if (start >= sizeBytes) return 'unsatisfiable'
  if (end < start) return undefined
  return { start, end }
}

function statusOf (error: { code?: string, statusCode?: number }): number {
  switch (error.code) {
    case 'ENOENT': return 404
    case 'EEXIST': case 'ENOTEMPTY': case 'EBUSY': return 409
    case 'EISDIR': case 'ENOTDIR': case 'EINVAL': case 'ENOTSUP': return 400
    case 'ABORT_ERR': return 499
    default: return error.statusCode !== undefined && error.statusCode >= 400 ? error.statusCode : 500
  }
}
