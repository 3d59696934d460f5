// What an object keeps beside its bytes, in the file's attrs (Granary's per-file attributes, set at create and
// at complete): Content-Type and the other representation headers, x-amz-meta-*, and the ETag (the MD5 of a
// single-part object, S3's md5-of-md5s-N of a multipart one). GET and HEAD answer from a stat: they never read
// the bytes again. A file written by other means (no attrs) gets an ETag from its CRC32 and size.
import type { IncomingHttpHeaders } from 'node:http'
import type { FileStat } from '../shared/protocol.js'
import { S3Error } from './errors.js'
import { headerValue } from './sigv4.js'
import { userMetadataBytesMax } from './limits.js'

export interface ObjectAttrs {
  etag?: string                       // without quotes
  headers?: Record<string, string>    // content-type, content-encoding, content-disposition, content-language, cache-control, expires
  meta?: Record<string, string>       // x-amz-meta-NAME → value (names lowercase, without the prefix)
}

export const storedHeaders = ['content-type', 'content-encoding', 'content-disposition', 'content-language', 'cache-control', 'expires'] as const

// The attrs a PUT (or CreateMultipartUpload, or CopyObject with REPLACE) asks for, from its headers.
export function attrsFromHeaders (headers: IncomingHttpHeaders): ObjectAttrs {
  const stored: Record<string, string> = {}
  for (const name of storedHeaders) {
    const value = headerValue(headers, name)
    if (value !== undefined && value !== '') stored[name] = value
  }
  // aws-chunked is the transfer framing, not how the object is encoded.
  if (stored['content-encoding'] !== undefined) {
    const encodings = stored['content-encoding'].split(',').map((e) => e.trim()).filter((e) => e !== '' && e !== 'aws-chunked')
    if (encodings.length === 0) delete stored['content-encoding']
    else stored['content-encoding'] = encodings.join(',')
  }
  const meta: Record<string, string> = {}
  let metaBytes = 0
  for (const [name, raw] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-')) continue
    const value = Array.isArray(raw) ? raw.join(',') : raw ?? ''
    const key = name.slice('x-amz-meta-'.length)
    metaBytes += Buffer.byteLength(key) + Buffer.byteLength(value)
    meta[key] = value
  }
  if (metaBytes > userMetadataBytesMax) throw new S3Error('MetadataTooLarge', `Your metadata headers exceed the maximum allowed metadata size (${userMetadataBytesMax} bytes)`)
  const attrs: ObjectAttrs = {}
  if (Object.keys(stored).length > 0) attrs.headers = stored
  if (Object.keys(meta).length > 0) attrs.meta = meta
  return attrs
}

export function attrsOf (stat: FileStat): ObjectAttrs {
  const attrs = stat.attrs
  return attrs === undefined || attrs === null ? {} : attrs as ObjectAttrs
}

export function etagOf (stat: FileStat): string {
  const etag = attrsOf(stat).etag
  if (etag !== undefined) return `"${etag}"`
  if (stat.type === 'dir') return '"d41d8cd98f00b204e9800998ecf8427e"'   // the MD5 of nothing: a folder marker is empty
  return `"grn-${(stat.crc32 ?? 0).toString(16).padStart(8, '0')}-${stat.sizeBytes.toString(16)}"`
}

// The headers a GET or HEAD answers with, from the stat alone.
export function objectHeaders (stat: FileStat): Record<string, string> {
  const attrs = attrsOf(stat)
  const out: Record<string, string> = {
    etag: etagOf(stat),
    'last-modified': new Date(stat.mtimeMs).toUTCString(),
    'accept-ranges': 'bytes',
    'content-type': 'binary/octet-stream',
  }
  for (const [name, value] of Object.entries(attrs.headers ?? {})) out[name] = value
  for (const [name, value] of Object.entries(attrs.meta ?? {})) out[`x-amz-meta-${name}`] = value
  return out
}
