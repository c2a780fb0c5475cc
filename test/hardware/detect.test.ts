import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { pino } from 'pino'
import { gatherPlatformFacts, parseOpenwrtRelease, selectAdapterKind } from '../../hardware/detect.ts'
import { createHardwareAdapter } from '../../hardware/index.ts'
import { AdapterConfigError } from '../../hardware/errors.ts'

const root = (name: string): string => fileURLToPath(new URL(`../fixtures/hardware/platforms/${name}/`, import.meta.url))

describe('adapter selection on platform fixtures', () => {
  it('OpenWrt 23.05 with fw4 → openwrt', () => {
    const facts = gatherPlatformFacts(root('openwrt-23.05'))
    assert.deepEqual(facts.commands, { nft: true, ubus: true, uci: true, nmcli: false })
    const s = selectAdapterKind(facts)
    assert.equal(s.kind, 'openwrt')
    assert.match(s.reason, /OpenWrt 23\.05\.3/)
  })

  it('OpenWrt 21.02 (fw3, no nft) → simulated, saying why', () => {
    const s = selectAdapterKind(gatherPlatformFacts(root('openwrt-21.02')))
    assert.equal(s.kind, 'simulated')
    assert.match(s.reason, /no nftables/)
  })

  it('Raspberry Pi with nft → raspberrypi; without nft → simulated', () => {
    const pi = gatherPlatformFacts(root('raspberrypi-5'))
    assert.equal(pi.deviceTreeModel, 'Raspberry Pi 5 Model B Rev 1.0', 'the trailing NUL is stripped')
    assert.equal(selectAdapterKind(pi).kind, 'raspberrypi')
    assert.equal(selectAdapterKind(gatherPlatformFacts(root('raspberrypi-no-nft'))).kind, 'simulated')
  })

  it('Debian with nft → linux; without → simulated', () => {
    assert.equal(selectAdapterKind(gatherPlatformFacts(root('debian-12'))).kind, 'linux')
    const bare = selectAdapterKind(gatherPlatformFacts(root('bare')))
    assert.equal(bare.kind, 'simulated')
    assert.match(bare.reason, /nft not found/)
  })

  it('config overrides detection, but not into a kernel adapter without nft', () => {
    assert.equal(selectAdapterKind(gatherPlatformFacts(root('openwrt-23.05')), 'linux').kind, 'linux')
    assert.equal(selectAdapterKind(gatherPlatformFacts(root('debian-12')), 'simulated').kind, 'simulated')
    assert.throws(() => selectAdapterKind(gatherPlatformFacts(root('bare')), 'linux'), AdapterConfigError)
    assert.throws(() => selectAdapterKind(gatherPlatformFacts(root('debian-12')), 'openwrt'), AdapterConfigError)
  })

  it('this machine has nft installed and is detected as linux', () => {
    assert.equal(selectAdapterKind(gatherPlatformFacts()).kind, 'linux')
  })

  it('parses /etc/openwrt_release', () => {
    const r = parseOpenwrtRelease("DISTRIB_ID='OpenWrt'\nDISTRIB_RELEASE=\"23.05.3\"\nDISTRIB_TAINTS=''\n# comment\n")
    assert.equal(r.get('DISTRIB_ID'), 'OpenWrt')
    assert.equal(r.get('DISTRIB_RELEASE'), '23.05.3')
    assert.equal(r.get('DISTRIB_TAINTS'), '')
  })

  it('builds the selected adapter; a kernel adapter needs the LAN interface', () => {
    const logger = pino({ level: 'silent' })
    const sim = createHardwareAdapter({}, { logger, facts: gatherPlatformFacts(root('bare')) })
    assert.equal(sim.adapter.kind, 'simulated')
    assert.equal(sim.adapter.capabilities().simulated, true)
    const owrt = createHardwareAdapter({ lanInterface: 'br-guest' }, { logger, facts: gatherPlatformFacts(root('openwrt-23.05')) })
    assert.equal(owrt.adapter.kind, 'openwrt')
    assert.equal(owrt.adapter.capabilities().simulated, false)
    assert.throws(() => createHardwareAdapter({}, { logger, facts: gatherPlatformFacts(root('debian-12')) }), AdapterConfigError)
  })
})
