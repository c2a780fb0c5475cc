import { accessSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AdapterConfigError } from './errors.ts'
import type { AdapterKind } from './adapter.ts'

/** What adapter selection looks at, gathered by {@link gatherPlatformFacts}. */
export interface PlatformFacts {
  /** Content of `/etc/openwrt_release`, null when absent. */
  openwrtRelease: string | null
  /** Content of `/proc/device-tree/model` without its trailing NUL, null when absent. */
  deviceTreeModel: string | null
  /** Which of the tools spareband drives are installed. */
  commands: { nft: boolean, ubus: boolean, uci: boolean, nmcli: boolean }
}

/** The adapter a config asks for: one kind, or `auto` for detection. */
export type AdapterChoice = AdapterKind | 'auto'

/** The outcome of {@link selectAdapterKind}. */
export interface AdapterSelection {
  kind: AdapterKind
  /** Why, in words for the log and status. */
  reason: string
}

/** Directories searched for the tools, as on Debian, Raspberry Pi OS and OpenWrt. */
export const TOOL_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'] as const

/** Parses `/etc/openwrt_release` (shell `KEY='value'` lines) into a map. */
export function parseOpenwrtRelease (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(?:'([^']*)'|"([^"]*)"|(\S*))\s*$/.exec(line)
    if (m !== null) out.set(m[1], m[2] ?? m[3] ?? m[4] ?? '')
  }
  return out
}

/**
 * Chooses the adapter from facts, pure so it can be tested on fixtures. A kind named
 * in the config wins, but a kernel adapter without `nft` is refused (say `simulated`
 * to run without one).
 */
export function selectAdapterKind (facts: PlatformFacts, choice: AdapterChoice = 'auto'): AdapterSelection {
  if (choice !== 'auto') {
    if (choice !== 'simulated' && !facts.commands.nft) {
      throw new AdapterConfigError(`hardware.adapter is "${choice}" but nft is not installed: install nftables, or set hardware.adapter to "simulated" to run without kernel metering`)
    }
    if (choice === 'openwrt' && !facts.commands.ubus) {
      throw new AdapterConfigError('hardware.adapter is "openwrt" but ubus is not installed: this does not look like OpenWrt; use "linux" or "auto"')
    }
    return { kind: choice, reason: `set by config (hardware.adapter = "${choice}")` }
  }
  if (facts.openwrtRelease !== null) {
    const release = parseOpenwrtRelease(facts.openwrtRelease)
    const name = release.get('DISTRIB_DESCRIPTION') ?? `OpenWrt ${release.get('DISTRIB_RELEASE') ?? ''}`.trim()
    if (facts.commands.nft && facts.commands.ubus) return { kind: 'openwrt', reason: `${name} with fw4 (nftables)` }
    return { kind: 'simulated', reason: `${name} has no nftables (fw3/iptables firmware, 21.02 or older): upgrade to 22.03 or later for kernel metering` }
  }
  if (facts.deviceTreeModel !== null && facts.deviceTreeModel.includes('Raspberry Pi')) {
    if (facts.commands.nft) {
      return { kind: 'raspberrypi', reason: `${facts.deviceTreeModel}${facts.commands.nmcli ? '' : ' (nmcli not found: Wi-Fi state unavailable)'}` }
    }
    return { kind: 'simulated', reason: `${facts.deviceTreeModel} without nft: apt install nftables for kernel metering` }
  }
  if (facts.commands.nft) return { kind: 'linux', reason: 'Linux with nftables' }
  return { kind: 'simulated', reason: 'nft not found: install nftables for kernel metering' }
}

function readOrNull (path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return null
  }
}

function hasTool (root: string, name: string): boolean {
  return TOOL_DIRS.some((dir) => {
    try {
      accessSync(join(root, dir, name))
      return true
    } catch {
      return false
    }
  })
}

/** Gathers {@link PlatformFacts} from the filesystem under `root` (default `/`; tests pass a fixture directory). */
export function gatherPlatformFacts (root = '/'): PlatformFacts {
  const model = readOrNull(join(root, 'proc/device-tree/model'))
  return {
    openwrtRelease: readOrNull(join(root, 'etc/openwrt_release')),
    deviceTreeModel: model === null ? null : model.replace(/\0+$/, '').trim(),
    commands: { nft: hasTool(root, 'nft'), ubus: hasTool(root, 'ubus'), uci: hasTool(root, 'uci'), nmcli: hasTool(root, 'nmcli') }
  }
}
