/**
 * The nftables gateway for real: three network namespaces (client, gateway, upstream),
 * kernel forwarding and NAT, spareband's table in the gateway namespace driven by the
 * linux adapter through `ip netns exec`.
 */
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { pino } from 'pino'
import { createTopology, inNs, netnsUnavailable, type Topology } from './netns.ts'
import { sendTraffic, startServer, stopChild } from './helpers.ts'
import { createHardwareAdapter, commandRunner, netnsPrefix, type HardwareAdapter, type CounterReading } from '../../hardware/index.ts'
import { gatherPlatformFacts } from '../../hardware/detect.ts'
import { readInterfaceCounters } from '../../hardware/sysfs.ts'
import { TABLE_NAME } from '../../hardware/nftables/ruleset.ts'

const unavailable = netnsUnavailable()
if (unavailable !== null) process.stdout.write(`# SKIP hardware gateway tests: ${unavailable}\n`)

const PORT = 5301
const DECOY = `table ip decoy {
  set blocked { type ipv4_addr; elements = { 192.0.2.7 } }
  chain decoy_forward {
    type filter hook forward priority 10; policy accept;
    ip saddr @blocked drop
  }
}
`

function within (actual: bigint, expected: bigint, fraction: number): boolean {
  const diff = actual > expected ? actual - expected : expected - actual
  return Number(diff) <= Number(expected) * fraction
}

describe('nftables gateway in network namespaces', { skip: unavailable ?? false }, () => {
  let t: Topology
  let server: ChildProcess | undefined
  let adapter: HardwareAdapter
  let rulesetBefore: string
  let decoyBefore: string
  const log = pino({ level: 'silent' })
  const gw = (...argv: string[]): string => inNs(t.gateway, ...argv)
  const client = (): { ip: string, mac: string } => ({ ip: t.clientIp, mac: t.clientMac })
  const send = async (up: number, down: number, timeoutMs = 8000) => await sendTraffic(t.client, t.upstreamIp, PORT, up, down, timeoutMs)
  const mine = (r: CounterReading) => r.clients.find((c) => c.ip === t.clientIp)

  before(async () => {
    t = createTopology()
    execFileSync('ip', ['netns', 'exec', t.gateway, 'nft', '-f', '-'], { input: DECOY })
    rulesetBefore = gw('nft', '-j', 'list', 'ruleset')
    decoyBefore = gw('nft', '-j', 'list', 'table', 'ip', 'decoy')
    server = await startServer(t.upstream, t.upstreamIp, PORT, 120)
    adapter = createHardwareAdapter(
      { adapter: 'linux', lanInterface: t.lanIf, wanInterface: t.wanIf, exitMatch: { uid: 65534 } },
      { logger: log, runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), facts: gatherPlatformFacts() }
    ).adapter
    await adapter.start()
  })

  after(async () => {
    await stopChild(server)
    try { await adapter?.stop() } catch {}
    t?.destroy()
  })

  it('reports a kernel adapter, not a simulated one', () => {
    const caps = adapter.capabilities()
    assert.equal(caps.simulated, false)
    assert.equal(caps.gateway, true)
    assert.equal(adapter.status().started, true)
    assert.ok(caps.notes.some((n) => n.includes('ip_forward')), 'start turned on ip_forward in the gateway namespace')
  })

  it('drops an unpaid client in forward and counts the drops', async () => {
    const res = await send(1000, 1000, 1500)
    assert.equal(res.ok, false, 'an unpaid client must not reach upstream')
    const r = await adapter.readCounters()
    assert.ok(r.droppedUnpaid.packets > 0n, 'the drops are counted')
    assert.equal(r.clients.length, 0)
  })

  it('forwards and NATs an admitted client; kernel counters agree with the bytes moved within 1 %', async () => {
    await adapter.admit(client())
    assert.deepEqual(await adapter.listClients(), [client()])
    await adapter.readCounters()
    const clientRunner = commandRunner({ prefix: netnsPrefix(t.client) })
    const before = await readInterfaceCounters(clientRunner, t.clientIf)
    const res = await send(4_000_000, 8_000_000)
    const r = await adapter.readCounters()
    const afterStats = await readInterfaceCounters(clientRunner, t.clientIf)
    assert.equal(res.ok, true, `transfer failed: ${JSON.stringify(res)}`)
    const c = mine(r)
    assert.ok(c !== undefined, 'the client has counters')
    // The veth counts L2 frames: subtract the 14-byte Ethernet header per frame to get L3 bytes.
    const upL3 = (afterStats.txBytes - before.txBytes) - 14n * (afterStats.txPackets - before.txPackets)
    const downL3 = (afterStats.rxBytes - before.rxBytes) - 14n * (afterStats.rxPackets - before.rxPackets)
    assert.ok(within(c.uploadBytes, upL3, 0.01), `upload: kernel ${c.uploadBytes} vs interface L3 ${upL3}`)
    assert.ok(within(c.downloadBytes, downL3, 0.01), `download: kernel ${c.downloadBytes} vs interface L3 ${downL3}`)
    // L3 bytes carry the payload plus IP/TCP headers; the upload side also carries the
    // ACKs of the download (52-byte packets), several % when segments are small under load.
    assert.ok(c.uploadBytes >= 4_000_008n && c.uploadBytes < 4_000_008n * 110n / 100n, `upload ${c.uploadBytes} vs payload 4000008`)
    assert.ok(c.downloadBytes >= 8_000_000n && c.downloadBytes < 8_000_000n * 110n / 100n, `download ${c.downloadBytes} vs payload 8000000`)
    assert.equal(r.total.txBytes, c.uploadBytes)
    assert.equal(r.total.rxBytes, c.downloadBytes)
    const again = await adapter.readCounters()
    assert.equal(mine(again)?.uploadBytes, 0n, 'a read zeroes the counters')
  })

  it('binds admission to the MAC: the admitted IP from another MAC is dropped', async () => {
    inNs(t.client, 'ip', 'link', 'set', t.clientIf, 'address', '02:5b:00:00:00:99')
    try {
      inNs(t.client, 'ip', 'neigh', 'flush', 'all')
      gw('ip', 'neigh', 'flush', 'all')
      const res = await send(1000, 1000, 1500)
      assert.equal(res.ok, false, 'a spoofing host must not get through')
    } finally {
      inNs(t.client, 'ip', 'link', 'set', t.clientIf, 'address', t.clientMac)
      gw('ip', 'neigh', 'flush', 'all')
    }
    assert.equal((await send(1000, 1000)).ok, true, 'the real client still gets through')
  })

  it('enforces the per-client and total limits in the kernel (rough check)', async () => {
    const rate = 1_000_000
    // nft's byte limit is a token bucket holding one second of rate plus the burst;
    // past that the transfer runs at `rate`.
    const bucket = rate + 256 * 1024
    await adapter.setLimits({ perClientBytesPerSec: rate, totalBytesPerSec: null })
    const limited = await send(0, 3_000_000, 15_000)
    assert.equal(limited.ok, true, JSON.stringify(limited))
    const floorMs = (3_000_000 - bucket) / rate * 1000
    assert.ok((limited.ms ?? 0) >= 0.8 * floorMs, `3 MB at ${rate} B/s took ${limited.ms} ms, expected ≥ ${0.8 * floorMs}`)
    assert.ok((limited.ms ?? 0) <= 4 * floorMs, `the limited transfer should still make progress, took ${limited.ms} ms`)

    await adapter.setLimits({ perClientBytesPerSec: null, totalBytesPerSec: rate })
    const total = await send(2_500_000, 0, 15_000)
    assert.equal(total.ok, true, JSON.stringify(total))
    const totalFloorMs = (2_500_000 - bucket) / rate * 1000
    assert.ok((total.ms ?? 0) >= 0.8 * totalFloorMs, `2.5 MB upload under a total limit took ${total.ms} ms, expected ≥ ${0.8 * totalFloorMs}`)

    await adapter.setLimits({ perClientBytesPerSec: null, totalBytesPerSec: null })
    const free = await send(0, 3_000_000)
    assert.ok((free.ms ?? Infinity) < 0.5 * floorMs, `without limits 3 MB took ${free.ms} ms`)
    assert.deepEqual(adapter.status().limits, { perClientBytesPerSec: null, totalBytesPerSec: null })
  })

  it('counts the daemon\'s own exit traffic by socket uid, and only that', async () => {
    await adapter.readCounters()
    const asRoot = await sendTraffic(t.gateway, t.upstreamIp, PORT, 500_000, 500_000, 8000)
    assert.equal(asRoot.ok, true, JSON.stringify(asRoot))
    const idle = await adapter.readCounters()
    assert.equal(idle.exit?.txBytes, 0n, 'traffic of another uid is not exit traffic')
    const asExit = await sendTraffic(t.gateway, t.upstreamIp, PORT, 1_000_000, 2_000_000, 8000, 65534)
    assert.equal(asExit.ok, true, JSON.stringify(asExit))
    const r = await adapter.readCounters()
    assert.ok(r.exit !== null)
    assert.ok(r.exit.txBytes >= 1_000_008n && r.exit.txBytes < 1_000_008n * 105n / 100n, `exit tx ${r.exit.txBytes}`)
    assert.ok(r.exit.rxBytes >= 2_000_000n && r.exit.rxBytes < 2_000_000n * 105n / 100n, `exit rx ${r.exit.rxBytes}`)
  })

  it('keeps admitted clients when started again (idempotent start, crash recovery)', async () => {
    const second = createHardwareAdapter(
      { adapter: 'linux', lanInterface: t.lanIf, wanInterface: t.wanIf, exitMatch: { uid: 65534 } },
      { logger: log, runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), facts: gatherPlatformFacts() }
    ).adapter
    await second.start()
    assert.deepEqual(await second.listClients(), [client()])
    assert.ok(second.status().notes.some((n) => n.includes('adopted 1 client')))
    assert.equal((await send(1000, 1000)).ok, true)
    assert.equal(gw('nft', 'list', 'tables').split('\n').filter((l) => l.includes(TABLE_NAME)).length, 1)
  })

  it('evict cuts the client off and returns its last counts', async () => {
    await adapter.readCounters()
    assert.equal((await send(100_000, 0)).ok, true)
    const final = await adapter.evict(client())
    assert.ok(final !== null && final.uploadBytes >= 100_008n, `final counts ${final?.uploadBytes}`)
    assert.equal(await adapter.evict(client()), null, 'a second evict is a no-op')
    assert.deepEqual(await adapter.listClients(), [])
    assert.equal((await send(1000, 1000, 1500)).ok, false, 'an evicted client must not reach upstream')
    assert.equal(gw('nft', 'list', 'counters').includes('up_'), false, 'the client\'s counters are gone')
  })

  it('stop removes the table and nothing else, and restores ip_forward', async () => {
    await adapter.admit(client())
    await adapter.stop()
    assert.equal(gw('nft', '-j', 'list', 'ruleset'), rulesetBefore, 'the ruleset is exactly what it was before start')
    assert.equal(gw('nft', '-j', 'list', 'table', 'ip', 'decoy'), decoyBefore, 'the decoy table is untouched')
    assert.equal(gw('sysctl', '-n', 'net.ipv4.ip_forward').trim(), '0')
    assert.equal(adapter.status().started, false)
  })
})

describe('nftables gateway on a routed LAN (masquerade off)', { skip: unavailable ?? false }, () => {
  let t: Topology
  let server: ChildProcess | undefined
  const peers: string[] = []
  const log = pino({ level: 'silent' })
  const adapterFor = (masquerade: boolean): HardwareAdapter => createHardwareAdapter(
    { adapter: 'linux', lanInterface: t.lanIf, wanInterface: t.wanIf, masquerade },
    { logger: log, runner: commandRunner({ prefix: netnsPrefix(t.gateway) }), facts: gatherPlatformFacts() }
  ).adapter

  before(async () => {
    t = createTopology({ routeBack: true })
    server = await startServer(t.upstream, t.upstreamIp, PORT, 60)
    server.stdout?.on('data', (d: Buffer) => { for (const m of d.toString().matchAll(/^peer (\S+)$/gm)) peers.push(m[1]) })
  })

  after(async () => {
    await stopChild(server)
    t?.destroy()
  })

  it('forwards admitted clients with their own address, counts them, and uses no NAT chain', async () => {
    // a run that masqueraded and crashed left its NAT chain behind; this start removes it
    const crashed = adapterFor(true)
    await crashed.start()
    assert.match(inNs(t.gateway, 'nft', 'list', 'table', 'inet', TABLE_NAME), /type nat hook postrouting/)
    const adapter = adapterFor(false)
    await adapter.start()
    try {
      const table = inNs(t.gateway, 'nft', 'list', 'table', 'inet', TABLE_NAME)
      assert.doesNotMatch(table, /type nat|masquerade/, 'no NAT chain: the forward path needs no connection tracking')
      assert.equal((await sendTraffic(t.client, t.upstreamIp, PORT, 1000, 1000, 1500)).ok, false, 'an unpaid client is still dropped')
      await adapter.admit({ ip: t.clientIp, mac: t.clientMac })
      await adapter.readCounters()
      const res = await sendTraffic(t.client, t.upstreamIp, PORT, 200_000, 300_000, 8000)
      assert.equal(res.ok, true, JSON.stringify(res))
      assert.equal(peers.at(-1), t.clientIp, 'upstream sees the client itself, not the gateway')
      const c = (await adapter.readCounters()).clients.find((x) => x.ip === t.clientIp)
      assert.ok(c !== undefined && c.uploadBytes >= 200_008n && c.downloadBytes >= 300_000n, `counts ${c?.uploadBytes}/${c?.downloadBytes}`)
    } finally {
      await adapter.stop()
    }
    assert.equal(inNs(t.gateway, 'nft', 'list', 'tables').includes(TABLE_NAME), false, 'stop removes the table')
  })
})
