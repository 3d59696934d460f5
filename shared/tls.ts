// TLS for every hop (issue 12 item 4): a server's certificate and key (--tls-cert, --tls-key) and the CA a
// caller trusts (--ca-file, connect({ caFile }), $GRANARY_CA_FILE). Files are checked at start-up with errors
// that name the flag; a caller without a CA file trusts the system's CAs. A certificate failure seen by a
// caller becomes GRN_UNAVAILABLE naming the problem (certificateError), not a retry until the deadline.
import { readFileSync, statSync } from 'node:fs'
import { GranaryError } from './errors.js'

// A PEM file larger than this is not a certificate, a key or a CA bundle (the system bundle is ~220 KiB).
export const pemFileBytesMax = 1024 * 1024

export interface ServerTls { cert: Buffer, key: Buffer }

// Both flags or neither; each given file readable and PEM (read here, so a bad one is refused at start-up).
export function checkTlsFiles (what: string, tlsCert: string, tlsKey: string, caFile: string): void {
  if ((tlsCert === '') !== (tlsKey === '')) {
    const missing = tlsCert === '' ? '--tls-cert' : '--tls-key'
    const given = tlsCert === '' ? '--tls-key' : '--tls-cert'
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} ${given} needs ${missing} too (TLS takes both a certificate and its private key)`])
  }
  if (tlsCert !== '') readPem(what, '--tls-cert', tlsCert)
  if (tlsKey !== '') readPem(what, '--tls-key', tlsKey)
  if (caFile !== '') readPem(what, '--ca-file', caFile)
}

export function loadServerTls (what: string, tlsCert: string, tlsKey: string): ServerTls | null {
  checkTlsFiles(what, tlsCert, tlsKey, '')
  if (tlsCert === '') return null
  return { cert: readPem(what, '--tls-cert', tlsCert), key: readPem(what, '--tls-key', tlsKey) }
}

// The CA a server or client trusts for the servers it calls; undefined = the system's CAs.
export function loadCa (what: string, caFile: string): Buffer | undefined {
  return caFile === '' ? undefined : readPem(what, '--ca-file', caFile)
}

// undici's Agent/request option: { connect: { ca } } when a CA is given, nothing otherwise.
export function caConnectOptions (ca: Buffer | undefined): { connect?: { ca: Buffer } } {
  return ca === undefined ? {} : { connect: { ca } }
}

function readPem (what: string, flag: string, file: string): Buffer {
  let text: Buffer
  try {
    const size = statSync(file).size
    if (size > pemFileBytesMax) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} ${flag} ${file} is over ${pemFileBytesMax} bytes: not a PEM file`])
    text = readFileSync(file)
  } catch (err) {
    if (err instanceof GranaryError) throw err
    throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} ${flag} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
  }
  if (!text.includes('-----BEGIN ')) throw new GranaryError('GRN_INVALID_ARGUMENT', [`${what} ${flag} ${file} is not a PEM file (no -----BEGIN line)`])
  return text
}

// OpenSSL's verify codes and node's own: the peer's certificate was refused (untrusted, expired, wrong name),
// or the peer does not speak TLS at all (an https:// URL for a plain-HTTP server).
const certificateCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'CERT_REVOKED',
  'CERT_SIGNATURE_FAILURE', 'CERT_CHAIN_TOO_LONG', 'INVALID_CA', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG', 'EPROTO'
])

export function isCertificateFailure (code: string | undefined): boolean {
  return code !== undefined && (certificateCodes.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_'))
}

// GRN_UNAVAILABLE naming the certificate problem. Not retryable, unlike a refused connection: the same
// handshake with the same CA fails the same way, so the caller is told now instead of at its deadline.
export function certificateError (target: string, code: string, message: string): GranaryError {
  const hint = code.startsWith('ERR_SSL_') || code === 'EPROTO'
    ? 'the server does not speak TLS, or speaks it badly (an https:// URL for an http:// server?)'
    : 'its certificate is not trusted (give the CA with --ca-file, GRANARY_CA_FILE or connect({ caFile }))'
  const err = new GranaryError('GRN_UNAVAILABLE', [target, `TLS ${code}: ${message}; ${hint}`], { cause: code, tls: true })
  Object.defineProperty(err, 'retryable', { value: false })
  return err
}
