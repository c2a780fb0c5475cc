import { readFile, stat } from 'node:fs/promises'
import type { Command } from 'commander'
import { SparebandError } from '../../../protocol/errors.ts'
import { ApiClient, DaemonUnreachableError } from '../../api/client.ts'
import type { ApiStatus } from '../../api/server.ts'
import type { Wire } from '../../api/views.ts'
import { formatAgo, formatBitRate, formatTable, formatTokenAmount, shorten } from '../format.ts'
import { printJson, printLines } from '../output.ts'

/** Most nodes one `fleet` call queries. */
export const MAX_FLEET_NODES = 10_000
const MAX_NODE_FILE_BYTES = 1024 * 1024

/** Raised when the node list is missing, unreadable or too long. */
export class FleetInputError extends SparebandError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_FLEET_INPUT', message, options)
  }
}

/** One node's row: its status summary, or why it could not be read. */
export interface FleetRow {
  node: string
  ok: boolean
  peerId?: string
  spareUplinkBps?: number
  sharing?: string
  sessions?: number
  owed?: Array<{ token: string, amount: string }>
  lastSettlement?: { txHash: string, confirmedAt: number } | null
  error?: { code: string, message: string }
}

interface FleetOptions {
  nodes?: string[]
  file?: string
  concurrency: string
  timeout: string
  json?: boolean
}

/** `spareband fleet`: one line per node from many nodes' control APIs, queried in parallel. */
export function fleetCommand (program: Command): void {
  program.command('fleet')
    .description('query many nodes\' control APIs in parallel and print one row per node')
    .option('--nodes <url...>', 'control API URLs (http://host:8742)')
    .option('--file <path>', 'a file with one control API URL per line (# comments allowed)')
    .option('--concurrency <n>', 'nodes queried at the same time', '16')
    .option('--timeout <ms>', 'time limit per node', '5000')
    .option('--json', 'print JSON instead of a table')
    .action(async (opts: FleetOptions) => {
      const nodes = await fleetNodes(opts)
      const concurrency = positiveInt(opts.concurrency, '--concurrency', 256)
      const timeoutMs = positiveInt(opts.timeout, '--timeout', 600_000)
      const rows = await mapBounded(nodes, concurrency, async (node) => await queryNode(node, timeoutMs))
      const failed = rows.filter((r) => !r.ok).length
      if (failed > 0) process.exitCode = 1
      if (opts.json === true) {
        printJson(rows)
        return
      }
      const now = Date.now()
      printLines(...formatTable(rows, [
        { header: 'NODE', value: (r) => r.node },
        { header: 'PEER', value: (r) => r.peerId === undefined ? '-' : shorten(r.peerId, 6) },
        { header: 'SPARE', value: (r) => r.spareUplinkBps === undefined ? '-' : r.spareUplinkBps > 0 ? formatBitRate(r.spareUplinkBps) : `0 (${r.sharing ?? '?'})`, right: true },
        { header: 'SESSIONS', value: (r) => r.sessions === undefined ? '-' : String(r.sessions), right: true },
        { header: 'OWED', value: (r) => r.owed === undefined ? '-' : r.owed.length === 0 ? '0' : r.owed.map((o) => formatTokenAmount(o.amount, o.token)).join(', '), right: true },
        { header: 'LAST SETTLEMENT', value: (r) => r.lastSettlement === undefined ? '-' : r.lastSettlement === null ? 'never' : formatAgo(r.lastSettlement.confirmedAt, now) },
        { header: 'ERROR', value: (r) => r.error === undefined ? '' : `${r.error.code}: ${r.error.message.slice(0, 120)}` }
      ]), `${rows.length - failed} of ${rows.length} node(s) answered`)
    })
}

/** Reads one node's status; never throws (an error becomes the row's `error`). */
export async function queryNode (node: string, timeoutMs: number): Promise<FleetRow> {
  try {
    const status = await new ApiClient({ url: node, timeoutMs, maxResponseBytes: 1024 * 1024 }).get<Wire<ApiStatus>>('/api/status')
    const owed = new Map<string, bigint>()
    for (const o of status.owed) owed.set(o.token.toLowerCase(), (owed.get(o.token.toLowerCase()) ?? 0n) + BigInt(o.owed))
    return {
      node,
      ok: true,
      peerId: status.peerId,
      spareUplinkBps: status.spareUplinkBps,
      sharing: status.sharing,
      sessions: status.sessions.length,
      owed: [...owed].map(([token, amount]) => ({ token, amount: amount.toString() })),
      lastSettlement: status.lastSettlement
    }
  } catch (err: any) {
    const message = err instanceof DaemonUnreachableError ? `no answer: ${err.reason}` : String(err?.message ?? err)
    return { node, ok: false, error: { code: err?.code ?? 'ERR_FLEET_NODE', message } }
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results keep the input order. */
export async function mapBounded<T, R> (items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i])
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
  return out
}

async function fleetNodes (opts: FleetOptions): Promise<string[]> {
  const raw = [...(opts.nodes ?? [])]
  if (opts.file !== undefined) {
    try {
      if ((await stat(opts.file)).size > MAX_NODE_FILE_BYTES) throw new FleetInputError(`${opts.file} is larger than 1 MiB; split the fleet into several files`)
      raw.push(...(await readFile(opts.file, 'utf8')).split('\n').map((l) => l.replace(/#.*/, '').trim()))
    } catch (err: any) {
      if (err instanceof FleetInputError) throw err
      throw new FleetInputError(`cannot read ${opts.file}: ${err?.message ?? err}`, { cause: err })
    }
  }
  const nodes = [...new Set(raw.filter((n) => n !== '').map(nodeUrl))]
  if (nodes.length === 0) throw new FleetInputError('no nodes given; pass --nodes http://host:8742 … or --file nodes.txt')
  if (nodes.length > MAX_FLEET_NODES) throw new FleetInputError(`${nodes.length} nodes exceed the limit of ${MAX_FLEET_NODES}; split the fleet into several calls`)
  return nodes
}

/** `host:port` or a URL → the node's base URL. */
function nodeUrl (value: string): string {
  const withScheme = /^https?:\/\//i.test(value) ? value : `http://${value}`
  if (!URL.canParse(withScheme)) throw new FleetInputError(`"${value}" is not a node address; use http://host:8742`)
  return new URL(withScheme).toString()
}

function positiveInt (value: string, flag: string, max: number): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1 || n > max) throw new FleetInputError(`${flag} must be an integer from 1 to ${max}`)
  return n
}
