import type { Address, Hex } from 'viem'
import { SparebandError } from './errors.ts'

/** What the seller and the buyer know of one payment channel, as read from the chain and the offer. */
export interface ChannelTerms {
  /** Chain the channel contract lives on (part of the EIP-712 domain). */
  chainId: number
  /** The channel contract (the EIP-712 verifying contract). */
  contract: Address
  /** `keccak256(abi.encode(chainid, contract, payer, payee, token, signer, salt))`. */
  channelId: Hex
  /** The buyer's funding address. */
  payer: Address
  /** The seller's payout address. */
  payee: Address
  /** ERC-20 token, or the zero address for the native coin. */
  token: Address
  /** The buyer's hot session key: the only key whose vouchers count. */
  signer: Address
  /** Total deposited on chain, in token base units. */
  deposit: bigint
  /** Unix seconds after which the payer may withdraw, or `null` while no close was requested. */
  closeDeadline: number | null
  /** Agreed price in token base units per GiB (2^30 bytes). */
  pricePerGiB: bigint
}

/** The seller's statement of metered usage, answered by the buyer with a voucher. */
export interface UsageReport {
  /** Bytes relayed both ways since the channel opened. */
  cumulativeBytes: bigint
  /** Cumulative amount the seller asks for, in token base units. */
  amountDue: bigint
}

/** Raised when a channel's terms, restart state or metered figures are inconsistent. */
export class InvalidChannelStateError extends SparebandError {
  constructor (message: string) {
    super('ERR_INVALID_CHANNEL_STATE', message)
  }
}
