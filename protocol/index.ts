/**
 * spareband's pure protocol layer, as published at `spareband/protocol`: vouchers and
 * their fast verification, offers, message codecs, channel accounting, pricing, the
 * exit policy and the channel contract's ids and ABI. No sockets, no disk.
 */
export * from './errors.ts'
export * from './voucher.ts'
export * from './voucher-verify.ts'
export * from './messages/index.ts'
export { InvalidChannelStateError, type ChannelTerms } from './channel-terms.ts'
export * from './pricing.ts'
export * from './seller-channel.ts'
export * from './buyer-channel.ts'
export * from './exit-policy.ts'
export * from './contract/channels.ts'
export { spareChannelsAbi } from './contract/artifact.ts'
