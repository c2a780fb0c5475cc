import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { parseCounters, parseFlowtables, parseMapElements, parseNftJson, parseTables } from '../../hardware/nftables/parse.ts'
import { parseDefaultRoutes } from '../../hardware/ip-route.ts'
import { parseNeighbours } from '../../hardware/neighbour.ts'
import { parseInterfaceCounters } from '../../hardware/sysfs.ts'
import { hotspotsOf, parseInterfaceStatus, parseIwinfoInfo, parseSystemBoard, parseWirelessStatus } from '../../hardware/platforms/ubus.ts'
import { parseActiveConnections, parseTerseFields, splitTerseLine } from '../../hardware/platforms/nmcli.ts'
import { UnexpectedOutputError } from '../../hardware/errors.ts'

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/hardware/${name}`, import.meta.url), 'utf8')

describe('nft -j parsers (captured output)', () => {
  it('reads named counters as bigint, with client and table-wide names', () => {
    const counters = parseCounters(parseNftJson(fixture('nft/reset-counters-table.json')))
    const byName = new Map(counters.map((c) => [c.name, c]))
    assert.equal(byName.get('up_0a5b0102')?.bytes, 100952n)
    assert.equal(byName.get('down_0a5b0102')?.packets, 19n)
    assert.equal(byName.get('total_down')?.bytes, 402044n)
    assert.equal(typeof byName.get('total_up')?.bytes, 'bigint')
    assert.equal(counters.length, 9)
  })

  it('reads the several JSON documents of a multi-command call', () => {
    const counters = parseCounters(parseNftJson(fixture('nft/reset-counter-two.json')))
    assert.deepEqual(counters.map((c) => c.name), ['up_0a5b0102', 'down_0a5b0102'])
  })

  it('keeps 64-bit counters exact beyond 2^53', () => {
    const doc = '{"nftables": [{"counter": {"family": "inet", "name": "total_up", "table": "spareband", "handle": 1, "packets": 18446744073709551615, "bytes": 9007199254740993}}]}'
    const [c] = parseCounters(parseNftJson(doc))
    assert.equal(c.packets, 18446744073709551615n)
    assert.equal(c.bytes, 9007199254740993n)
  })

  it('reads concatenated and plain map elements', () => {
    const up = parseMapElements(parseNftJson(fixture('nft/list-map-client_up.json')), 'client_up')
    assert.deepEqual(up.map((e) => e.key).sort(), [['10.91.1.3', '02:5b:00:00:00:03'], ['10.91.1.2', up.find((e) => e.key[0] === '10.91.1.2')?.key[1] ?? '']].sort())
    assert.ok(up.every((e) => /^up_[0-9a-f]{8}$/.test(e.value)))
    const down = parseMapElements(parseNftJson(fixture('nft/list-map-client_down.json')), 'client_down')
    assert.deepEqual(down.map((e) => e.key.length), [1, 1])
    assert.throws(() => parseMapElements(parseNftJson(fixture('nft/list-map-client_down.json')), 'client_up'), UnexpectedOutputError)
  })

  it('reads tables and flowtables', () => {
    assert.deepEqual(parseTables(parseNftJson(fixture('nft/list-tables.json'))), [{ family: 'inet', name: 'spareband' }])
    assert.deepEqual(parseFlowtables(parseNftJson(fixture('nft/list-flowtables-none.json'))), [])
    assert.deepEqual(parseFlowtables(parseNftJson(fixture('nft/list-flowtables-fw4.json'))), ['inet fw4 ft', 'inet other solo'])
    const table = parseNftJson(fixture('nft/list-table-spareband.json'))
    assert.ok(table.some((o) => 'chain' in o && o.chain.name === 'forward' && o.chain.hook === 'forward'))
  })

  it('rejects output that is not nft JSON', () => {
    assert.throws(() => parseNftJson('Error: syntax error'), UnexpectedOutputError)
    assert.throws(() => parseNftJson('{"tables": []}'), UnexpectedOutputError)
  })
})

describe('ip -j and sysfs parsers (captured output)', () => {
  it('finds the default route interface, best metric first', () => {
    assert.deepEqual(parseDefaultRoutes(fixture('ip/route-show-default.json')), [{ interface: 'wan0', gateway: '10.91.2.2', metric: 0 }])
    assert.deepEqual(parseDefaultRoutes(fixture('ip/route-show-default-none.json')), [])
    assert.deepEqual(parseDefaultRoutes(fixture('ip/route-show-default-multi.json')).map((r) => r.interface), ['wan0', 'lan0'])
    assert.throws(() => parseDefaultRoutes('Error: any valid prefix is expected rather than "x".'), UnexpectedOutputError)
    assert.throws(() => parseDefaultRoutes('{"dst":"default"}'), UnexpectedOutputError)
  })

  it('reads the neighbour table with and without the device named', () => {
    const resolved = { ip: '10.91.1.2', mac: '02:5b:00:00:00:02', state: ['DELAY'] }
    const failed = { ip: '10.91.1.77', mac: null, state: ['FAILED'] }
    assert.deepEqual(parseNeighbours(fixture('ip/neigh-show-dev-lan0.json')), [{ ...failed, interface: null }, { ...resolved, interface: null }])
    assert.deepEqual(parseNeighbours(fixture('ip/neigh-show.json')), [{ ...failed, interface: 'lan0' }, { ...resolved, interface: 'lan0' }])
    assert.deepEqual(parseNeighbours(''), [])
    assert.throws(() => parseNeighbours('Object "neigh" is unknown'), UnexpectedOutputError)
  })

  it('reads the four interface statistics', () => {
    const c = parseInterfaceCounters(fixture('sysfs-statistics-lan0.txt'))
    assert.equal(typeof c.rxBytes, 'bigint')
    assert.ok(c.rxBytes > 0n && c.txPackets > 0n)
    assert.throws(() => parseInterfaceCounters('12\n'), UnexpectedOutputError)
  })
})

describe('ubus parsers (transcribed OpenWrt output)', () => {
  it('reads the wan interface status', () => {
    assert.deepEqual(parseInterfaceStatus(fixture('ubus/network.interface.wan-status.json')), { up: true, l3Device: 'wan', proto: 'dhcp', ipv4Addresses: ['203.0.113.45/24'] })
    const down = parseInterfaceStatus(fixture('ubus/network.interface.wan-status-down.json'))
    assert.equal(down.up, false)
    assert.equal(down.l3Device, null)
  })

  it('reads the board and release', () => {
    const b = parseSystemBoard(fixture('ubus/system-board.json'))
    assert.equal(b.model, 'Xiaomi Mi Router 4A Gigabit Edition')
    assert.equal(b.version, '23.05.3')
  })

  it('finds hotspots and the station in network.wireless status (22.03+ and 21.02)', () => {
    const ifaces = parseWirelessStatus(fixture('ubus/network.wireless-status.json'))
    assert.deepEqual(hotspotsOf(ifaces), [{ interface: 'phy0-ap0', ssid: 'spareband-guest', up: true, band: '2g', channel: 1 }])
    assert.deepEqual(ifaces.find((i) => i.mode === 'sta')?.ifname, 'phy0-sta0')
    assert.deepEqual(hotspotsOf(parseWirelessStatus(fixture('ubus/network.wireless-status-21.02.json'))), [{ interface: 'wlan0', ssid: 'hotspot', up: true, band: '11g', channel: 7 }])
  })

  it('reads iwinfo signal and frequency', () => {
    assert.deepEqual(parseIwinfoInfo(fixture('ubus/iwinfo-info-sta.json')), { ssid: 'Upstream Net', mode: 'Client', signalDbm: -62, frequencyMhz: 2412 })
  })
})

describe('nmcli -t parsers (transcribed NetworkManager output)', () => {
  it('undoes terse escapes', () => {
    assert.deepEqual(splitTerseLine('a\\:b:c\\\\d:'), ['a:b', 'c\\d', ''])
  })

  it('reads active connections, colons in names included', () => {
    const active = parseActiveConnections(fixture('nmcli/connection-show-active.txt'))
    assert.equal(active.length, 4)
    assert.deepEqual(active[0], { name: 'Hotspot', uuid: '4b1f2a0e-7d3c-4f7e-9a55-2c8d1e0b6a11', type: '802-11-wireless', device: 'wlan0' })
    assert.equal(active[3].name, 'Home: 5GHz')
  })

  it('reads multiline terse fields', () => {
    const hotspot = parseTerseFields(fixture('nmcli/connection-show-hotspot.txt'))
    assert.equal(hotspot.get('802-11-wireless.mode'), 'ap')
    assert.equal(hotspot.get('802-11-wireless.ssid'), 'spareband-pi')
    assert.equal(parseTerseFields(fixture('nmcli/connection-show-uplink.txt')).get('802-11-wireless.ssid'), 'Home: 5GHz')
  })
})
