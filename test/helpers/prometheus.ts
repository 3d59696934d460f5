// A strict reader of the Prometheus text exposition format (version 0.0.4), line by line, for the /metrics
// tests: it throws on anything a Prometheus server would reject or that the format forbids — a bad metric or
// label name, a sample before its family's HELP and TYPE, a family split in two, a duplicate series, an
// unparsable value, a negative counter, histogram buckets out of order or not cumulative, a +Inf bucket
// different from _count, a missing _sum.
export interface Sample { name: string, labels: Record<string, string>, value: number }
export interface Family { name: string, type: string, help: string, samples: Sample[] }

const metricName = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const labelName = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const types = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

export function parsePrometheusText (text: string): Map<string, Family> {
  const families = new Map<string, Family>()
  const finished = new Set<string>()
  const seen = new Set<string>()
  let current: Family | null = null
  const lines = text.split('\n')
  if (lines.at(-1) !== '') throw new Error('the exposition must end with a newline')
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${JSON.stringify(line)}`
    if (line === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (m === null) continue   // a plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      if (!metricName.test(name)) throw new Error(`${where}: bad metric name`)
      let family = families.get(name)
      if (family === undefined) {
        if (current !== null) finished.add(current.name)
        family = { name, type: '', help: '', samples: [] }
        families.set(name, family)
        current = family
      } else if (family !== current || family.samples.length > 0) {
        throw new Error(`${where}: ${kind} for ${name} after its samples or elsewhere`)
      }
      if (kind === 'TYPE') {
        if (family.type !== '') throw new Error(`${where}: second TYPE`)
        if (!types.has(rest)) throw new Error(`${where}: unknown type`)
        family.type = rest
      } else {
        if (family.help !== '') throw new Error(`${where}: second HELP`)
        if (rest === '') throw new Error(`${where}: empty HELP`)
        family.help = rest
      }
      continue
    }
    const sample = parseSample(line, where)
    const family = familyOf(sample.name, families)
    if (family === undefined || family.type === '' || family.help === '') throw new Error(`${where}: sample without HELP and TYPE before it`)
    if (family !== current || finished.has(family.name)) throw new Error(`${where}: family ${family.name} is not contiguous`)
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`
    if (seen.has(key)) throw new Error(`${where}: duplicate series`)
    seen.add(key)
    if (family.type === 'counter' && !(sample.value >= 0)) throw new Error(`${where}: a counter must be a non-negative number`)
    family.samples.push(sample)
  }
  for (const family of families.values()) if (family.type === 'histogram') checkHistogram(family)
  return families
}

// A histogram's _bucket/_sum/_count, a counter's optional _total, belong to the family without the suffix.
function familyOf (name: string, families: Map<string, Family>): Family | undefined {
  const exact = families.get(name)
  if (exact !== undefined) return exact
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const family = families.get(name.slice(0, -suffix.length))
    if (family !== undefined && (family.type === 'histogram' || family.type === 'summary')) return family
  }
  return undefined
}

function parseSample (line: string, where: string): Sample {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line)
  if (m === null) throw new Error(`${where}: not a sample line`)
  const name = m[1] as string
  const labels: Record<string, string> = {}
  let rest = m[3] ?? ''
  while (rest !== '') {
    const lm = /^([^=]+)="((?:[^"\\]|\\["\\n])*)"(,|$)/.exec(rest)
    if (lm === null) throw new Error(`${where}: bad labels at ${JSON.stringify(rest)}`)
    const label = lm[1] as string
    if (!labelName.test(label) || label.startsWith('__')) throw new Error(`${where}: bad label name ${label}`)
    if (label in labels) throw new Error(`${where}: label ${label} twice`)
    labels[label] = (lm[2] as string).replace(/\\(["\\n])/g, (_, c: string) => c === 'n' ? '\n' : c)
    rest = rest.slice(lm[0].length)
  }
  return { name, labels, value: parseValue(m[4] as string, where) }
}

function parseValue (text: string, where: string): number {
  // Prometheus reads values with Go's strconv.ParseFloat: NaN and Inf in any case (prom-client writes 'Nan').
  if (/^nan$/i.test(text)) return Number.NaN
  if (/^\+?inf(inity)?$/i.test(text)) return Number.POSITIVE_INFINITY
  if (/^-inf(inity)?$/i.test(text)) return Number.NEGATIVE_INFINITY
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`${where}: bad value ${text}`)
  return Number(text)
}

function checkHistogram (family: Family): void {
  const series = new Map<string, { buckets: Array<{ le: number, count: number }>, sum?: number, count?: number }>()
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    const entry = series.get(key) ?? { buckets: [] }
    series.set(key, entry)
    if (sample.name === `${family.name}_bucket`) {
      if (le === undefined) throw new Error(`${family.name}: a bucket without le`)
      entry.buckets.push({ le: parseValue(le, family.name), count: sample.value })
    } else if (sample.name === `${family.name}_sum`) entry.sum = sample.value
    else if (sample.name === `${family.name}_count`) entry.count = sample.value
    else throw new Error(`${family.name}: unexpected sample ${sample.name}`)
  }
  for (const [key, entry] of series) {
    const what = `${family.name}${key}`
    if (entry.sum === undefined || entry.count === undefined) throw new Error(`${what}: no _sum or _count`)
    for (let i = 1; i < entry.buckets.length; i++) {
      const a = entry.buckets[i - 1] as { le: number, count: number }
      const b = entry.buckets[i] as { le: number, count: number }
      if (!(b.le > a.le)) throw new Error(`${what}: bucket bounds not increasing (${a.le}, ${b.le})`)
      if (b.count < a.count) throw new Error(`${what}: bucket counts not cumulative (${a.count} then ${b.count})`)
    }
    const last = entry.buckets.at(-1)
    if (last === undefined || last.le !== Number.POSITIVE_INFINITY) throw new Error(`${what}: no +Inf bucket`)
    if (last.count !== entry.count) throw new Error(`${what}: +Inf bucket ${last.count} differs from _count ${entry.count}`)
  }
}

// The value of one series (labels matched exactly on the ones given), or undefined.
export function sampleValue (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const family = familyOf(name, families)
  const sample = family?.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  return sample?.value
}
