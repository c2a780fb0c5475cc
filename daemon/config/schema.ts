import { Type, type Static } from '@sinclair/typebox'

const Address = Type.Unsafe<`0x${string}`>(Type.String({ pattern: '^0x[0-9a-fA-F]{40}$', description: 'an EVM address (0x + 40 hex digits)' }))
const Amount = Type.String({ pattern: '^(0|[1-9][0-9]{0,77})$', description: 'an amount in token base units, as a decimal string' })
const HostPort = Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$', description: 'host:port' })

/** One token the seller accepts, with its price per GiB in base units. */
export const PriceSchema = Type.Object({
  token: Address,
  pricePerGiB: Amount
}, { additionalProperties: false })

/** The on-chain side: RPC endpoint, chain id and the channel contract. */
export const ChainSchema = Type.Object({
  rpcUrl: Type.String({ minLength: 1 }),
  chainId: Type.Integer({ minimum: 1 }),
  contract: Address,
  /** Gas price cap for settlement, in gwei; a deadline-forced settlement ignores it. */
  gasPriceCapGwei: Type.Number({ exclusiveMinimum: 0, default: 50 })
}, { additionalProperties: false })

/** The seller's exit policy beyond the built-in refusals. */
export const ExitPolicySchema = Type.Object({
  denyPorts: Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { default: [25], maxItems: 1024 }),
  allowPorts: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 1024 })),
  allowCidrs: Type.Array(Type.String(), { default: [], maxItems: 1024 }),
  denyCidrs: Type.Array(Type.String(), { default: [], maxItems: 1024 })
}, { additionalProperties: false })

/** When the seller may share: days 0–6 (Sunday = 0) and a daily window in local hours. */
export const ScheduleSchema = Type.Object({
  days: Type.Array(Type.Integer({ minimum: 0, maximum: 6 }), { default: [0, 1, 2, 3, 4, 5, 6], maxItems: 7 }),
  fromHour: Type.Integer({ minimum: 0, maximum: 24, default: 0 }),
  toHour: Type.Integer({ minimum: 0, maximum: 24, default: 24 })
}, { additionalProperties: false })

/** Seller settings: pricing, payout, credit, settlement, limits and sharing policy. */
export const SellerSchema = Type.Object({
  payoutAddress: Type.Optional(Address),
  region: Type.String({ pattern: '^[a-z0-9-]{1,32}$', default: 'local' }),
  prices: Type.Array(PriceSchema, { minItems: 1, maxItems: 16, default: [{ token: '0x0000000000000000000000000000000000000000', pricePerGiB: '1000000000000000' }] }),
  creditWindowBytes: Type.Integer({ minimum: 65536, default: 1048576 }),
  settleIntervalSec: Type.Integer({ minimum: 5, default: 3600 }),
  settleThreshold: Type.String({ pattern: '^(0|[1-9][0-9]{0,77})$', default: '10000000000000000', description: 'owed amount (base units) that triggers a settlement' }),
  exitPolicy: Type.Composite([ExitPolicySchema], { default: {} }),
  bandwidthLimitMbps: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  monthlyCapGiB: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  schedule: Type.Composite([ScheduleSchema], { default: {} }),
  maxSessions: Type.Integer({ minimum: 1, default: 256 }),
  maxStreamsPerPeer: Type.Integer({ minimum: 1, default: 32 }),
  maxStreams: Type.Integer({ minimum: 1, default: 256 })
}, { additionalProperties: false })

/** Buyer settings: spend cap, deposit, local proxy ports, signing tolerance. */
export const BuyerSchema = Type.Object({
  token: Type.Unsafe<`0x${string}`>(Type.String({ pattern: '^0x[0-9a-fA-F]{40}$', default: '0x0000000000000000000000000000000000000000' })),
  spendCap: Type.String({ pattern: '^(0|[1-9][0-9]{0,77})$', default: '100000000000000000', description: 'most one channel may pay (base units)' }),
  deposit: Type.String({ pattern: '^(0|[1-9][0-9]{0,77})$', default: '50000000000000000', description: 'deposit of a new channel (base units)' }),
  socksListen: Type.String({ ...HostPort, default: '127.0.0.1:1080' }),
  httpListen: Type.String({ ...HostPort, default: '127.0.0.1:8118' }),
  toleranceBytes: Type.Integer({ minimum: 0, default: 262144 }),
  region: Type.Optional(Type.String({ pattern: '^[a-z0-9-]{1,32}$' }))
}, { additionalProperties: false })

/** Gateway mode (hotspot/LAN buyers): the kernel forwards, NATs and meters the devices that pay. */
export const GatewaySchema = Type.Object({
  lanInterface: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$', description: 'the interface the hotspot/LAN devices are on, e.g. "br-lan" or "wlan0"' }),
  /** Time between two reads of the kernel's per-device counters: a device out of credit is evicted within one. */
  readIntervalMs: Type.Integer({ minimum: 50, maximum: 10000, default: 250 }),
  /**
   * NAT the devices on the uplink (default). Turn it off when the LAN subnet is routed
   * upstream, or when the router NATs it already (OpenWrt's fw4 masquerades its wan
   * zone): the kernel then forwards without connection tracking for spareband's sake.
   */
  masquerade: Type.Boolean({ default: true }),
  /** Kernel-enforced limit per device and direction. */
  clientLimitMbps: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  /** Kernel-enforced limit of all devices together, per direction. */
  totalLimitMbps: Type.Optional(Type.Number({ exclusiveMinimum: 0 }))
}, { additionalProperties: false })

/** The whole configuration file (`spareband init` writes one). */
export const ConfigSchema = Type.Object({
  dataDir: Type.String({ minLength: 1 }),
  listen: Type.Array(Type.String(), { minItems: 1, maxItems: 16, default: ['/ip4/0.0.0.0/tcp/4501'] }),
  bootstrap: Type.Array(Type.String(), { default: [], maxItems: 64 }),
  mdns: Type.Boolean({ default: true }),
  chain: ChainSchema,
  seller: Type.Composite([SellerSchema], { default: {} }),
  buyer: Type.Composite([BuyerSchema], { default: {} }),
  /** The uplink sold: its interface (detected when omitted) and usable capacity (e.g. the ISP plan; else the link speed). */
  uplink: Type.Object({
    interface: Type.Optional(Type.String({ minLength: 1, maxLength: 15 })),
    capacityMbps: Type.Optional(Type.Number({ exclusiveMinimum: 0 }))
  }, { additionalProperties: false, default: {} }),
  /** The local control API and dashboard (`spareband status`, the web page); loopback unless `apiAllowRemote`. */
  apiListen: Type.String({ ...HostPort, default: '127.0.0.1:8742' }),
  /** Allow `apiListen` on a non-loopback address: reads are then open to whoever reaches it; writes still need the token. */
  apiAllowRemote: Type.Boolean({ default: false }),
  /** A second listener that serves only `GET /metrics` (Prometheus), e.g. `0.0.0.0:9742` for a fleet's scraper. */
  metricsListen: Type.Optional(Type.String(HostPort)),
  /** Gateway mode; off when absent. */
  gateway: Type.Optional(GatewaySchema),
  hardware: Type.Union([Type.Literal('auto'), Type.Literal('linux'), Type.Literal('openwrt'), Type.Literal('raspberrypi'), Type.Literal('simulated')], { default: 'auto' }),
  logLevel: Type.Union([Type.Literal('trace'), Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error'), Type.Literal('silent')], { default: 'info' })
}, { additionalProperties: false })

/** A validated configuration. */
export type Config = Static<typeof ConfigSchema>
