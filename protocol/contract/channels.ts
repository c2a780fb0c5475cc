import { encodeAbiParameters, keccak256, zeroAddress, type Address, type Hex } from 'viem'

/** The `token` of a channel funded in the chain's native coin. */
export const NATIVE_TOKEN: Address = zeroAddress

/**
 * Reason codes of the contract's `VoucherSkipped(channelId, reason)` event. `noChannel`
 * covers an unknown id, a voucher signed by another key, for another payee or in another
 * token batch: all of them land on an empty storage slot.
 */
export const VOUCHER_SKIP_REASONS = {
  noChannel: 1,
  withdrawn: 2,
  notIncreasing: 3,
  aboveDeposit: 4,
  badSignature: 5
} as const

/** Name of a {@link VOUCHER_SKIP_REASONS} entry. */
export type VoucherSkipReason = keyof typeof VOUCHER_SKIP_REASONS

/** Everything a channel id commits to. */
export interface ChannelIdInput {
  chainId: number
  contract: Address
  payer: Address
  payee: Address
  token: Address
  signer: Address
  salt: Hex
}

/** The id `SpareChannels.open` assigns: `keccak256(abi.encode(chainid, contract, payer, payee, token, signer, salt))`. */
export function channelIdOf (input: ChannelIdInput): Hex {
  return keccak256(encodeAbiParameters(
    [
      { type: 'uint256' },
      { type: 'address' },
      { type: 'address' },
      { type: 'address' },
      { type: 'address' },
      { type: 'address' },
      { type: 'bytes32' }
    ],
    [BigInt(input.chainId), input.contract, input.payer, input.payee, input.token, input.signer, input.salt]
  ))
}
