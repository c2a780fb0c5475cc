import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { admitBatch, clientCounterNames, ipOfCounterName, limitBurstBytes, startBatch } from '../../hardware/nftables/ruleset.ts'
import { normalizeGatewayClient } from '../../hardware/validate.ts'
import { AdapterConfigError, InvalidGatewayClientError } from '../../hardware/errors.ts'

const base = { lanInterface: 'br-guest', wanInterface: 'wan', masquerade: true, limits: { perClientBytesPerSec: null, totalBytesPerSec: null }, exitMatch: null }

describe('nft batch builders', () => {
  it('names client counters reversibly', () => {
    assert.deepEqual(clientCounterNames('10.0.0.2'), { up: 'up_0a000002', down: 'down_0a000002' })
    assert.deepEqual(ipOfCounterName('down_c0a80101'), { ip: '192.168.1.1', direction: 'down' })
    assert.equal(ipOfCounterName('total_up'), null)
  })

  it('touches only the spareband table', () => {
    const batch = startBatch({ ...base, limits: { perClientBytesPerSec: 1_000_000, totalBytesPerSec: 5_000_000 }, exitMatch: { uid: 1000, excludeLocalPorts: [4001] } })
    for (const line of batch.trim().split('\n')) assert.match(line, /^(add|flush) (table|counter|map|set|chain|rule) inet spareband\b/, line)
    assert.doesNotMatch(batch, /flush ruleset|fw4/)
  })

  it('declares a NAT chain only when masquerading, and removes one left by an earlier start', () => {
    const nat = startBatch(base)
    assert.match(nat, /add rule inet spareband postrouting oifname "wan" ip saddr @client_down masquerade/)
    assert.doesNotMatch(nat, /delete chain/)
    const routed = startBatch({ ...base, masquerade: false })
    assert.doesNotMatch(routed, /masquerade|type nat|postrouting/, 'no NAT chain is ever declared without masquerade')
    const leftover = startBatch({ ...base, masquerade: false, natChainExists: true })
    assert.doesNotMatch(leftover, /type nat/)
    assert.match(leftover.trim().split('\n').at(-1) ?? '', /^delete chain inet spareband postrouting$/)
    for (const line of leftover.trim().split('\n')) assert.match(line, /^(add|flush|delete) (table|counter|map|set|chain|rule) inet spareband\b/, line)
  })

  it('ends every forward path from and to the LAN in a counted drop', () => {
    for (const limits of [base.limits, { perClientBytesPerSec: 1_000_000, totalBytesPerSec: null }, { perClientBytesPerSec: null, totalBytesPerSec: 5_000_000 }]) {
      const forward = startBatch({ ...base, limits }).split('\n').filter((l) => l.startsWith('add rule inet spareband forward '))
      assert.deepEqual(forward.slice(-2), [
        'add rule inet spareband forward iifname "br-guest" counter name "dropped_unpaid" drop',
        'add rule inet spareband forward oifname "br-guest" counter name "dropped_unpaid" drop'
      ])
      // clients are matched by `ip saddr`/`ip daddr`, which imply IPv4: IPv6 reaches the drops
      for (const l of forward.slice(0, -2)) assert.match(l, /ip [sd]addr|meta nfproto ipv4 jump/, l)
    }
  })

  it('keeps a burst of at least one GSO aggregate', () => {
    assert.ok(limitBurstBytes(10_000) >= 65_536)
    assert.equal(limitBurstBytes(100_000_000), 10_000_000)
  })

  it('refuses values that could inject nft syntax', () => {
    assert.throws(() => startBatch({ ...base, lanInterface: 'eth0" accept; #' }), AdapterConfigError)
    assert.throws(() => startBatch({ ...base, wanInterface: 'br-guest' }), AdapterConfigError)
    assert.throws(() => startBatch({ ...base, exitMatch: {} }), AdapterConfigError)
    assert.throws(() => startBatch({ ...base, limits: { perClientBytesPerSec: -1, totalBytesPerSec: null } }), AdapterConfigError)
    assert.throws(() => normalizeGatewayClient({ ip: '10.0.0.2 } ; flush ruleset', mac: '02:00:00:00:00:02' }), InvalidGatewayClientError)
    assert.throws(() => normalizeGatewayClient({ ip: '10.0.0.2', mac: '02:00:00:00:00:0g' }), InvalidGatewayClientError)
    assert.equal(admitBatch(normalizeGatewayClient({ ip: '10.0.0.2', mac: '02-AB-00-00-00-02' })).includes('02:ab:00:00:00:02'), true)
  })
})
