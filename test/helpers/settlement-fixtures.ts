/** Channels, tokens and vouchers on a devnet for the settlement tests. */
import { createPublicClient, createWalletClient, http, toHex, type Address, type Hex, type LocalAccount } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { pino } from 'pino'
import type { Devnet } from '../../daemon/chain/devnet.ts'
import { createSpareChannelsClient, type SpareChannelsClient } from '../../daemon/chain/client.ts'
import { NATIVE_TOKEN } from '../../protocol/contract/channels.ts'
import { signVoucher, type SignedVoucher } from '../../protocol/voucher.ts'
import type { SellerStore } from '../../daemon/state/store.ts'
import { standardTokenAbi, standardTokenBytecode } from '../fixtures/contracts/artifacts.ts'

/** A silent logger for tests. */
export const silentLogger = pino({ level: 'silent' })

/** A channel opened on the devnet, with the signer the buyer holds. */
export interface TestChannel {
  channelId: Hex
  payer: Address
  payee: Address
  token: Address
  signer: LocalAccount
  deposit: bigint
}

/** A chain client for dev account `index` (pays gas for what it sends). */
export function devClient (devnet: Devnet, index: number, rpcUrl = devnet.rpcUrl): SpareChannelsClient {
  return createSpareChannelsClient({
    rpcUrl,
    chainId: devnet.chainId,
    contract: devnet.contract,
    account: privateKeyToAccount(devnet.accounts[index]),
    pollingIntervalMs: 50,
    retryCount: 0
  })
}

/** A fresh address with nothing on it, for a payee whose balance a test checks to the wei. */
export function freshAddress (): Address {
  return privateKeyToAccount(generatePrivateKey()).address
}

let salt = 0

/** Opens a channel from dev account `payerIndex` to `payee` with a fresh signer. */
export async function openChannel (devnet: Devnet, payerIndex: number, payee: Address, deposit: bigint, token: Address = NATIVE_TOKEN): Promise<TestChannel> {
  const buyer = devClient(devnet, payerIndex)
  const signer = privateKeyToAccount(generatePrivateKey())
  const channelId = await buyer.openChannel({ payee, token, signer: signer.address, salt: toHex(++salt, { size: 32 }), amount: deposit })
  return { channelId, payer: buyer.walletClient!.account.address, payee, token, signer, deposit }
}

/** Records a channel's terms in the seller's store, as the payment plane does at session start. */
export async function recordChannel (store: SellerStore, devnet: Devnet, ch: TestChannel): Promise<void> {
  await store.putChannel({
    chainId: devnet.chainId,
    contract: devnet.contract,
    channelId: ch.channelId,
    payer: ch.payer,
    payee: ch.payee,
    token: ch.token,
    signer: ch.signer.address,
    deposit: ch.deposit,
    closeDeadline: 0n,
    pricePerGiB: 10n ** 15n,
    settled: 0n,
    openedAt: Date.now(),
    lastSeenAt: Date.now()
  })
}

/** Signs and persists a voucher of `amount` for the channel. */
export async function payVoucher (store: SellerStore, devnet: Devnet, ch: TestChannel, amount: bigint): Promise<SignedVoucher> {
  const voucher = await signVoucher(ch.signer, { chainId: devnet.chainId, verifyingContract: devnet.contract }, { channelId: ch.channelId, cumulativeAmount: amount, cumulativeBytes: amount >> 20n })
  await store.persistVoucher(voucher)
  return voucher
}

/** Deploys a standard ERC-20, mints `amount` to each payer and approves the channel contract. */
export async function deployToken (devnet: Devnet, payerIndexes: readonly number[], amount: bigint): Promise<Address> {
  const transport = http(devnet.rpcUrl)
  const client = createPublicClient({ chain: devnet.chain, transport, pollingInterval: 50 })
  const deployer = createWalletClient({ account: privateKeyToAccount(devnet.accounts[0]), chain: devnet.chain, transport })
  const hash = await deployer.deployContract({ abi: standardTokenAbi, bytecode: standardTokenBytecode })
  const token = (await client.waitForTransactionReceipt({ hash })).contractAddress as Address
  for (const i of payerIndexes) {
    const payer = createWalletClient({ account: privateKeyToAccount(devnet.accounts[i]), chain: devnet.chain, transport })
    await client.waitForTransactionReceipt({ hash: await payer.writeContract({ address: token, abi: standardTokenAbi, functionName: 'mint', args: [payer.account.address, amount] }) })
    await client.waitForTransactionReceipt({ hash: await payer.writeContract({ address: token, abi: standardTokenAbi, functionName: 'approve', args: [devnet.contract, amount] }) })
  }
  return token
}

/** The ERC-20 balance of `owner`. */
export async function tokenBalance (devnet: Devnet, token: Address, owner: Address): Promise<bigint> {
  const client = createPublicClient({ chain: devnet.chain, transport: http(devnet.rpcUrl) })
  return await client.readContract({ address: token, abi: standardTokenAbi, functionName: 'balanceOf', args: [owner] })
}
