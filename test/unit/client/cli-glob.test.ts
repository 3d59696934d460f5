// Proves the CLI's glob and location parsing as pure functions: which arguments are globs, what one name
// segment matches (*, ?, classes, negation, backslash escapes, regex characters taken literally), how
// gr:/ and granary:// name the Granary side, and which masters a command then talks to.
import t from 'tap'
import { hasGlob, segmentPattern } from '../../../client/cli/glob.js'
import { parseLocation, mastersFor } from '../../../client/cli/location.js'

t.test('hasGlob and segmentPattern', async (t) => {
  t.ok(hasGlob('/a/*.txt'))
  t.ok(hasGlob('/a/?'))
  t.ok(hasGlob('/a/[ab]'))
  t.notOk(hasGlob('/a/b.txt'))
  t.notOk(hasGlob('/a/\\*.txt'), 'an escaped * is literal')
  const m = (pattern: string, name: string): boolean => segmentPattern(pattern).test(name)
  t.ok(m('*.txt', 'a.txt'))
  t.notOk(m('*.txt', 'a.txt.gz'))
  t.ok(m('a?c', 'abc'))
  t.notOk(m('a?c', 'ac'))
  t.ok(m('[a-c]1', 'b1'))
  t.notOk(m('[a-c]1', 'd1'))
  t.ok(m('[!a]*', 'b'))
  t.notOk(m('[!a]*', 'abc'))
  t.ok(m('[^a]*', 'b'), '^ negates too')
  t.ok(m('a.b', 'a.b'))
  t.notOk(m('a.b', 'axb'), 'regex characters are literal')
  t.ok(m('(x)+', '(x)+'))
  t.ok(m('\\*', '*'))
  t.notOk(m('\\*', 'x'))
  t.ok(m('[x', '[x'), 'an unclosed [ is literal')
})

t.test('parseLocation and mastersFor', async (t) => {
  t.same(parseLocation('./a', false), { kind: 'local', path: './a', arg: './a' })
  t.same(parseLocation('/a', false), { kind: 'local', path: '/a', arg: '/a' }, 'for cp a plain path is local')
  t.match(parseLocation('/a/', true), { kind: 'remote', path: '/a', dirHint: true })
  t.match(parseLocation('gr:/a//b', false), { kind: 'remote', path: '/a/b', dirHint: false })
  t.match(parseLocation('granary://10.0.0.5:9000/x/', false), { kind: 'remote', path: '/x', origin: 'http://10.0.0.5:9000', dirHint: true })
  t.match(parseLocation('granary://10.0.0.5:9000', false), { kind: 'remote', path: '/' })
  t.throws(() => parseLocation('gr:a', false), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => parseLocation('a', true), { code: 'GRN_INVALID_ARGUMENT' })
  t.throws(() => parseLocation('gr:/a/../b', false), { code: 'GRN_INVALID_PATH' })
  t.throws(() => parseLocation('granary://u:p@h:1/x', false), { code: 'GRN_INVALID_ARGUMENT' })
  const configured = ['http://127.0.0.1:9000', 'http://127.0.0.1:9001']
  t.same(mastersFor([parseLocation('gr:/a', false)], configured), configured)
  t.same(mastersFor([parseLocation('granary://127.0.0.1:9001/a', false)], configured), configured, 'a configured master keeps the list')
  t.same(mastersFor([parseLocation('granary://127.0.0.1:7000/a', false)], configured), ['http://127.0.0.1:7000'])
  t.throws(() => mastersFor([parseLocation('granary://h:1/a', false), parseLocation('granary://h:2/a', false)], configured), { code: 'GRN_INVALID_ARGUMENT' })
})

t.test('checksum: Granary paths take gr:/, --local paths are left alone', async (t) => {
  const { parseCommandLine } = await import('../../../client/cli/args.js')
  t.match(parseCommandLine(['checksum', 'gr:/a']), { positionals: ['/a'] })
  t.match(parseCommandLine(['checksum', '--local', 'relative.bin']), { positionals: ['relative.bin'] })
  t.throws(() => parseCommandLine(['checksum', 'relative.bin']), { code: 'GRN_INVALID_ARGUMENT' }, 'without --local a path is Granary\'s')
})
