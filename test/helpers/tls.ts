// A throw-away certificate authority for TLS tests (issue 12 item 4), made at run time with the openssl CLI so
// no private key is ever committed: one CA, then one certificate per server name, each valid for a day with
// subjectAltName IP:127.0.0.1 (and any other loopback addresses asked for). Files land in `dir`.
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface TestCertificate { cert: string, key: string }   // file paths
export interface TestCa { caFile: string, issue: (name: string, addresses?: string[]) => TestCertificate }

const opensslTimeoutMs = 20_000   // each openssl run; EC keys take milliseconds

function openssl (args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'], timeout: opensslTimeoutMs })
}

// P-256 keys: quick to make, and what a TLS 1.3 handshake uses anyway.
const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

export function makeTestCa (dir: string): TestCa {
  mkdirSync(dir, { recursive: true })
  const caFile = join(dir, 'ca.pem')
  const caKey = join(dir, 'ca.key')
  openssl(['req', '-x509', ...ecKey, '-keyout', caKey, '-out', caFile, '-days', '1', '-subj', '/CN=granary test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  let serial = 1
  return {
    caFile,
    issue: (name, addresses = ['127.0.0.1']) => {
      const key = join(dir, `${name}.key`)
      const csr = join(dir, `${name}.csr`)
      const cert = join(dir, `${name}.pem`)
      const ext = join(dir, `${name}.ext`)
      writeFileSync(ext, [
        'basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth',
        `subjectAltName=${addresses.map((a) => `IP:${a}`).join(',')}`
      ].join('\n') + '\n')
      openssl(['req', ...ecKey, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`])
      openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(serial++), '-days', '1', '-out', cert, '-extfile', ext])
      return { cert, key }
    }
  }
}
