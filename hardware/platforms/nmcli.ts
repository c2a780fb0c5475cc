/**
 * Parsers of NetworkManager's `nmcli -t` (terse) output. In terse mode fields are
 * separated by `:`, and a `:` or `\` inside a value is escaped with a backslash.
 */

/** Splits one terse line into its fields, undoing the escapes. */
export function splitTerseLine (line: string): string[] {
  const fields: string[] = []
  let current = ''
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]
    if (ch === '\\' && i + 1 < line.length) {
      current += line[++i]
    } else if (ch === ':') {
      fields.push(current)
      current = ''
    } else {
      current += ch
    }
  }
  fields.push(current)
  return fields
}

/** An active connection (`nmcli -t -f NAME,UUID,TYPE,DEVICE connection show --active`). */
export interface ActiveConnection {
  name: string
  uuid: string
  type: string
  device: string
}

/** Parses `nmcli -t -f NAME,UUID,TYPE,DEVICE connection show --active`. */
export function parseActiveConnections (stdout: string): ActiveConnection[] {
  return stdout.split('\n').filter((l) => l.trim() !== '').map(splitTerseLine)
    .filter((f) => f.length === 4)
    .map(([name, uuid, type, device]) => ({ name, uuid, type, device }))
}

/**
 * Parses multiline terse output such as
 * `nmcli -t -f 802-11-wireless.mode,802-11-wireless.ssid connection show uuid U`:
 * one `field:value` per line (only the first unescaped `:` separates).
 */
export function parseTerseFields (stdout: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue
    const [key, ...rest] = splitTerseLine(line)
    out.set(key, rest.join(':'))
  }
  return out
}
