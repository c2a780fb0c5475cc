import { defaultRouteInterface } from '../ip-route.ts'
import type { CommandRunner } from '../command.ts'
import type { PlatformProbe } from '../kernel-adapter.ts'

/** Generic Linux: the uplink is the default route's interface; Wi-Fi is not managed. */
export function linuxPlatform (init: { runner: CommandRunner }): PlatformProbe {
  return {
    kind: 'linux',
    async preflight () {
      return []
    },
    async uplinkInterface () {
      return await defaultRouteInterface(init.runner)
    },
    async wirelessState () {
      return { supported: false, reason: 'the generic Linux adapter does not manage Wi-Fi; on a Raspberry Pi or OpenWrt device use that adapter', uplink: null, hotspots: [] }
    }
  }
}
