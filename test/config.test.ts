import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, resolveConfig } from '../daemon/config/load.ts'

const chain = { rpcUrl: 'http://127.0.0.1:8545', chainId: 31337, contract: '0x5FbDB2315678afecb367f032d93F642f64180aa3' as const }

describe('configuration: gateway section', () => {
  it('fills the gateway defaults: masquerade on, 250 ms reads', () => {
    const config = resolveConfig([{ dataDir: '/tmp/x', chain, gateway: { lanInterface: 'br-guest' } }])
    assert.equal(config.gateway?.masquerade, true)
    assert.equal(config.gateway?.readIntervalMs, 250)
    assert.equal(resolveConfig([{ dataDir: '/tmp/x', chain }]).gateway, undefined, 'no gateway unless configured')
  })

  it('takes masquerade off for a routed LAN, and refuses a value that is not a boolean', () => {
    assert.equal(resolveConfig([{ dataDir: '/tmp/x', chain, gateway: { lanInterface: 'br-guest', masquerade: false } }]).gateway?.masquerade, false)
    assert.throws(() => resolveConfig([{ dataDir: '/tmp/x', chain, gateway: { lanInterface: 'br-guest', masquerade: 'no' as unknown as boolean } }]),
      (err: Error) => err instanceof ConfigError && err.message.includes('/gateway/masquerade'))
  })
})
