/**
 * A devnet (anvil + deployed SpareChannels) with the viem clients tests need, plus helpers to
 * wait for a mined transaction, price its gas and assert a named custom-error revert.
 */
import assert from 'node:assert/strict'
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createTestClient,
  createWalletClient,
  http,
  type Chain,
  type Hex,
  type TransactionReceipt
} from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { startDevnet, type Devnet, type DevnetOptions } from '../../daemon/chain/devnet.ts'

/** A devnet with a public client, an anvil test client and wallets for its dev accounts. */
export async function startTestChain (options: DevnetOptions = {}) {
  const devnet: Devnet = await startDevnet(options)
  const transport = http(devnet.rpcUrl, { retryCount: 0 })
  const client = createPublicClient({ chain: devnet.chain, transport, pollingInterval: 20 })
  const test = createTestClient({ mode: 'anvil', chain: devnet.chain, transport })

  /** A wallet client for a private key, sending to the devnet as `onChain` (by default its own chain). */
  function wallet (key: Hex, onChain: Chain = devnet.chain) {
    return createWalletClient({ account: privateKeyToAccount(key), chain: onChain, transport })
  }

  /** Waits for the transaction, asserts it succeeded and returns its receipt. */
  async function mined (hash: Hex | Promise<Hex>): Promise<TransactionReceipt> {
    const receipt = await client.waitForTransactionReceipt({ hash: await hash, timeout: 10_000 })
    assert.equal(receipt.status, 'success', `transaction ${receipt.transactionHash} reverted`)
    return receipt
  }

  /** A JSON-RPC call viem has no typed action for (anvil_*, debug_*). */
  function rpc (method: string, params: unknown[]): Promise<unknown> {
    return (client.request as unknown as (args: { method: string, params: unknown[] }) => Promise<unknown>)({ method, params })
  }

  return { devnet, client, test, wallet, mined, rpc, stop: devnet.stop }
}

/** The value {@link startTestChain} resolves to. */
export type TestChain = Awaited<ReturnType<typeof startTestChain>>

/** Wei paid for a mined transaction's gas. */
export function gasCost (receipt: TransactionReceipt): bigint {
  return receipt.gasUsed * receipt.effectiveGasPrice
}

/** Asserts that `call` is rejected by the contract with the custom error `errorName`. */
export async function expectRevert (call: Promise<unknown>, errorName: string): Promise<void> {
  try {
    await call
  } catch (err) {
    const reverted = err instanceof BaseError ? err.walk((e) => e instanceof ContractFunctionRevertedError) : null
    const actual = reverted instanceof ContractFunctionRevertedError ? reverted.data?.errorName : undefined
    assert.equal(actual, errorName, `expected revert ${errorName}, got: ${actual ?? (err as Error).message}`)
    return
  }
  assert.fail(`expected revert ${errorName}, but the call succeeded`)
}
