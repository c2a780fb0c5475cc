import { assertInterfaceName } from './validate.ts'
import { UnexpectedOutputError } from './errors.ts'
import type { CommandRunner } from './command.ts'

/** Monotonic kernel counters of one network interface (`/sys/class/net/IF/statistics`). */
export interface InterfaceCounters {
  rxBytes: bigint
  rxPackets: bigint
  txBytes: bigint
  txPackets: bigint
}

const FILES = ['rx_bytes', 'rx_packets', 'tx_bytes', 'tx_packets'] as const

/**
 * Reads an interface's sysfs statistics with one `cat` through the runner, so the
 * read happens in the runner's network namespace (`ip netns exec` mounts that
 * namespace's sysfs). These count L2 frames (Ethernet header included) of every
 * protocol, in both directions, since the interface was created.
 */
export async function readInterfaceCounters (runner: CommandRunner, iface: string): Promise<InterfaceCounters> {
  assertInterfaceName(iface, 'interface')
  const { stdout } = await runner(['cat', ...FILES.map((f) => `/sys/class/net/${iface}/statistics/${f}`)])
  return parseInterfaceCounters(stdout)
}

/** Parses the four values `cat rx_bytes rx_packets tx_bytes tx_packets` printed, one per line. */
export function parseInterfaceCounters (stdout: string): InterfaceCounters {
  const values = stdout.trim().split('\n').map((s) => s.trim())
  if (values.length !== 4 || !values.every((v) => /^\d+$/.test(v))) {
    throw new UnexpectedOutputError('sysfs statistics', `expected 4 counters, got ${JSON.stringify(stdout.slice(0, 80))}`)
  }
  const [rxBytes, rxPackets, txBytes, txPackets] = values.map((v) => BigInt(v))
  return { rxBytes, rxPackets, txBytes, txPackets }
}

/** `ARPHRD_ETHER`: Ethernet, Wi-Fi (mac80211 shows 802.3 frames), veth, bridges, VLANs. */
const ARPHRD_ETHER = 1
/** Bytes of the Ethernet header the statistics count in every frame. */
export const ETHERNET_HEADER_BYTES = 14

/**
 * Bytes of link-layer header each frame carries in the interface's statistics:
 * {@link ETHERNET_HEADER_BYTES} for Ethernet-like links, 0 for links without one
 * (PPP, tun, WireGuard). Subtracting `packets ×` this from the byte counts gives
 * IP-layer bytes, what the gateway's nftables counters count.
 */
export async function linkHeaderBytes (runner: CommandRunner, iface: string): Promise<number> {
  assertInterfaceName(iface, 'interface')
  const { stdout } = await runner(['cat', `/sys/class/net/${iface}/type`])
  const type = stdout.trim()
  if (!/^\d+$/.test(type)) throw new UnexpectedOutputError('sysfs type', `expected a number, got ${JSON.stringify(type.slice(0, 40))}`)
  return Number(type) === ARPHRD_ETHER ? ETHERNET_HEADER_BYTES : 0
}
