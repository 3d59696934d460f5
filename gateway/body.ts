// Request bodies the gateway reads itself (the XML of DeleteObjects and CompleteMultipartUpload), through the same
// checks as object bodies (aws-chunked framing, signatures, Content-MD5, checksums), held whole: bounded.
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'
import type { S3Request } from './server.js'
import { PayloadReader, checkContentMd5 } from './payload.js'
import { xmlBodyBytesMax } from './limits.js'
import { S3Error } from './errors.js'

export async function readSmallBody (request: S3Request, bytesMax = xmlBodyBytesMax): Promise<string> {
  checkContentMd5(request.headers)
  const pieces: Buffer[] = []
  let total = 0
  const reader = new PayloadReader({ mode: request.auth.payload, headers: request.headers, sizeBytesMax: bytesMax })
  await pipeline(request.raw, reader, new Writable({
    write (piece: Buffer, _encoding, callback) {
      total += piece.length
      if (total > bytesMax) { callback(new S3Error('MalformedXML', `the request body is over ${bytesMax} bytes`)); return }
      pieces.push(piece)
      callback()
    }
  }))
  return Buffer.concat(pieces, total).toString('utf8')
}
