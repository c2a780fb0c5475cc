import { defaultRouteInterface } from '../ip-route.ts'
import { hotspotsOf, parseInterfaceStatus, parseIwinfoInfo, parseSystemBoard, parseWirelessStatus } from './ubus.ts'
import { AdapterStateError } from '../errors.ts'
import type { CommandRunner } from '../command.ts'
import type { PlatformProbe } from '../kernel-adapter.ts'
import type { WirelessState, WirelessUplink } from '../adapter.ts'

/** Settings of {@link openwrtPlatform}. */
export interface OpenwrtPlatformInit {
  runner: CommandRunner
  /** netifd interface of the uplink (default `wan`). */
  wanNetwork?: string
}

/**
 * OpenWrt (22.03+, fw4): network and wireless facts from `ubus`, firewall settings
 * from `uci`. spareband's table coexists with fw4's `inet fw4`, which it never edits:
 * fw4 only flushes and rebuilds its own table on reload.
 */
export function openwrtPlatform (init: OpenwrtPlatformInit): PlatformProbe {
  const run = init.runner
  const wanNetwork = init.wanNetwork ?? 'wan'
  return {
    kind: 'openwrt',
    async preflight () {
      const offload = await run(['uci', '-q', 'get', 'firewall.@defaults[0].flow_offloading'], { allowFailure: true })
      if (offload.exitCode === 0 && offload.stdout.trim() === '1') {
        throw new AdapterStateError('fw4 flow offloading is on: offloaded packets skip the forward hook, so spareband could neither meter nor limit them. Run: uci set firewall.@defaults[0].flow_offloading=0; uci commit firewall; /etc/init.d/firewall reload')
      }
      const board = parseSystemBoard((await run(['ubus', 'call', 'system', 'board'])).stdout)
      return [`${board.description ?? 'OpenWrt'} on ${board.model ?? 'unknown board'}`]
    },
    async uplinkInterface () {
      const res = await run(['ubus', 'call', `network.interface.${wanNetwork}`, 'status'], { allowFailure: true })
      if (res.exitCode === 0) {
        const status = parseInterfaceStatus(res.stdout)
        if (status.up && status.l3Device !== null) return status.l3Device
      }
      return await defaultRouteInterface(run)
    },
    async wirelessState (): Promise<WirelessState> {
      const ifaces = parseWirelessStatus((await run(['ubus', 'call', 'network.wireless', 'status'])).stdout)
      const sta = ifaces.find((i) => i.mode === 'sta' && i.ifname !== null)
      let uplink: WirelessUplink | null = null
      if (sta !== undefined) {
        const info = parseIwinfoInfo((await run(['ubus', 'call', 'iwinfo', 'info', JSON.stringify({ device: sta.ifname })])).stdout)
        uplink = { interface: sta.ifname as string, ssid: info.ssid ?? sta.ssid ?? '', signalDbm: info.signalDbm, frequencyMhz: info.frequencyMhz }
      }
      return { supported: true, reason: null, uplink, hotspots: hotspotsOf(ifaces) }
    }
  }
}
