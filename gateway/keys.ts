// Where S3 names land in Granary's namespace: bucket B is the top-level folder /B, key K the path /B/K (each
// '/' of the key a folder). What cannot map is refused before anything changes: an empty segment ('a//b', a
// leading '/'), '.' or '..' segments, control characters, keys past the key or path limits. A key ending in
// '/' with an empty body is a folder marker (a folder). Names starting with '.' at the top are never buckets
// (S3 bucket names start with a letter or digit): /.trash and the gateway's /.s3-uploads live there.
import { S3Error } from './errors.js'
import { keyLengthBytesMax } from './limits.js'
import { nameLengthBytesMax, pathLengthBytesMax, pathDepthMax } from '../shared/limits.js'

export const uploadsRoot = '/.s3-uploads'

// S3's rules for new buckets: 3..63 of a-z 0-9 . -, starting and ending with a letter or digit, not an IP.
export function checkBucketName (bucket: string): void {
  if (!isBucketName(bucket)) {
    throw new S3Error('InvalidBucketName', `The specified bucket is not valid: ${JSON.stringify(bucket)} (3-63 of a-z, 0-9, '.', '-', starting and ending with a letter or digit)`)
  }
}

export function isBucketName (name: string): boolean {
  return /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) && !/\.\.|^\d+\.\d+\.\d+\.\d+$/.test(name)
}

export function bucketPath (bucket: string): string { return `/${bucket}` }

// The path of an object key, or S3's error for a key that cannot be one.
export function objectPath (bucket: string, key: string): string {
  checkKey(key)
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key
  return `/${bucket}/${trimmed}`
}

export function checkKey (key: string): void {
  if (key === '') throw new S3Error('InvalidArgument', 'the key is empty')
  if (Buffer.byteLength(key) > keyLengthBytesMax) throw new S3Error('KeyTooLongError', `Your key is longer than ${keyLengthBytesMax} bytes`)
  const segments = (key.endsWith('/') ? key.slice(0, -1) : key).split('/')
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) throw new S3Error('InvalidArgument', 'this gateway cannot store keys with control characters')
  for (const segment of segments) {
    if (segment === '') throw new S3Error('InvalidArgument', `the key ${JSON.stringify(key)} has an empty segment ('//' or a leading '/'), which cannot map to a folder`)
    if (segment === '.' || segment === '..') throw new S3Error('InvalidArgument', `the key ${JSON.stringify(key)} has a '${segment}' segment, which cannot map to a folder`)
    if (Buffer.byteLength(segment) > nameLengthBytesMax) throw new S3Error('KeyTooLongError', `a segment of the key is longer than ${nameLengthBytesMax} bytes`)
  }
  if (segments.length + 1 > pathDepthMax) throw new S3Error('KeyTooLongError', `the key has more than ${pathDepthMax - 1} segments`)
  if (Buffer.byteLength(key) + 2 + 63 > pathLengthBytesMax) throw new S3Error('KeyTooLongError', 'the key is too long for a path')
}

export function isFolderKey (key: string): boolean { return key.endsWith('/') }
