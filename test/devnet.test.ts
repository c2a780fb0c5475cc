/**
 * The devnet helper: anvil on loopback with the contract deployed and the dev keys it reports;
 * stop() really ends anvil; a start that cannot finish in time fails with ERR_DEVNET_START and
 * leaves no anvil behind.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { describe, it } from 'node:test'
import { createPublicClient, createWalletClient, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { startDevnet } from '../daemon/chain/devnet.ts'

/** Names of this process's child processes. */
function children (): string[] {
  try {
    return execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], { encoding: 'utf8' }).split('\n').filter((l) => l !== '' && l !== 'ps')
  } catch {
    return [] // ps exits 1 when there is no child
  }
}

describe('devnet', () => {
  it('starts anvil on loopback, deploys SpareChannels and stops', async () => {
    const devnet = await startDevnet({ chainId: 1337, accounts: 2 })
    try {
      assert.match(devnet.rpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
      const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl, { retryCount: 0 }) })
      assert.equal(await client.getChainId(), 1337)
      assert.notEqual(await client.getCode({ address: devnet.contract }), undefined)
      const reported = await createWalletClient({ chain: devnet.chain, transport: http(devnet.rpcUrl, { retryCount: 0 }) }).getAddresses()
      assert.deepEqual(devnet.accounts.map((k) => privateKeyToAccount(k).address), reported)
      assert.ok(children().includes('anvil'))
    } finally {
      await devnet.stop()
      await devnet.stop()
    }
    assert.ok(!children().includes('anvil'), 'anvil still running after stop()')
  })

  it('fails with ERR_DEVNET_START when anvil cannot start in time, and kills it', async () => {
    await assert.rejects(startDevnet({ timeoutMs: 1 }), { code: 'ERR_DEVNET_START' })
    assert.ok(!children().includes('anvil'), 'anvil left running after a failed start')
  })
})
