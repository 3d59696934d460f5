// How every bench section prints: one aligned line per figure, medians, fixed number formats.
export function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

export function fmt (n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

export function line (name: string, value: string, extra = ''): void {
  process.stdout.write(`${name.padEnd(44)} ${value.padStart(14)}  ${extra}\n`)
}
