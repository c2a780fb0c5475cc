import { isIPv4 } from 'node:net'
import { assertInterfaceName, normalizeGatewayClient } from './validate.ts'
import { InvalidGatewayClientError } from './errors.ts'
import { parseIpJson } from './ip-json.ts'
import type { CommandRunner } from './command.ts'

/** One entry of the kernel's neighbour (ARP) table, as `ip -j neigh` lists it. */
export interface NeighbourEntry {
  ip: string
  /** Lower-case link-layer address, or null while unresolved. */
  mac: string | null
  /** Interface, when the listing names it (`ip neigh show … dev X` leaves it out). */
  interface: string | null
  /** NUD states, e.g. `["REACHABLE"]`, `["STALE"]`, `["FAILED"]`. */
  state: string[]
}

/** States in which the entry's MAC is the host that answered last, not a failed or pending lookup. */
const USABLE_STATES = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP'])

/** Parses `ip -j neigh show …`. */
export function parseNeighbours (stdout: string): NeighbourEntry[] {
  return parseIpJson('ip -j neigh', stdout)
    .filter((r) => typeof r.dst === 'string')
    .map((r) => ({
      ip: r.dst as string,
      mac: typeof r.lladdr === 'string' ? r.lladdr.toLowerCase() : null,
      interface: typeof r.dev === 'string' ? r.dev : null,
      state: Array.isArray(r.state) ? r.state.filter((s): s is string => typeof s === 'string') : []
    }))
}

/**
 * The MAC address the kernel's neighbour table holds for `ip` on `iface`, or null when
 * the host is not a resolved neighbour on that interface (not on the LAN, or its ARP
 * lookup failed). A host with a live TCP connection to us is always resolved.
 */
export async function neighbourMac (runner: CommandRunner, ip: string, iface: string): Promise<string | null> {
  assertInterfaceName(iface, 'interface')
  if (!isIPv4(ip)) throw new InvalidGatewayClientError(`neighbour lookup needs a dotted-quad IPv4 address, got ${JSON.stringify(ip)}`)
  const { stdout } = await runner(['ip', '-j', 'neigh', 'show', ip, 'dev', iface])
  const entry = parseNeighbours(stdout).find((e) => e.ip === ip && e.mac !== null && e.state.some((s) => USABLE_STATES.has(s)))
  if (entry?.mac == null) return null
  try {
    return normalizeGatewayClient({ ip, mac: entry.mac }).mac
  } catch {
    return null
  }
}
