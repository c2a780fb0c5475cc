/**
 * Human-readable figures for the CLI: amounts in token units, byte counts,
 * bit rates, ages, and plain-text tables. Pure; the output module prints.
 */

const NATIVE = '0x0000000000000000000000000000000000000000'

/** "native coin" for the zero address, else the token address shortened. */
export function tokenLabel (token: string): string {
  return token.toLowerCase() === NATIVE ? 'native coin' : shorten(token, 4)
}

/**
 * An amount in base units (decimal string or bigint) for people: the native coin
 * with 18 decimals (6 shown, or 3 significant digits below 1), an ERC-20 token in base units (its decimals
 * are not known without a chain lookup).
 */
export function formatAmount (value: string | bigint, token: string): string {
  const v = BigInt(value)
  if (token.toLowerCase() !== NATIVE) return `${v.toLocaleString('en-US')} units`
  const base = 10n ** 18n
  const whole = v / base
  const digits = (v % base).toString().padStart(18, '0')
  // 6 decimals, or 3 significant digits of an amount below 1
  const frac = digits.slice(0, whole > 0n ? 6 : Math.max(6, digits.search(/[1-9]/) + 3)).replace(/0+$/, '')
  return `${whole.toLocaleString('en-US')}${frac === '' ? '' : `.${frac}`}`
}

/** An amount with its token, e.g. "0.0123 native coin". */
export function formatTokenAmount (value: string | bigint, token: string): string {
  return token.toLowerCase() === NATIVE ? `${formatAmount(value, token)} native coin` : `${formatAmount(value, token)} of ${shorten(token, 4)}`
}

/** A byte count with a binary unit, e.g. "1.50 MiB". */
export function formatBytes (value: string | bigint | number): string {
  let b = Number(value)
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++ }
  return `${i === 0 ? b.toFixed(0) : b.toFixed(b < 10 ? 2 : 1)} ${units[i]}`
}

/** Bits per second as Mbit/s. */
export function formatBitRate (bps: number): string {
  return `${(bps / 1e6).toFixed(1)} Mbit/s`
}

/** How long ago `atMs` was, relative to `nowMs`. */
export function formatAgo (atMs: number, nowMs: number): string {
  const s = Math.max(0, Math.round((nowMs - atMs) / 1000))
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return `${Math.round(s / 86400)} d ago`
}

/** `0x1234…abcd`-style shortening of long identifiers. */
export function shorten (value: string, keep = 6): string {
  const prefix = value.startsWith('0x') ? 2 : 0
  return value.length <= prefix + 2 * keep + 1 ? value : `${value.slice(0, prefix + keep)}…${value.slice(-keep)}`
}

/** One column of {@link formatTable}. */
export interface Column<T> {
  header: string
  value: (row: T) => string
  /** Right-aligned (numbers). */
  right?: boolean
}

/** A plain-text table with a header line; columns are padded to their widest cell. */
export function formatTable<T> (rows: readonly T[], columns: ReadonlyArray<Column<T>>): string[] {
  const cells = rows.map((r) => columns.map((c) => c.value(r)))
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((row) => [...row[i]].length)))
  const line = (values: string[]): string => values.map((v, i) => {
    const pad = ' '.repeat(widths[i] - [...v].length)
    return columns[i].right === true ? pad + v : v + pad
  }).join('  ').trimEnd()
  return [line(columns.map((c) => c.header)), ...cells.map(line)]
}
