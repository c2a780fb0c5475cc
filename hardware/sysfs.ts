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
