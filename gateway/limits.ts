// The S3 gateway's named limits (docs/S3.md lists them). S3's own numbers where S3 has one, so clients built
// for S3 (part sizes, page sizes) fit without tuning.
import { KiB, MiB, GiB } from '../shared/limits.js'
import { assert } from '../shared/assert.js'

export const keyLengthBytesMax = 1024                // S3's key limit; the path limits (shared/paths.ts) apply on top
export const listKeysMax = 1000                      // objects + common prefixes in one ListObjects page (S3's max-keys cap)
export const listUploadsMax = 1000                   // uploads in one ListMultipartUploads page
export const listPartsMax = 1000                     // parts in one ListParts page
export const deleteObjectsMax = 1000                 // keys in one DeleteObjects request (S3's limit)
export const deletesInFlightMax = 8                  // keys of one DeleteObjects deleted at once
export const corsMaxAgeSeconds = 3600                // how long a browser may cache a preflight answer
export const partNumberMax = 10_000                  // S3's part count limit
export const partSizeBytesMin = 5 * MiB              // every part but the last (S3's rule)
export const partSizeBytesMax = 5 * GiB
export const objectSizeBytesMax = 5 * 1024 * GiB     // S3's single-object limit; Granary's own file limit is larger
export const putObjectBytesMax = 5 * GiB             // a single PutObject (S3's limit)
export const xmlBodyBytesMax = 2 * MiB               // a request's XML body (CompleteMultipartUpload with 10,000 parts is ~1 MiB)
export const userMetadataBytesMax = 2 * KiB          // x-amz-meta-* names and values together (S3's limit)
export const presignExpiresSecondsMax = 7 * 24 * 3600   // X-Amz-Expires (S3's limit: 7 days)
export const signingKeysCachedMax = 64               // SigV4 signing keys (one per day, region and service) a static key pair keeps derived
export const clockSkewMsMax = 15 * 60_000            // a signed request's X-Amz-Date may be this far from our clock
export const awsChunkHeaderBytesMax = 4 * KiB        // one aws-chunked chunk header or trailer line
export const awsChunkTrailerBytesMax = 16 * KiB      // all trailer lines of an aws-chunked body
export const completeKeepAliveMs = 5_000             // CompleteMultipartUpload sends a space this often while it works
export const bodyPieceBytes = 1 * MiB                // a request body goes on to the store in pieces this large (gateway/payload.ts)
export const getReadAheadBytes = 1 * MiB             // a GET reads this far ahead of what its client has taken
export const walkHeldDirsMax = 1024                  // folders a listing holds back to place them in key order

assert(partSizeBytesMin <= partSizeBytesMax, 'part size bounds')
assert(listKeysMax >= 1 && deleteObjectsMax >= 1, 'pages hold something')
