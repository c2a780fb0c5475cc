import { UnexpectedOutputError } from './errors.ts'

/**
 * Parses the JSON array that iproute2's `ip -j …` prints (empty output is an empty
 * list) and returns its object rows; `tool` names the command in the error.
 */
export function parseIpJson (tool: string, stdout: string): Array<Record<string, unknown>> {
  let rows: unknown
  try {
    rows = JSON.parse(stdout.trim() === '' ? '[]' : stdout)
  } catch (err) {
    throw new UnexpectedOutputError(tool, `not JSON (${(err as Error).message})`)
  }
  if (!Array.isArray(rows)) throw new UnexpectedOutputError(tool, 'not an array')
  return rows.filter((r): r is Record<string, unknown> => typeof r === 'object' && r !== null && !Array.isArray(r))
}
