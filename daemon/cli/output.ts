/**
 * The CLI's only writer to stdout. Commands print either human text or, with
 * `--json`, one JSON document; bigints are printed as decimal strings.
 */
export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v, 2) + '\n')
}

/** Prints lines of human-readable text to stdout. */
export function printLines (...lines: string[]): void {
  process.stdout.write(lines.join('\n') + '\n')
}
