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
