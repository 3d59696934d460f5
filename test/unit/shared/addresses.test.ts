// --host (what a server binds) and --advertise-url (what others are told): refused at start-up with the flag's
// name when others could not use the result; the URL handed out is the advertised one.
import t from 'tap'
import { advertisedUrl, checkAddress, configFromArgv, chunkserverDefaults, resolveChunkserverConfig, resolveMasterConfig, resolveShadowConfig, shadowDefaults } from '../../../shared/config.js'

function refusal (fn: () => unknown): string {
  try { fn() } catch (err) { return `${(err as { code?: string }).code ?? '?'}: ${(err as Error).message}` }
  return 'accepted'
}

t.test('a wildcard bind needs --advertise-url, for every server role', async (t) => {
  for (const host of ['0.0.0.0', '::', '[::]']) {
    const cs = refusal(() => resolveChunkserverConfig(configFromArgv('chunkserver', chunkserverDefaults, ['--host', host])))
    t.match(cs, /^GRN_INVALID_ARGUMENT: .*--host .* binds every address.*--advertise-url/, `chunkserver --host ${host}`)
    t.match(refusal(() => resolveMasterConfig({ host })), /--advertise-url/, `master --host ${host}`)
    t.match(refusal(() => resolveShadowConfig(configFromArgv('shadow', shadowDefaults, ['--host', host]))), /--advertise-url/, `shadow --host ${host}`)
  }
  t.equal(refusal(() => resolveChunkserverConfig({ host: '0.0.0.0', advertiseUrl: 'http://10.0.0.7:9100' })), 'accepted', 'with an advertised URL it starts')
  t.equal(refusal(() => resolveMasterConfig({ host: '::1' })), 'accepted', 'an IPv6 literal binds')
})

t.test('an advertised URL others cannot use is refused, naming the flag', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['10.0.0.7:9100', /is not a URL|must use http/],
    ['https://10.0.0.7:9100', /is https: but this server has no TLS: give --tls-cert/],
    ['ftp://10.0.0.7:9100', /must use http: or https:/],
    ['http://user:pw@10.0.0.7:9100', /credentials/],
    ['http://10.0.0.7:9100/granary', /origin only/],
    ['http://10.0.0.7:9100/?a=1', /origin only/],
    ['http://10.0.0.7:9100#x', /origin only/],
    ['http://0.0.0.0:9100', /nobody can connect to/],
    ['http://[::]:9100', /nobody can connect to/],
    ['http://255.255.255.255:9100', /nobody can connect to/],
    ['http://10.0.0.7:70000', /not a URL/],
    ['http://10.0.0.7:0', /not 0/]
  ]
  for (const [url, why] of cases) {
    const got = refusal(() => checkAddress('chunkserver', '0.0.0.0', url))
    t.match(got, /^GRN_INVALID_ARGUMENT: invalid argument: chunkserver --advertise-url /, `${url}: the flag is named`)
    t.match(got, why, `${url}: ${String(why)}`)
  }
  t.match(refusal(() => checkAddress('master', '', '')), /--host must be an address/, 'an empty host')
  t.match(refusal(() => checkAddress('master', 'a b', '')), /--host must be an address/, 'a host with a space')
})

t.test('the URL handed out', async (t) => {
  t.equal(advertisedUrl('127.0.0.2', 9100, ''), 'http://127.0.0.2:9100', 'default: the bound address and port')
  t.equal(advertisedUrl('::1', 9100, ''), 'http://[::1]:9100', 'an IPv6 literal in brackets')
  t.equal(advertisedUrl('[::1]', 9100, ''), 'http://[::1]:9100', '... also when given in brackets')
  t.equal(advertisedUrl('0.0.0.0', 9100, 'http://Node7.example:9200/'), 'http://node7.example:9200', 'the advertised origin, normalised')
  t.equal(advertisedUrl('::', 9100, 'http://[fd00::7]:9200'), 'http://[fd00::7]:9200', 'an advertised IPv6 literal')
})
