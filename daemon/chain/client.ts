import {
  createPublicClient, createWalletClient, defineChain, parseEventLogs,
  type Address, type Chain, type Hex, type LocalAccount, type PublicClient, type TransactionReceipt, type Transport, type WalletClient
} from 'viem'
import { spareChannelsAbi } from '../../protocol/contract/artifact.ts'
import { NATIVE_TOKEN } from '../../protocol/contract/channels.ts'
import { SparebandError } from '../../protocol/errors.ts'
import { nodeHttp } from './node-http-transport.ts'

/** Raised when a channel transaction of ours reverts or is not mined in time. */
export class ChainTransactionError extends SparebandError {
  constructor (what: string, txHash: Hex | undefined, why: string, options?: { cause?: unknown }) {
    super('ERR_CHAIN_TRANSACTION', `${what} ${txHash === undefined ? 'could not be sent' : `(tx ${txHash}) failed`}: ${why}; check the RPC endpoint, the account's balance and the channel's state`, options)
  }
}

/** Options of {@link createSpareChannelsClient}. */
export interface SpareChannelsClientInit {
  /** HTTP JSON-RPC endpoint. */
  rpcUrl: string
  chainId: number
  /** Address of the deployed `SpareChannels`. */
  contract: Address
  /** Local (hot) key that signs transactions; without it the client is read-only. */
  account?: LocalAccount
  /** Retries of one failed RPC request by the transport (exponential backoff from 150 ms); default 2. */
  retryCount?: number
  /** Timeout of one RPC request in ms; default 10 s. */
  timeoutMs?: number
  /** How often receipts and blocks are polled, in ms; default 1 s. */
  pollingIntervalMs?: number
}

/** A channel as `getChannel` returns it; all zero if unknown. */
export interface OnchainChannel {
  payer: Address
  payee: Address
  token: Address
  signer: Address
  deposit: bigint
  settled: bigint
  /** Unix seconds; 0 while no close was requested. */
  closeDeadline: bigint
  withdrawn: boolean
}

/** Fees of the next block: what the settler's gas price cap is compared with. */
export interface NextBlockFees {
  /** Base fee per gas of the next block (the last entry of `eth_feeHistory`). */
  baseFeePerGas: bigint
  /** Suggested priority fee per gas (`eth_maxPriorityFeePerGas`). */
  maxPriorityFeePerGas: bigint
}

/** Arguments of `open`. */
export interface OpenChannelArgs {
  payee: Address
  token: Address
  signer: Address
  salt: Hex
  amount: bigint
}

/**
 * viem clients bound to one `SpareChannels` deployment: typed reads of channel state,
 * fee look-ups, and the payer-side transactions (open, top-up, close request).
 */
export interface SpareChannelsClient {
  readonly chain: Chain
  readonly contract: Address
  readonly publicClient: PublicClient<Transport, Chain>
  /** Present when an account was given. */
  readonly walletClient: WalletClient<Transport, Chain, LocalAccount> | undefined
  /** `getChannel(id)` at the latest block. */
  getChannel: (channelId: Hex) => Promise<OnchainChannel>
  /** `getChannel` of many channels (JSON-RPC batched). */
  getChannels: (channelIds: readonly Hex[]) => Promise<Map<Hex, OnchainChannel>>
  /** Base and priority fee per gas of the next block. */
  nextBlockFees: () => Promise<NextBlockFees>
  /** Opens a channel from the client's account (payer); resolves with the id once mined. */
  openChannel: (args: OpenChannelArgs) => Promise<Hex>
  /** Adds to a channel's deposit; resolves once mined. */
  topUp: (channelId: Hex, amount: bigint) => Promise<TransactionReceipt>
  /** Starts a channel's challenge period; resolves with the close deadline once mined. */
  requestClose: (channelId: Hex) => Promise<bigint>
}

/** Creates the clients for one deployment of the channel contract. */
export function createSpareChannelsClient (init: SpareChannelsClientInit): SpareChannelsClient {
  const chain = defineChain({
    id: init.chainId,
    name: `chain ${init.chainId}`,
    nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [init.rpcUrl] } }
  })
  const transport = nodeHttp(init.rpcUrl, { retryCount: init.retryCount ?? 2, timeoutMs: init.timeoutMs ?? 10_000 })
  const pollingInterval = init.pollingIntervalMs ?? 1000
  const publicClient = createPublicClient({ chain, transport, pollingInterval })
  const walletClient = init.account === undefined ? undefined : createWalletClient({ account: init.account, chain, transport, pollingInterval })
  const contract = init.contract

  const getChannel = async (channelId: Hex): Promise<OnchainChannel> => {
    const v = await publicClient.readContract({ address: contract, abi: spareChannelsAbi, functionName: 'getChannel', args: [channelId] })
    return { ...v }
  }

  const wallet = (): WalletClient<Transport, Chain, LocalAccount> => {
    if (walletClient === undefined) throw new SparebandError('ERR_NO_ACCOUNT', 'this chain client is read-only; create it with an account to send transactions')
    return walletClient
  }

  const mined = async (what: string, hash: Hex): Promise<TransactionReceipt> => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash })
    if (receipt.status !== 'success') throw new ChainTransactionError(what, hash, 'reverted')
    return receipt
  }

  return {
    chain,
    contract,
    publicClient,
    walletClient,
    getChannel,
    async getChannels (channelIds) {
      const views = await Promise.all(channelIds.map(getChannel))
      return new Map(channelIds.map((id, i) => [id, views[i]]))
    },
    async nextBlockFees () {
      const [history, maxPriorityFeePerGas] = await Promise.all([
        publicClient.getFeeHistory({ blockCount: 1, rewardPercentiles: [] }),
        publicClient.estimateMaxPriorityFeePerGas()
      ])
      const baseFeePerGas = history.baseFeePerGas[history.baseFeePerGas.length - 1]
      return { baseFeePerGas, maxPriorityFeePerGas }
    },
    async openChannel (args) {
      const value = args.token === NATIVE_TOKEN ? args.amount : 0n
      const hash = await wallet().writeContract({
        address: contract,
        abi: spareChannelsAbi,
        functionName: 'open',
        args: [args.payee, args.token, args.signer, args.salt, args.amount],
        value
      })
      const receipt = await mined('open', hash)
      const [opened] = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs, eventName: 'ChannelOpened' })
      return opened.args.id
    },
    async topUp (channelId, amount) {
      const { token } = await getChannel(channelId)
      const value = token === NATIVE_TOKEN ? amount : 0n
      const hash = await wallet().writeContract({ address: contract, abi: spareChannelsAbi, functionName: 'topUp', args: [channelId, amount], value })
      return await mined('topUp', hash)
    },
    async requestClose (channelId) {
      const hash = await wallet().writeContract({ address: contract, abi: spareChannelsAbi, functionName: 'requestClose', args: [channelId] })
      const receipt = await mined('requestClose', hash)
      const [event] = parseEventLogs({ abi: spareChannelsAbi, logs: receipt.logs, eventName: 'CloseRequested' })
      return event.args.closeDeadline
    }
  }
}
